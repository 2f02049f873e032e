#!/usr/bin/env bash
# bench/gpu/run.sh: one device call that builds, tests (quick level), sanitizes and benchmarks the
# CUDA backend, then prints a table. Works from a plain export of the repo plus .gpu-deps/ (made
# by bench/gpu/fetch-deps.sh on the CPU machine and carried).
#   bash bench/gpu/run.sh                    # everything; logs and JSON under $OUT
# Environment:
#   OUT                 output folder [/tmp/proxyattn-out]
#   PROXYATTN_PREBUILT  folder holding cuda_prefill_test and libproxyattn_capi.so built elsewhere;
#                       skips the build when they run here
#   BENCH_ARGS          extra arguments for bench_cuda.py (e.g. "--seq-lens 16384,65536")
#   TEST_FILTER         --gtest_filter for the GPU tests [all]
#   SKIP_TESTS=1, SKIP_SANITIZE=1, SKIP_BENCH=1
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
OUT="${OUT:-/tmp/proxyattn-out}"
mkdir -p "$OUT"
deps="$root/.gpu-deps/root"
status=0
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
bin=""
if [[ -n "${PROXYATTN_PREBUILT:-}" && -x "$PROXYATTN_PREBUILT/cuda_prefill_test" ]] &&
   "$PROXYATTN_PREBUILT/cuda_prefill_test" --gtest_list_tests >/dev/null 2>&1; then
  bin="$PROXYATTN_PREBUILT"
  log "using prebuilt binaries in $bin"
else
  log "building"
  nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real -DPROXYATTN_BUILD_TOOLS=OFF -DPROXYATTN_WERROR=OFF \
    -DCMAKE_PREFIX_PATH="$deps/usr" -DGTest_DIR="$(ls -d "$deps"/usr/lib/*/cmake/GTest)" \
    -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" >"$OUT/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target proxyattn proxyattn_testing cuda_prefill_test \
    >>"$OUT/build.log" 2>&1 || { log "build failed"; tail -40 "$OUT/build.log"; exit 1; }
  cuda_lib="$(dirname "$nvcc_bin")/../lib64"
  g++ -shared -fPIC -O2 -std=c++17 -Iinclude -Isrc -Itests bench/gpu/capi.cc \
    build-gpu/libproxyattn_testing.a build-gpu/libproxyattn.a -L"$cuda_lib" -lcudart_static -ldl \
    -lrt -lpthread -o build-gpu/libproxyattn_capi.so >>"$OUT/build.log" 2>&1 ||
    { log "capi link failed"; tail -20 "$OUT/build.log"; exit 1; }
  cp build-gpu/tests/cuda/cuda_prefill_test build-gpu/
  bin="$root/build-gpu"
  log "built"
fi

if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  log "tests (quick level)"
  "$bin/cuda_prefill_test" --gtest_filter="${TEST_FILTER:-*}" --gtest_output=json:"$OUT/tests.json" \
    >"$OUT/tests.log" 2>&1 || status=1
  grep -E "^\[  (PASSED|FAILED|SKIPPED)|Failure|expected|Which is|rel_error|first" "$OUT/tests.log" | head -40
fi

if [[ "${SKIP_SANITIZE:-0}" != 1 ]]; then
  filter='CudaAttend.EmptyRows*:CudaPlan.PrefillIsBitwiseRepeatable'
  if ! command -v compute-sanitizer >/dev/null; then
    echo "sanitizers: not run (compute-sanitizer absent)" | tee "$OUT/sanitize.txt"
  elif ! compute-sanitizer --tool memcheck "$bin/cuda_prefill_test" --gtest_filter="$filter" \
         >"$OUT/sanitize.log" 2>&1 && grep -q "Device not supported\|error 999" "$OUT/sanitize.log"; then
    echo "sanitizers: not run (device not supported, gVisor?)" | tee "$OUT/sanitize.txt"
  else
    : >"$OUT/sanitize.txt"
    for tool in memcheck racecheck synccheck; do
      compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/cuda_prefill_test" \
        --gtest_filter="$filter" >>"$OUT/sanitize.log" 2>&1
      rc=$?
      echo "sanitizer $tool: rc=$rc $(grep -c '========= ' "$OUT/sanitize.log") report lines so far" |
        tee -a "$OUT/sanitize.txt"
      [[ $rc == 0 ]] || status=1
    done
  fi
fi

if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  log "bench"
  PYTHONUNBUFFERED=1 python3 bench/gpu/bench_cuda.py --lib "$bin/libproxyattn_capi.so" \
    --out "$OUT/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" || status=1
fi
log "done, status $status"
exit $status
