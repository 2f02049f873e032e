#!/usr/bin/env python3
"""Writes evaluation prompts as JSONL, one record per line:
  {"task", "length" (prompt tokens incl. BOS), "target_length", "seed", "prompt", "answers",
   "max_new_tokens", "depths"}
Seeds: tasks.eval_seed(task, target_length, index), all >= tasks.EVAL_SEED_BASE (training uses fewer).
Haystack: the held-out text (dict-foldoc, data/build/heldout.txt). Deterministic for the same inputs.

Usage: generate.py --haystack data/build/heldout.txt --tokenizer models/NAME/tokenizer.model \
                   --tasks niah_single,niah_multikey --lengths 4096,8192 --n 500 --out prompts.jsonl
Without --tokenizer, lengths count whitespace words (for tests without sentencepiece).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402


def generate(hay, tok, words, tasks, lengths, n, start=0):
    for L in lengths:
        for task in tasks:
            for i in range(start, start + n):
                inst = T.build(task, T.eval_seed(task, L, i), L, hay, tok, words)
                yield T.record(inst, hay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--haystack", required=True)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--tasks", default=",".join(T.TASKS))
    ap.add_argument("--lengths", default="4096,8192")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--start", type=int, default=0, help="first prompt index of each cell")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tok = T.make_tokenizer(args.tokenizer)
    hay = T.Haystack.from_file(args.haystack, tok)
    words = T.load_words()
    tasks = [t for t in args.tasks.split(",") if t]
    lengths = [int(x) for x in args.lengths.split(",") if x]
    with open(args.out, "w") as f:
        for rec in generate(hay, tok, words, tasks, lengths, args.n, args.start):
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
