#!/usr/bin/env bash
# `proxyattn check` (CPU backend against the double reference) at 4K and 8K, fp32 and bf16, both
# last-block modes; writes bench/results/cpu-check-<date>-<cpu>.json. Slow: the reference is plain
# double loops (about 10 minutes on 2 cores in all).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build.sh >&2
date=$(date -u +%Y-%m-%d)
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
tag=$(echo "$cpu" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//' | cut -c1-40)
json="bench/results/cpu-check-${date}-${tag}.json"
rows=()
for n in 4096 8192; do
  for dtype in fp32 bf16; do
    args="--seq-len $n --heads 8 --kv-heads 2 --head-dim 128 --dtype $dtype"
    echo "== check $args" >&2
    # shellcheck disable=SC2086
    result=$(build/proxyattn check $args --json)
    printf "%s\n" "$result" >&2
    line=$(printf "%s\n" "$result" | tail -n 1)
    rows+=("{\"args\": \"$args\", \"result\": $line}")
  done
done
{
  echo "{\"cpu\": \"$cpu\", \"cores\": $(nproc), \"date\": \"$date\", \"commit\": \"$(git rev-parse --short HEAD)\", \"runs\": ["
  (IFS=,; echo "${rows[*]}")
  echo "]}"
} >"$json"
echo "wrote $json" >&2
