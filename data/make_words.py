#!/usr/bin/env python3
"""Writes eval/words.txt: 1000 frequent plain English words of the training text (4-8 lowercase
letters, the 150 most frequent words skipped), used for needle keys and the common-word task.
Usage: make_words.py data/build/train.txt eval/words.txt"""
import collections
import re
import sys

BAN = {"special", "magic", "number", "numbers", "variable", "value", "memorize", "common", "words", "word"}
cnt = collections.Counter()
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        cnt.update(re.findall(r"\b[a-z]{4,8}\b", line))
ranked = [w for w, _ in cnt.most_common() if w not in BAN]
words = sorted(ranked[150:1150])
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(words) + "\n")
