#!/usr/bin/env bash
# bench/gpu/run.sh: builds the CUDA backend, runs the GPU tests (quick level) and compute-sanitizer
# (memcheck, racecheck, synccheck) side by side, records the SASS facts of the attention kernels,
# then times our kernels against PyTorch SDPA (flash and cuDNN) in one process and prints a table.
# Needs an NVIDIA GPU, the CUDA toolkit, CMake, a C++ compiler, Python with PyTorch, and .gpu-deps/
# (GoogleTest and nlohmann-json, made by bench/gpu/fetch-deps.sh where apt works).
#   bash bench/gpu/run.sh OUTDIR        # logs, bench.json, sass.txt, phases.txt under OUTDIR
# Environment:
#   PROXYATTN_COMMIT    commit recorded in bench.json [else the file .proxyattn-commit, else git,
#                       else "unknown"]
#   PROXYATTN_PREBUILT  folder holding cuda_prefill_test and libproxyattn_capi.so built elsewhere;
#                       skips the build when they run here
#   BUILD_DIR           [build-gpu]; JOBS [nproc]; CMAKE_ARGS extra configure arguments (e.g.
#                       "-DPROXYATTN_DTYPES=bf16" to halve the CUDA compile; the GPU tests want fp16)
#   BENCH_ARGS          extra arguments for bench_cuda.py (e.g. "--quick" or "--seq-lens 16384")
#   TEST_FILTER         --gtest_filter for the GPU tests [all]
#   SKIP_BUILD=1 (reuse BUILD_DIR), SKIP_TESTS=1, SKIP_SANITIZE=1, SKIP_BENCH=1
#   TEST_TIMEOUT_S [300], SANITIZE_TIMEOUT_S [150]: bounds of the test run and of each sanitizer
# Phase durations go to OUTDIR/phases.txt and the last lines of stdout.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
OUTDIR="${1:-${OUTDIR:-/tmp/proxyattn-gpu}}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
deps="$root/.gpu-deps/root"
build="${BUILD_DIR:-build-gpu}"
jobs="${JOBS:-$(nproc)}"
status=0
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*"; }
t_phase=$SECONDS
: >"$OUTDIR/phases.txt"
phase_done() {  # phase_done NAME: records the seconds since the previous phase ended
  echo "$1 $((SECONDS - t_phase)) s" | tee -a "$OUTDIR/phases.txt"
  t_phase=$SECONDS
}

if [[ -z "${PROXYATTN_COMMIT:-}" ]]; then
  if [[ -s .proxyattn-commit ]]; then
    PROXYATTN_COMMIT="$(head -c 64 .proxyattn-commit | tr -d '[:space:]')"
  else
    PROXYATTN_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  fi
fi
export PROXYATTN_COMMIT
log "commit $PROXYATTN_COMMIT, $jobs jobs, output in $OUTDIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUTDIR/gpu.txt"

runs_here() { [[ -x "$1/cuda_prefill_test" ]] && "$1/cuda_prefill_test" --gtest_list_tests >/dev/null 2>&1; }

build_here() {
  local nvcc_bin cuda_home gen=() gtest_dir
  nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  cuda_home="$(cd "$(dirname "$nvcc_bin")/.." && pwd)"
  command -v ninja >/dev/null && gen=(-G Ninja)
  gtest_dir="$(ls -d "$deps"/usr/lib/*/cmake/GTest 2>/dev/null | head -1)"
  if [[ -z "$gtest_dir" || ! -f "$deps/usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" ]]; then
    log "missing .gpu-deps (run bash bench/gpu/fetch-deps.sh where apt works and copy .gpu-deps here)"
    return 1
  fi
  log "configure ($(cmake --version | head -1), $("$nvcc_bin" --version | tail -1))"
  cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real -DPROXYATTN_ENABLE_CUDA=ON -DPROXYATTN_BUILD_TESTS=ON \
    -DPROXYATTN_BUILD_TOOLS=OFF -DPROXYATTN_WERROR=OFF -DCMAKE_PREFIX_PATH="$deps/usr" \
    -DGTest_DIR="$gtest_dir" -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" \
    ${CMAKE_ARGS:-} >"$OUTDIR/build.log" 2>&1 || { log "configure failed"; tail -40 "$OUTDIR/build.log"; return 1; }
  phase_done configure
  log "compile"
  cmake --build "$build" -j "$jobs" --target proxyattn proxyattn_oracle cuda_prefill_test \
    >>"$OUTDIR/build.log" 2>&1 || { log "build failed"; grep -m 20 -B 2 -A 6 "error" "$OUTDIR/build.log"; tail -20 "$OUTDIR/build.log"; return 1; }
  phase_done compile
  # The benchmark's C ABI over the public API. --no-undefined: a symbol missing from the static
  # libraries fails here, not when Python loads it.
  g++ -shared -fPIC -O2 -std=c++17 -Iinclude -I"$cuda_home/include" \
    bench/gpu/capi.cc "$build/libproxyattn_oracle.a" "$build/libproxyattn.a" \
    -L"$cuda_home/lib64" -lcudart_static -ldl -lrt -lpthread -Wl,--no-undefined \
    -o "$build/libproxyattn_capi.so" >>"$OUTDIR/build.log" 2>&1 ||
    { log "capi link failed"; tail -20 "$OUTDIR/build.log"; return 1; }
  cp "$build/tests/cuda/cuda_prefill_test" "$build/"
  grep -h "spill" "$OUTDIR/build.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" | sort -u |
    head -8 >"$OUTDIR/spills.txt"
  phase_done capi
}

