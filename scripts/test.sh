#!/usr/bin/env bash
# Builds proxyattn (installing what it needs) and runs every test suite; prints CTest's summary.
# GPU suites skip without a GPU. PROXYATTN_TEST_LEVEL=full runs the larger sweeps.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 900
