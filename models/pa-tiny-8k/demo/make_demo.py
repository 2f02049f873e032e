#!/usr/bin/env python3
"""Writes the prompts that `proxyattn demo` embeds, from the held-out text with eval/'s generators.

  demo_prompt.txt / demo_answer.txt    niah_multikey, target length 8192, evaluation seed index 1000
  short_prompt.txt / short_answer.txt  niah_single, target length 1024, evaluation seed index 1000

The seed index 1000 lies past every evaluation cell used so far (indices 0-499), so these prompts are
held out from the measured ones too. Usage (after scripts/make_corpus.sh):
  /usr/bin/python3 models/pa-tiny-8k/demo/make_demo.py data/build/heldout.txt
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))
sys.path.insert(0, os.path.join(root, "eval"))
import tasks as T  # noqa: E402

INDEX = 1000
CASES = {"demo": ("niah_multikey", 8192), "short": ("niah_single", 1024)}


def main():
    heldout = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "data", "build", "heldout.txt")
    tok = T.make_tokenizer(os.path.join(here, "..", "tokenizer.model"))
    hay = T.Haystack.from_file(heldout, tok)
    words = T.load_words()
    for name, (task, length) in CASES.items():
        inst = T.build(task, T.eval_seed(task, length, INDEX), length, hay, tok, words)
        rec = T.record(inst, hay)
        with open(os.path.join(here, f"{name}_prompt.txt"), "w", encoding="utf-8") as f:
            f.write(rec["prompt"])
        with open(os.path.join(here, f"{name}_answer.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(rec["answers"]) + "\n")
        print(f"{name}: {task}, {rec['length']} tokens, seed {rec['seed']}, answers {rec['answers']}, "
              f"needle depths {[round(d, 3) for d in rec['depths']]}")


if __name__ == "__main__":
    main()