bin=""
if [[ -n "${PROXYATTN_PREBUILT:-}" ]] && runs_here "$PROXYATTN_PREBUILT"; then
  bin="$PROXYATTN_PREBUILT"
  log "using prebuilt binaries in $bin"
elif [[ "${SKIP_BUILD:-0}" == 1 ]] && runs_here "$build"; then
  bin="$root/$build"
  log "reusing $bin"
else
  log "building into $build"
  if build_here; then
    bin="$root/$build"
    log "built"
  else
    phase_done build-failed
    exit 1
  fi
fi

# SASS facts of the attention kernels: per kernel, wgmma (HGMMA) and mma.sync (HMMA) instructions,
# local-memory traffic (STL/LDL: spills), bulk tensor loads (UTMALDG).
if command -v cuobjdump >/dev/null && [[ -f "$bin/libproxyattn_capi.so" ]]; then
  cuobjdump -sass "$bin/libproxyattn_capi.so" 2>/dev/null | awk '
    /Function :/ { if (f ~ /attend/) printf "%s HGMMA=%d HMMA=%d STL=%d LDL=%d UTMALDG=%d\n", f, g, h, s, l, t
                   f = $3; g = h = s = l = t = 0 }
    /HGMMA/ { g++ } /HMMA/ { h++ } /STL/ { s++ } /LDL/ { l++ } /UTMALDG/ { t++ }
    END { if (f ~ /attend/) printf "%s HGMMA=%d HMMA=%d STL=%d LDL=%d UTMALDG=%d\n", f, g, h, s, l, t }
  ' >"$OUTDIR/sass.txt"
  log "SASS of the attention kernels (OUTDIR/sass.txt):"
  sed 's/^_ZN9proxyattn4cuda6kernel//' "$OUTDIR/sass.txt" | cut -c1-150
fi

# Tests and sanitizers run side by side (both check correctness; neither is timed).
test_pid=""
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  log "tests (quick level)"
  timeout "${TEST_TIMEOUT_S:-300}" "$bin/cuda_prefill_test" --gtest_filter="${TEST_FILTER:-*}" \
    --gtest_output=json:"$OUTDIR/tests.json" >"$OUTDIR/tests.log" 2>&1 &
  test_pid=$!
fi
if [[ "${SKIP_SANITIZE:-0}" != 1 ]]; then
  # Every attention kernel runs in these tests (sm_80 and the sm_90a forms; attend_kernels()).
  filter='CudaAttend.EmptyRows*:CudaAttend.CorruptPlan*:CudaPlan.PrefillIsBitwiseRepeatable'
  sanitize() {  # one log per tool; a timeout is recorded, not failed
    timeout "${SANITIZE_TIMEOUT_S:-150}" compute-sanitizer --tool "$1" --error-exitcode 9 \
      "$bin/cuda_prefill_test" --gtest_filter="$filter" >"$OUTDIR/sanitize-$1.log" 2>&1
  }
  record() {  # tool rc
    local what="rc=$2"
    [[ $2 == 124 ]] && what="timed out after ${SANITIZE_TIMEOUT_S:-150} s (not an error report)"
    echo "sanitizer $1: $what; $(grep -c '^========= ' "$OUTDIR/sanitize-$1.log") report lines;" \
      "$(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUTDIR/sanitize-$1.log")" | tee -a "$OUTDIR/sanitize.txt"
    [[ $2 == 0 || $2 == 124 ]] || status=1
  }
  : >"$OUTDIR/sanitize.txt"
  if ! command -v compute-sanitizer >/dev/null; then
    echo "sanitizers: not run (compute-sanitizer absent)" | tee "$OUTDIR/sanitize.txt"
  else
    sanitize memcheck
    rc=$?
    if [[ $rc != 0 ]] && grep -q "Device not supported\|error 999" "$OUTDIR/sanitize-memcheck.log"; then
      echo "sanitizers: not run (compute-sanitizer does not support this device or sandbox)" | tee "$OUTDIR/sanitize.txt"
    else
      record memcheck $rc
      for tool in racecheck synccheck; do
        sanitize "$tool"
        record "$tool" $?
      done
    fi
  fi
  phase_done sanitize
fi
if [[ -n "$test_pid" ]]; then
  wait "$test_pid" || status=1
  grep -E "^\[  (PASSED|FAILED|SKIPPED)|Failure|expected|Which is|rel error|first" "$OUTDIR/tests.log" | head -40
  phase_done tests
fi

if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  log "bench"
  # shellcheck disable=SC2086  # BENCH_ARGS is a word list
  PYTHONUNBUFFERED=1 python3 bench/gpu/bench_cuda.py --lib "$bin/libproxyattn_capi.so" \
    --out "$OUTDIR/bench.json" ${BENCH_ARGS:-} 2>&1 |
    tee "$OUTDIR/bench.log" || status=1
  phase_done bench
fi
log "done, status $status; phases: $(tr '\n' ',' <"$OUTDIR/phases.txt")"
exit $status
