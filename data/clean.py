#!/usr/bin/env python3
"""Turn the extracted Debian dictionary / bible files into plain-text corpora.

Output: one document per line (a dictionary entry, or one bible chapter), whitespace collapsed.
Only the Python standard library is used.

Usage: clean.py EXTRACT_DIR OUT_DIR
  EXTRACT_DIR holds usr/share/dictd/{gcide,jargon,foldoc}.dict.dz and bible.txt (the `bible` dump).
  Writes OUT_DIR/train.txt (gcide + jargon + bible-kjv) and OUT_DIR/heldout.txt (foldoc).
"""
import gzip
import os
import re
import sys

WS = re.compile(r"\s+")


def collapse(s):
    return WS.sub(" ", s).strip()


def dict_entries(path):
    """Yield (headword_line, body_lines) of a dictd .dict.dz file (entries start in column 0)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    cur = None
    for ln in lines:
        if ln and not ln[0].isspace():
            if cur is not None:
                yield cur
            cur = [ln, []]
        elif cur is not None:
            cur[1].append(ln)
    if cur is not None:
        yield cur


def skip_head(head):
    return head.startswith("00-database") or head.startswith("00database") or head.startswith("http")


GCIDE_PRON = re.compile(r"\\[^\\\n]{0,80}\\")           # \Ab"a*ca\
GCIDE_PAREN = re.compile(r"\(\[[^()]{0,80}\)")            # ([a^]b"[.a]*k[.a])
GCIDE_SRC = re.compile(r"\[(?:[^\[\]]*(?:Webster|PJC|WordNet|Century|Suppl|Johnson|Note)[^\[\]]*)\]")
GCIDE_CODE = re.compile(r"\[[^\[\]\s]{1,5}\]")             # [=a] [^] ['e] inside words
BRACES = re.compile(r"[{}]")


def clean_gcide(head, body):
    text = head + " " + " ".join(body)
    text = GCIDE_PRON.sub("", text)
    text = GCIDE_PAREN.sub("", text)
    text = GCIDE_SRC.sub("", text)
    text = GCIDE_CODE.sub("", text)
    text = BRACES.sub("", text)
    text = text.replace("--", " -- ")
    return collapse(text)


def clean_jargon_foldoc(head, body):
    text = head.strip() + ": " + " ".join(body)
    text = BRACES.sub("", text)
    text = re.sub(r"<([a-z ,]+)>", r"(\1)", text)  # <introduction> -> (introduction)
    return collapse(text)


def dict_docs(path, cleaner, min_chars=40):
    for head, body in dict_entries(path):
        if skip_head(head):
            continue
        doc = cleaner(head, body)
        if len(doc) >= min_chars:
            yield doc


def bible_docs(path):
    """`bible -f gen1:1-rev22:21` prints 'Ge1:1 text' lines; group verses by chapter."""
    ref = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
    chap, verses = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln in f:
            m = ref.match(ln.rstrip("\n"))
            if not m:
                continue
            key = (m.group(1), m.group(2))
            if key != chap and verses:
                yield collapse(" ".join(verses))
                verses = []
            chap = key
            verses.append(m.group(4))
    if verses:
        yield collapse(" ".join(verses))


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    dd = os.path.join(src, "usr/share/dictd")
    n = {}
    with open(os.path.join(out, "train.txt"), "w", encoding="utf-8") as f:
        for name, gen in (
            ("gcide", dict_docs(os.path.join(dd, "gcide.dict.dz"), clean_gcide)),
            ("jargon", dict_docs(os.path.join(dd, "jargon.dict.dz"), clean_jargon_foldoc)),
            ("bible-kjv", bible_docs(os.path.join(src, "bible.txt"))),
        ):
            n[name] = 0
            for doc in gen:
                f.write(doc + "\n")
                n[name] += 1
    with open(os.path.join(out, "heldout.txt"), "w", encoding="utf-8") as f:
        n["foldoc"] = 0
        for doc in dict_docs(os.path.join(dd, "foldoc.dict.dz"), clean_jargon_foldoc):
            f.write(doc + "\n")
            n["foldoc"] += 1
    for k, v in n.items():
        print(f"{k}: {v} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
