#!/usr/bin/env bash
# bench/gpu/python.sh: the Python face on a machine with an NVIDIA GPU and torch, transformers,
# pybind11 and pytest. Builds proxyattn's module with CUDA into PY_SITE, runs python/tests with
# the CUDA tests required (not skipped), then times transformers' prefill (bench/gpu/hf_prefill.py).
#   bash bench/gpu/python.sh [install|test|bench|all] [OUTDIR]   # default all; logs and JSON in OUTDIR
# Environment: OUTDIR [/tmp/proxyattn-gpu], PY_SITE [/tmp/proxyattn-site], PROXYATTN_CUDA_ARCHS
# [90a-real], PROXYATTN_CC/PROXYATTN_CXX [gcc/g++], HF_ARGS (extra arguments for hf_prefill.py,
# e.g. "--lengths 32768").
# An install left in PY_SITE (PY_SITE/.installed) is reused.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
step="${1:-all}"
out="${2:-${OUTDIR:-/tmp/proxyattn-gpu}}"
SITE="${PY_SITE:-/tmp/proxyattn-site}"
mkdir -p "$out" "$SITE"
log() { echo "[python.sh $(date -u +%H:%M:%S)] $*"; }

install() {
  if [[ -f "$SITE/.installed" ]]; then log "module already installed in $SITE"; return 0; fi
  # Build with the system compilers that built the system Python: a module built by a second GCC
  # that links libstdc++ statically (some CUDA images export such a CXX) segfaulted in
  # std::ostream << long (every error message with a number) inside that Python. A clean build
  # folder, since setuptools reuses objects across a compiler change.
  export CC="${PROXYATTN_CC:-gcc}" CXX="${PROXYATTN_CXX:-g++}"
  # setup.py builds the library through CMake, which finds nlohmann_json in .gpu-deps
  # (bench/gpu/fetch-deps.sh) where the system has none.
  [[ -d "$root/.gpu-deps/root/usr" ]] && export CMAKE_PREFIX_PATH="$root/.gpu-deps/root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  rm -rf python/build
  log "pip install ./python (CUDA ${PROXYATTN_CUDA_ARCHS:-90a-real}, CC=$CC CXX=$CXX)"
  local t0=$SECONDS
  PROXYATTN_ENABLE_CUDA=1 PROXYATTN_CUDA_ARCHS="${PROXYATTN_CUDA_ARCHS:-90a-real}" \
    python3 -m pip install -q --no-build-isolation --no-deps --no-cache-dir --target "$SITE" \
    ./python >"$SITE/pip.log" 2>&1 || { log "pip install failed"; tail -30 "$SITE/pip.log"; return 1; }
  touch "$SITE/.installed"
  log "installed in $((SECONDS - t0)) s"
}

wait_installed() {  # a background install started by an earlier call
  local waited=0
  while [[ ! -f "$SITE/.installed" ]] && pgrep -f "pip install.*$SITE" >/dev/null && ((waited < 400)); do
    sleep 5; waited=$((waited + 5))
  done
  install
}

run_tests() {
  export PYTHONPATH="$SITE"
  python3 -c "import proxyattn as pa, sys; print('proxyattn', pa.__version__, 'cuda', pa.cuda_available()); sys.exit(0 if pa.cuda_available() else 1)" ||
    { log "the module has no CUDA backend: CUDA tests would skip"; return 1; }
  log "pytest python/tests"
  python3 -m pytest -q -rs python/tests --junitxml="$out/pytest.xml" 2>&1 | tee "$out/pytest.log" | tail -25
  return "${PIPESTATUS[0]}"
}

run_bench() {
  export PYTHONPATH="$SITE"
  log "hf_prefill"
  PYTHONUNBUFFERED=1 python3 bench/gpu/hf_prefill.py --json "$out/hf_prefill.json" ${HF_ARGS:-} 2>&1 |
    grep -v "^{" | tee "$out/hf_prefill.log"
  return "${PIPESTATUS[0]}"
}

status=0
case "$step" in
  install) install || status=1 ;;
  test) wait_installed && run_tests || status=1 ;;
  bench) wait_installed && run_bench || status=1 ;;
  all) wait_installed || exit 1
       run_tests || status=1
       run_bench || status=1 ;;
  *) echo "usage: $0 [install|test|bench|all]" >&2; exit 2 ;;
esac
log "done, status $status"
exit $status
