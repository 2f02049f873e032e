#!/usr/bin/env bash
# Continues training on one GPU (phases 2 and 3) from models/$NAME (the committed weights) with a
# multi-key-heavy mix, then per-head budgets, Q/K/V dumps and the full dense evaluation (500 prompts
# per task and length). Needs data/build/{train.txt.gz,heldout.txt} and runs from the repo root:
#   SECS=160 DEST=/tmp/out bash train/continue_training.sh
# Phase 2 used the defaults below; phase 3 overrode LR, MIX and CURRIC (see the model card).
# LAYERS=3,7 fixes the dumped layers (default: the lowest and highest mean budget).
# DUMP_LONG=<tokens> also writes a long dump of the same layers to $DEST (benchmark data, not committed).
set -uo pipefail
export PYTHONUNBUFFERED=1
NAME=${NAME:-pa-tiny-8k}
SECS=${SECS:-160}
PHASE=${PHASE:-2}
LR=${LR:-1e-3}
MIX=${MIX:-niah_multikey=0.5,niah_single=0.1,niah_multivalue=0.1,vt=0.1,cwe=0.05,lm=0.15}
CURRIC=${CURRIC:-0:1024;0.35:2048;0.6:4096/8192;0.8:8192/8192/4096}
DEST=${DEST:-/tmp/out}
M=/tmp/$NAME
R=/tmp/results
mkdir -p "$M" "$R/qkv" "$DEST"
TOKM=models/$NAME/tokenizer.model
H=data/build/heldout.txt
pack() { tar czf "$DEST/results.tgz" -C /tmp results; }
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$R/gpu.txt"
# evaluation prompts, on the CPU while the GPU trains
( python3 eval/generate.py --haystack $H --tokenizer "$TOKM" --tasks niah_single,niah_multikey --lengths 4096,8192 \
    --n 500 --out /tmp/eval_a.jsonl
  python3 eval/generate.py --haystack $H --tokenizer "$TOKM" --tasks niah_multivalue,vt,cwe --lengths 4096,8192 \
    --n 500 --out /tmp/eval_b.jsonl
  python3 eval/generate.py --haystack $H --tokenizer "$TOKM" --tasks niah_multikey --lengths 8192 --n 16 --start 2000 \
    --out /tmp/hb.jsonl ) &
GEN=$!
python3 train/train.py --corpus data/build/train.txt.gz --tokenizer "$TOKM" --out "$M" --init "models/$NAME" \
  --seconds "$SECS" --lr "$LR" --warmup 30 --answer-weight 2 --mix "$MIX" --curriculum "$CURRIC" 2>&1 \
  | tee "$R/train$PHASE.log" | grep --line-buffered -E '"step": ([0-9]*[05]00|1),|^haystack|^init|"steps"' | cut -c1-600
cp "$TOKM" "$M/"
cp "$M/model.safetensors" "$M/config.json" "$DEST/" || exit 1
cp "$M/train_log.jsonl" "$R/train${PHASE}_log.jsonl"; cp "$M/train_info.json" "$R/train${PHASE}_info.json"
pack
wait $GEN
python3 eval/head_budget.py --model "$M" --prompts /tmp/hb.jsonl --n 16 --block 128 --gamma 0.95 \
  --json "$R/head_budget.json" --markdown "$R/head_budget.md"
[[ -n "${LAYERS:-}" ]] || LAYERS=$(python3 -c "
import json; m=json.load(open('$R/head_budget.json'))['layer_mean']
lo=min(range(len(m)),key=lambda i:m[i]); hi=max(range(len(m)),key=lambda i:m[i])
print(f'{lo},{hi}' if lo!=hi else f'0,{len(m)-1}')" 2>/dev/null || echo 3,7)
python3 train/dump_qkv.py --model "$M" --haystack $H --layers "$LAYERS" --task niah_multikey \
  --target-length 2056 --out-dir "$R/qkv" --name "$NAME"
if [[ -n "${DUMP_LONG:-}" ]]; then
  python3 train/dump_qkv.py --model "$M" --haystack $H --layers "$LAYERS" --task niah_multikey \
    --target-length "$DUMP_LONG" --out-dir /tmp/qkvlong --name "$NAME-${DUMP_LONG}" && cp /tmp/qkvlong/*.safetensors "$DEST/"
fi
pack
python3 eval/evaluate.py --model "$M" --batch-tokens 1048576 --summary "$R/summary_a.json" --out "$R/results_a.jsonl" /tmp/eval_a.jsonl
pack
python3 eval/evaluate.py --model "$M" --batch-tokens 1048576 --summary "$R/summary_b.json" --out "$R/results_b.jsonl" /tmp/eval_b.jsonl
pack
python3 train/check_hf.py "$M" /tmp/eval_a.jsonl 2 2>&1 | grep -v Warning | cut -c1-300 | tee "$R/hf_check.log"
pack
ls -la "$DEST"
