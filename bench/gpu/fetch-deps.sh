#!/usr/bin/env bash
# bench/gpu/fetch-deps.sh: run where apt works (Debian 12). Downloads the Debian packages that the
# GPU build needs and extracts them into .gpu-deps/root (git-ignored), for GPU machines that have
# CUDA, CMake and a compiler but no GoogleTest or nlohmann-json (bench/gpu/run.sh looks there).
#   bash bench/gpu/fetch-deps.sh          # then copy .gpu-deps to the GPU machine's checkout
# Packages: libgtest-dev (static gtest + CMake config), nlohmann-json3-dev (header-only).
# The CLI (CLI11, libpng) is not built on the device (PROXYATTN_BUILD_TOOLS=OFF).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
deps="$root/.gpu-deps"
mkdir -p "$deps/debs" "$deps/root"
cd "$deps/debs"
if ! ls libgtest-dev_*.deb nlohmann-json3-dev_*.deb >/dev/null 2>&1; then
  apt-get download libgtest-dev nlohmann-json3-dev
fi
for deb in "$deps"/debs/*.deb; do dpkg -x "$deb" "$deps/root"; done
rm -rf "$deps/root/usr/share/doc"
du -sh "$deps"
echo "gtest config: $(ls -d "$deps"/root/usr/lib/*/cmake/GTest)"
