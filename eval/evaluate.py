#!/usr/bin/env python3
"""Dense-attention evaluator (PyTorch). Follows the scoring rule of eval/README.md.

For every JSONL record: tokens = [BOS] + sentencepiece(prompt); greedy decoding of up to
record["max_new_tokens"] tokens, stopping at EOS; the output text is the decoded continuation; the record is
correct when every answer is found in it (tasks.score). Prompts of one cell are batched: right-padded
prefill (causal, so padding never reaches real tokens), then decode steps whose attention mask hides the
padding; RoPE positions continue each prompt's own length.

Usage: evaluate.py --model models/NAME --out results.jsonl --summary summary.json FILE.jsonl...
"""
import argparse
import collections
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import tasks as T  # noqa: E402
from model import KVCache, load_hf  # noqa: E402


def _load_stats():
    """python/proxyattn/eval/stats.py, the one Wilson interval, loaded from its file (plain Python:
    neither the compiled proxyattn package nor its install is needed here)."""
    import importlib.util
    path = os.path.join(HERE, "..", "python", "proxyattn", "eval", "stats.py")
    spec = importlib.util.spec_from_file_location("proxyattn_eval_stats", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wilson = _load_stats().wilson


@torch.no_grad()
def greedy(model, seqs, max_new, eos_id, device, dtype):
    c = model.c
    B = len(seqs)
    lens = torch.tensor([len(s) for s in seqs], device=device)
    Tm = int(lens.max())
    idx = torch.full((B, Tm), eos_id, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        idx[i, :len(s)] = torch.as_tensor(s, device=device)
    cache = KVCache(c, B, Tm + max_new, device, dtype)
    h = model.hidden(idx, cache=cache)
    nxt = model.logits(h[torch.arange(B, device=device), lens - 1].float().to(h.dtype)).argmax(-1)
    out = [nxt]
    done = nxt == eos_id
    cache.causal_now = False
    for step in range(max_new - 1):
        if bool(done.all()):
            break
        S = cache.pos + 1
        j = torch.arange(S, device=device)
        mask = (j[None, :] < lens[:, None]) | (j[None, :] >= Tm)
        h = model.hidden(nxt[:, None], pos=(lens + step)[:, None], cache=cache, mask=mask[:, None, None, :])
        nxt = model.logits(h[:, 0]).argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        out.append(nxt)
        done = done | (nxt == eos_id)
    gen = torch.stack(out, 1).cpu().numpy()
    res = []
    for row in gen:
        r = []
        for t in row:
            if t == eos_id:
                break
            r.append(int(t))
        res.append(r)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", default=None, help="default: MODEL/tokenizer.model")
    ap.add_argument("--out", default=None)
    ap.add_argument("--summary", default=None)
    ap.add_argument("--batch-tokens", type=int, default=262144)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = load_hf(args.model, device=dev, dtype=dtype)
    tok = T.SpmTokenizer(args.tokenizer or os.path.join(args.model, "tokenizer.model"))
    recs = []
    for fn in args.files:
        with open(fn) as f:
            recs.extend(json.loads(line) for line in f if line.strip())
    cells = collections.defaultdict(list)
    for r in recs:
        cells[(r["task"], r["target_length"])].append(r)
    fout = open(args.out, "w") if args.out else None
    summary = []
    t_all = time.time()
    for (task, tl), rs in sorted(cells.items(), key=lambda kv: (kv[0][1], T.TASKS.index(kv[0][0]))):
        t0 = time.time()
        ids = tok.encode_batch([r["prompt"] for r in rs])
        ids = [[tok.bos_id] + x for x in ids]
        order = np.argsort([len(x) for x in ids])
        k_ok, frac = 0, 0.0
        B = max(1, args.batch_tokens // max(len(x) for x in ids))
        for s in range(0, len(rs), B):
            sel = order[s:s + B]
            gens = greedy(model, [ids[i] for i in sel], rs[sel[0]]["max_new_tokens"], tok.eos_id, dev, dtype)
            for i, g in zip(sel, gens):
                r = rs[i]
                text = tok.decode(g)
                ok, fr = T.score(r["answers"], text)
                k_ok += int(ok)
                frac += fr
                if fout:
                    fout.write(json.dumps(dict(task=task, target_length=tl, length=len(ids[i]), seed=r["seed"],
                                               answers=r["answers"], output=text, correct=ok, fraction=fr)) + "\n")
        n = len(rs)
        lo, hi = wilson(k_ok, n)
        row = dict(task=task, target_length=tl, n=n, correct=k_ok, accuracy=k_ok / n, ci95=[lo, hi],
                   mean_fraction=frac / n, seconds=round(time.time() - t0, 1))
        summary.append(row)
        print(f"{task:16s} {tl:6d} n={n:4d} acc={k_ok / n:.4f} [{lo:.4f}, {hi:.4f}] frac={frac / n:.4f} "
              f"({row['seconds']}s)", flush=True)
    if fout:
        fout.close()
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(dict(model=args.model, device=str(torch.cuda.get_device_name(0)) if dev.type == "cuda" else "cpu",
                           seconds=round(time.time() - t_all, 1), cells=summary), f, indent=2)


if __name__ == "__main__":
    main()
