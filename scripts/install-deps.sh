#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the tools need. Idempotent.
# Usage: scripts/install-deps.sh
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libpng-dev libhwy-dev
  clang libclang-rt-14-dev
  python3 python3-dev python3-pip python3-numpy python3-pytest python3-pybind11 pybind11-dev libdlpack-dev
  sentencepiece python3-sentencepiece
  libopenblas-dev libsentencepiece-dev libcairo2-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}" >&2
