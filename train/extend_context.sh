#!/usr/bin/env bash
# Extends a trained model's context on one GPU: raises the RoPE base, continues training with a
# length curriculum up to MAX_LEN on the varied training text, then writes the Hugging Face tokenizer
# files and the per-head budgets at the new length. Runs from the repo root and needs
# data/build/train-varied.txt.gz and data/build/heldout.txt (scripts/make_corpus.sh):
#   SECS=300 DEST=/tmp/out bash train/extend_context.sh
# The release models/pa-tiny-32k is two runs (its model card): the defaults below, then from that
# run's DEST: INIT=/tmp/run1 SECS=380 LR=3e-4 CURRIC='0:32768/32768/16384'
#   MIX='niah_multikey=0.45,niah_single=0.05,niah_multivalue=0.15,vt=0.05,cwe=0.05,lm=0.25'.
# Outputs in DEST: model.safetensors, config.json, tokenizer files, results.tgz (logs, budgets).
set -uo pipefail
export PYTHONUNBUFFERED=1
INIT=${INIT:-models/pa-tiny-8k}
NAME=${NAME:-pa-tiny-32k}
SECS=${SECS:-300}
MAX_LEN=${MAX_LEN:-32768}
THETA=${THETA:-500000}
LR=${LR:-6e-4}
CORPUS=${CORPUS:-data/build/train-varied.txt.gz}
MIX=${MIX:-niah_multikey=0.4,niah_single=0.1,niah_multivalue=0.15,vt=0.05,cwe=0.05,lm=0.25}
CURRIC=${CURRIC:-0:8192;0.15:16384;0.4:32768/32768/16384}
DEST=${DEST:-/tmp/out}
M=/tmp/$NAME
R=/tmp/results
mkdir -p "$M" "$R" "$DEST"
TOKM=$INIT/tokenizer.model
H=data/build/heldout.txt
pack() { tar czf "$DEST/results.tgz" -C /tmp results; }
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$R/gpu.txt"
# head-budget prompts at the new length, on the CPU while the GPU trains
python3 eval/generate.py --haystack $H --tokenizer "$TOKM" --tasks niah_multikey --lengths "$MAX_LEN" \
  --n 8 --start 2000 --out /tmp/hb.jsonl &
GEN=$!
python3 train/train.py --corpus "$CORPUS" --tokenizer "$TOKM" --out "$M" --init "$INIT" \
  --seconds "$SECS" --lr "$LR" --warmup 40 --answer-weight 2 --mix "$MIX" --curriculum "$CURRIC" \
  --max-len "$MAX_LEN" --rope-theta "$THETA" 2>&1 \
  | tee "$R/train.log" | grep --line-buffered -E '"step": ([0-9]*[05]0|1),|^haystack|^init|"steps"' | cut -c1-700
cp "$TOKM" "$M/"
cp "$M/model.safetensors" "$M/config.json" "$DEST/" || exit 1
cp "$M/train_log.jsonl" "$R/train_log.jsonl"; cp "$M/train_info.json" "$R/train_info.json"
pack
python3 train/export_tokenizer.py "$M" --check "$H" 2>&1 | tee "$R/tokenizer_check.log" | tail -5
cp "$M"/tokenizer* "$M"/special_tokens_map.json "$DEST/" 2>/dev/null
wait $GEN
python3 eval/head_budget.py --model "$M" --prompts /tmp/hb.jsonl --n 8 --block 128 --gamma 0.95 \
  --json "$R/head_budget.json" --markdown "$R/head_budget.md" 2>&1 | tail -12
pack
ls -la "$DEST"
