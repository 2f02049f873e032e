#!/usr/bin/env bash
# Configures and builds proxyattn (Release, CLI and tests) into build/, installing Debian packages
# first. CUDA is compiled when nvcc is found (PROXYATTN_ENABLE_CUDA=OFF in the environment turns
# it off). Usage: scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
cuda=()
[ -n "${PROXYATTN_ENABLE_CUDA:-}" ] && cuda=(-DPROXYATTN_ENABLE_CUDA="$PROXYATTN_ENABLE_CUDA")
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPROXYATTN_BUILD_TOOLS=ON -DPROXYATTN_BUILD_TESTS=ON \
  "${cuda[@]}" >/dev/null
cmake --build build -j"$(nproc)"
