#!/usr/bin/env python3
"""Writes the Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) beside a model's sentencepiece tokenizer.model, so that
transformers.AutoTokenizer.from_pretrained(model_dir) loads it, and checks that the converted
tokenizer gives the same ids as sentencepiece on held-out text.

Usage: export_tokenizer.py MODEL_DIR [--check TEXT_FILE] [--lines 2000] [--max-len 32768]
Needs transformers, sentencepiece and protobuf (the conversion reads the sentencepiece model).
Exit status 1 when fewer than --min-match of the checked lines agree exactly.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import sentencepiece as spm


def convert(model_dir, max_len, extra):
    """A fast tokenizer converted from model_dir/tokenizer.model with extra config keys."""
    from transformers import AutoTokenizer
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    tmp = tempfile.mkdtemp()
    shutil.copy(os.path.join(model_dir, "tokenizer.model"), tmp)
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": sp.id_to_piece(sp.bos_id()),
           "eos_token": sp.id_to_piece(sp.eos_id()), "unk_token": sp.id_to_piece(sp.unk_id()),
           "pad_token": None, "add_bos_token": True, "add_eos_token": False,
           "model_max_length": max_len, "clean_up_tokenization_spaces": False}
    cfg.update(extra)
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tok = AutoTokenizer.from_pretrained(tmp)
    return tok, tmp


def agreement(tok, sp, lines):
    same = 0
    first_diff = None
    for s in lines:
        want = [sp.bos_id()] + sp.encode(s)
        got = tok(s, add_special_tokens=True)["input_ids"]
        if got == want:
            same += 1
        elif first_diff is None:
            first_diff = (s[:120], want[:24], got[:24])
    return same, first_diff


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--check", help="text file, one document per line")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--max-len", type=int, default=None, help="model_max_length [config.json's]")
    ap.add_argument("--min-match", type=float, default=0.99)
    args = ap.parse_args()
    max_len = args.max_len
    if max_len is None:
        with open(os.path.join(args.model_dir, "config.json")) as f:
            max_len = int(json.load(f).get("max_position_embeddings", 8192))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model_dir, "tokenizer.model"))
    lines = []
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            for ln in f:
                if ln.strip():
                    lines.append(ln.rstrip("\n")[:4000])
                if len(lines) >= args.lines:
                    break
    # The conversion's handling of the leading space differs between settings; keep the one that
    # reproduces sentencepiece.
    best = None
    for extra in ({"legacy": False}, {"legacy": True}, {}):
        try:
            tok, tmp = convert(args.model_dir, max_len, extra)
        except Exception as e:  # a setting this transformers version rejects
            print(f"settings {extra}: conversion failed: {e}")
            continue
        same, diff = agreement(tok, sp, lines) if lines else (0, None)
        print(f"settings {extra}: {same}/{len(lines)} lines tokenize identically")
        if best is None or same > best[0]:
            best = (same, extra, tok, tmp, diff)
        if lines and same == len(lines):
            break
    if best is None:
        sys.exit("export_tokenizer: no conversion worked")
    same, extra, tok, tmp, diff = best
    if diff:
        print(f"first difference: {diff}")
    tok.save_pretrained(args.model_dir)
    # save_pretrained may write its own copy of the sentencepiece model; keep the original bytes.
    shutil.copy(os.path.join(tmp, "tokenizer.model"), os.path.join(args.model_dir, "tokenizer.model"))
    print(f"wrote the tokenizer files to {args.model_dir} with {extra or 'default settings'}: "
          f"{same}/{len(lines)} lines identical")
    if lines and same < args.min_match * len(lines):
        sys.exit(1)


if __name__ == "__main__":
    main()
