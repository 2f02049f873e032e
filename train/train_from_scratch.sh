#!/usr/bin/env bash
# Trains the model from scratch on one GPU (phase 1): GPU dry run, time-budgeted training, export,
# quick dense eval, HF check, head budgets, Q/K/V dumps. Needs data/build/{train.txt.gz,heldout.txt}
# (scripts/make_corpus.sh) and runs from the repo root:
#   SECS=400 DEST=/tmp/out bash train/train_from_scratch.sh
# Writes to $DEST: model.safetensors, config.json (HF Llama layout) and results.tgz (logs,
# summaries, dumps).
set -uo pipefail
export PYTHONUNBUFFERED=1
NAME=${NAME:-pa-tiny-8k}
SECS=${SECS:-400}
DEST=${DEST:-/tmp/out}
M=/tmp/$NAME
R=/tmp/results
mkdir -p "$M" "$R/qkv" "$DEST"
TOKM=models/$NAME/tokenizer.model
pack() { tar czf "$DEST/results.tgz" -C /tmp results; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$R/gpu.txt"
python3 -c "import torch,transformers;print('torch',torch.__version__,'transformers',transformers.__version__)" | tee -a "$R/gpu.txt"

# 1. dry run on the GPU: tiny model, 3 steps
python3 train/train.py --corpus data/build/train.txt.gz --tokenizer "$TOKM" --out /tmp/dry --tiny --steps 3 \
  --max-docs 2000 --workers 2 --tokens-per-step 4096 > "$R/dry.log" 2>&1 || { cat "$R/dry.log"; exit 1; }
echo "dry run ok"

# 2. train (time-budgeted)
python3 train/train.py --corpus data/build/train.txt.gz --tokenizer "$TOKM" --out "$M" --seconds "$SECS" 2>&1 \
  | tee "$R/train.log" | grep --line-buffered -E '"step": ([0-9]*[05]00|1),|^haystack|^params|"steps"' | cut -c1-700
cp "$TOKM" "$M/"
cp "$M/model.safetensors" "$M/config.json" "$DEST/" || exit 1
cp "$M/train_log.jsonl" "$M/train_info.json" "$R/" 2>/dev/null
pack

# 3. quick dense eval (the full one, 500 per cell, is continue_training.sh)
python3 eval/generate.py --haystack data/build/heldout.txt --tokenizer "$TOKM" --lengths 4096,8192 --n 60 \
  --out /tmp/quick.jsonl
python3 eval/evaluate.py --model "$M" --summary "$R/quick_summary.json" --out "$R/quick_results.jsonl" /tmp/quick.jsonl
pack

# 4. per-head budgets at the trained length, then Q/K/V dumps of the sparsest and the densest layer
python3 eval/generate.py --haystack data/build/heldout.txt --tokenizer "$TOKM" --tasks niah_multikey --lengths 8192 \
  --n 16 --start 2000 --out /tmp/hb.jsonl
python3 eval/head_budget.py --model "$M" --prompts /tmp/hb.jsonl --n 16 --block 128 --gamma 0.95 \
  --json "$R/head_budget.json" --markdown "$R/head_budget.md"
LAYERS=$(python3 -c "
import json; m=json.load(open('$R/head_budget.json'))['layer_mean']
lo=min(range(len(m)),key=lambda i:m[i]); hi=max(range(len(m)),key=lambda i:m[i])
print(f'{lo},{hi}' if lo!=hi else f'0,{len(m)-1}')" 2>/dev/null || echo 2,6)
python3 train/dump_qkv.py --model "$M" --haystack data/build/heldout.txt --layers "$LAYERS" --task niah_multikey \
  --target-length 2056 --out-dir "$R/qkv" --name "$NAME"
pack

# 5. Hugging Face check: from_pretrained, logits against train/model.py, HF greedy generation
python3 train/check_hf.py "$M" /tmp/quick.jsonl 3 2>&1 | grep -v Warning | cut -c1-400 | tee "$R/hf_check.log"
pack
ls -la "$DEST"
