#!/usr/bin/env bash
# The end-to-end demo from a fresh clone: installs the Debian packages, builds the CPU configuration
# of the proxyattn command line (no tests, no CUDA) and runs `proxyattn demo`: the shipped
# 8M-parameter Llama (models/pa-tiny-8k) answers an 8K-token held-out needle-in-a-haystack prompt
# with dense attention and with ProxyAttn, and draws the blocks ProxyAttn selected.
# Usage: scripts/demo.sh [extra demo flags, e.g. --threads 4 or --gamma 0.95]
#   BUILD_DIR (default build-demo) holds the build; the figure goes to $BUILD_DIR/demo-blocks.png.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build-demo}"
t0=$SECONDS
scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPROXYATTN_ENABLE_CUDA=OFF \
  -DPROXYATTN_BUILD_TESTS=OFF -DPROXYATTN_BUILD_TOOLS=ON >/dev/null
cmake --build "$build" --target proxyattn_cli -j"$(nproc)"
echo "demo.sh: built in $((SECONDS - t0)) s" >&2
"$build/proxyattn" demo --out "$build" "$@"
