#!/usr/bin/env bash
# bench/gpu/profile.sh: Nsight Compute profiles of the cases bench/gpu/ncu_cases.py names (the
# targets bench_cuda.py reports as missed), after bench/gpu/run.sh built build-gpu/.
#   bash bench/gpu/profile.sh OUTDIR [CASE ...]      # default: every case
# Writes OUTDIR/ncu-CASE.txt (details page: speed of light, compute workload, memory, occupancy,
# launch statistics, warp states, scheduler), with RAW=1 also OUTDIR/ncu-CASE.csv (every collected
# metric, a second profiled run), and prints
# a one-line summary per kernel. Clocks are left as they are (--clock-control none), so durations
# are comparable with bench_cuda.py's timings. Needs ncu with access to the hardware counters.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${1:-/tmp/proxyattn-profile}"
shift || true
cases=("$@")
((${#cases[@]})) || cases=(dense64 dense128 kernel16k plan16k)
lib="${BUILD_DIR:-build-gpu}/libproxyattn_capi.so"
mkdir -p "$out"
command -v ncu >/dev/null || { echo "profile.sh: ncu (Nsight Compute) is not on PATH"; exit 1; }
[[ -f "$lib" ]] || { echo "profile.sh: $lib missing (run bench/gpu/run.sh first)"; exit 1; }
sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
          --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats
          --section InstructionStats)
status=0
for c in "${cases[@]}"; do
  # Every launch of the case's kernels, the warm-up call's included (replays are identical).
  skip=0
  ncu --clock-control none --kernel-name-base mangled -k regex:proxyattn --launch-skip "$skip" \
    --launch-count 40 "${sections[@]}" --page details --print-units base \
    python3 bench/gpu/ncu_cases.py --lib "$lib" --case "$c" >"$out/ncu-$c.txt" 2>&1 || status=1
  if [[ "${RAW:-0}" == 1 ]]; then
    ncu --clock-control none --kernel-name-base mangled -k regex:proxyattn --launch-skip "$skip" \
      --launch-count 40 "${sections[@]}" --page raw --csv \
      python3 bench/gpu/ncu_cases.py --lib "$lib" --case "$c" >"$out/ncu-$c.csv" 2>/dev/null || status=1
  fi
  echo "== $c"
  grep -E "^  [A-Za-z_].*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|No Eligible|Waves Per SM|ms per call|==ERR|==WARNING" \
    "$out/ncu-$c.txt" | sed 's/^ *//' | cut -c1-160 | head -60
done
exit $status
