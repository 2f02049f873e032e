#!/usr/bin/env bash
# The main job: builds proxyattn if needed, then times dense attention and ProxyAttn on a
# generated 8K-token structured workload and prints the table. Extra flags go to `proxyattn bench`.
# Usage: scripts/bench.sh [--json] [--seq-len N] ...
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >&2
exec build/proxyattn bench --seq-len 8192 --workload structured "$@"
