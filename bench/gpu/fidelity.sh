#!/usr/bin/env bash
# bench/gpu/fidelity.sh: the accuracy study of models/pa-tiny-32k on a machine with an NVIDIA GPU,
# torch, transformers and pybind11: installs proxyattn's module with CUDA (bench/gpu/python.sh),
# then runs python -m proxyattn.eval over held-out needle prompts (the study preset: dense,
# ProxyAttn at gamma 0.80-0.99, and sink+local, static top-k and the paper's last-block rule at
# ProxyAttn gamma 0.90's density), writing JSON, PNG and the per-prompt outputs.
#   bash bench/gpu/fidelity.sh OUTDIR
# Environment: MODEL [models/pa-tiny-32k], LENGTHS [32768,16384,8192], N [500], PRESET [study],
# TASKS [niah_single,niah_multikey,niah_multivalue], DEFAULTS [block_size=64,min_budget_tokens=256]
# (the Config every ProxyAttn-based method starts from), NAME [fidelity] (output file stem),
# TIME_LIMIT_S [0: none] (stops the evaluator; every finished cell is already in the JSON),
# EVAL_ARGS (more arguments for the evaluator; they win over the ones here). Attention recall is
# measured on the first prompt of each cell, matched densities are calibrated on the first 16.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${1:-/tmp/proxyattn-fidelity}"
mkdir -p "$out"
MODEL="${MODEL:-models/pa-tiny-32k}"
NAME="${NAME:-fidelity}"
bash bench/gpu/python.sh install "$out" || exit 1
export PYTHONPATH="${PY_SITE:-/tmp/proxyattn-site}${PYTHONPATH:+:$PYTHONPATH}"
limit=()
[[ "${TIME_LIMIT_S:-0}" != 0 ]] && limit=(timeout --signal=INT "$TIME_LIMIT_S")
# The model's own sentencepiece file: the prompts are token for token those it was trained on.
PYTHONUNBUFFERED=1 "${limit[@]}" python3 -m proxyattn.eval --model "$MODEL" \
  --tokenizer "$MODEL/tokenizer.model" --defaults "${DEFAULTS:-block_size=64,min_budget_tokens=256}" \
  --tasks "${TASKS:-niah_single,niah_multikey,niah_multivalue}" --lengths "${LENGTHS:-32768,16384,8192}" \
  --n "${N:-500}" --preset "${PRESET:-study}" --batch-tokens 1048576 --recall-prompts 1 --calib-prompts 16 \
  --json "$out/$NAME.json" --png "$out/$NAME.png" --outputs "$out/$NAME-outputs.jsonl" ${EVAL_ARGS:-}
status=$?
echo "fidelity.sh: evaluator exit status $status"
exit $status
