#!/usr/bin/env bash
# Trains the sentencepiece BPE tokenizer (vocab 8192) on the training text only (never on dict-foldoc).
# Needs Debian's `sentencepiece` package (spm_train). Deterministic for a given input and spm version.
# Usage: scripts/train_tokenizer.sh [CORPUS_DIR] [OUT_PREFIX]   (defaults: data/build, data/build/tokenizer)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="${1:-$root/data/build}"
prefix="${2:-$root/data/build/tokenizer}"
# unk=0 bos=1 eos=2 (the Llama convention); digits split one per piece; unknown bytes fall back to <0xNN>.
spm_train --input="$corpus/train.txt" --model_prefix="$prefix" --model_type=bpe --vocab_size=8192 \
  --character_coverage=0.9995 --split_digits=true --byte_fallback=true \
  --input_sentence_size=400000 --shuffle_input_sentence=true --seed_sentencepiece_size=1000000 \
  --max_sentence_length=16384 --num_threads="$(nproc)" --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --minloglevel=1
sha256sum "$prefix.model"
