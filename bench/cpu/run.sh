#!/usr/bin/env bash
# CPU benchmark: `proxyattn bench` on a few cases, dense baseline in the same process each time.
# Writes bench/results/cpu-<date>-<cpu>.json (one row per case, with the machine and commit).
# Usage: bench/cpu/run.sh [extra bench flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build.sh >&2
date=$(date -u +%Y-%m-%d)
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
tag=$(echo "$cpu" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//' | cut -c1-40)
json="bench/results/cpu-${date}-${tag}.json"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cases=(
  "--seq-len 8192 --heads 8 --kv-heads 2 --head-dim 128 --workload structured --dtype fp32"
  "--seq-len 8192 --heads 8 --kv-heads 2 --head-dim 128 --workload structured --dtype bf16"
  "--seq-len 16384 --heads 8 --kv-heads 2 --head-dim 128 --workload random --dtype bf16 --density 0.1"
  "--input data/qkv/pa-tiny-8k-layer3.safetensors --block 64 --gamma 0.9 --min-budget 256 --repeats 3"
  "--input data/qkv/pa-tiny-8k-layer7.safetensors --block 64 --gamma 0.9 --min-budget 256 --repeats 3"
)
rows=()
for c in "${cases[@]}"; do
  echo "== bench $c" >&2
  # shellcheck disable=SC2086
  result=$(build/proxyattn bench $c --json "$@")
  printf "%s\n" "$result" >&2
  line=$(printf "%s\n" "$result" | tail -n 1)
  rows+=("{\"args\": \"$c\", \"result\": $line}")
done
{
  echo "{\"cpu\": \"$cpu\", \"cores\": $(nproc), \"date\": \"$date\", \"commit\": \"$commit\", \"cases\": ["
  (IFS=,; echo "${rows[*]}")
  echo "]}"
} >"$json"
echo "wrote $json" >&2
