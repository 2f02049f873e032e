#!/usr/bin/env python3
"""Per-head blocks needed for gamma of the last block's attention mass (docs/SPEC.md section 3, stage 5,
without the min/max clamps): for each query head, the last R = min(b, N) rows, softmax over keys u <= t
in fp32, a_h[n] = mean row mass on key block n, n_h = the fewest blocks whose sum reaches gamma * sum(a_h).

Runs the model densely over held-out prompts and reports n_h per (layer, head): mean, min, max over prompts.
Usage: head_budget.py --model models/NAME --prompts prompts.jsonl --n 16 --block 128 --gamma 0.95 \
                      --json out.json --markdown out.md
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import tasks as T  # noqa: E402
from model import load_hf  # noqa: E402


def last_block_budget(q, k, block, gamma):
    """q [H, N, D], k [Hkv, N, D] (post-RoPE) -> n_h [H] and the block count nb."""
    H, N, D = q.shape
    r = H // k.shape[0]
    R = min(block, N)
    nb = (N + block - 1) // block
    out = []
    t = torch.arange(N - R, N, device=q.device)
    u = torch.arange(N, device=q.device)
    causal = u[None, :] <= t[:, None]
    for h in range(H):
        s = (q[h, N - R:].float() @ k[h // r].float().T) / (D ** 0.5)
        s = s.masked_fill(~causal, float("-inf"))
        p = torch.softmax(s, dim=-1)
        pad = nb * block - N
        a = torch.nn.functional.pad(p, (0, pad)).view(R, nb, block).sum(-1).mean(0)
        srt = torch.sort(a, descending=True).values
        cs = torch.cumsum(srt, 0)
        idx = torch.nonzero(cs >= gamma * a.sum()).flatten()
        out.append(int(idx[0]) + 1 if len(idx) else nb)
    return out, nb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSONL from generate.py")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--gamma", type=float, default=0.95)
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = load_hf(args.model, device=dev, dtype=dtype)
    c = model.c
    tok = T.SpmTokenizer(os.path.join(args.model, "tokenizer.model"))
    with open(args.prompts) as f:
        recs = [json.loads(x) for x in f if x.strip()][:args.n]
    budgets = np.zeros((len(recs), c.n_layers, c.n_heads), dtype=np.int64)
    nbs = []
    for i, r in enumerate(recs):
        ids = torch.tensor([[tok.bos_id] + tok.encode(r["prompt"])], device=dev)
        cap = {"layers": set(range(c.n_layers))}
        with torch.no_grad():
            model.hidden(ids, capture=cap)
        for L in range(c.n_layers):
            q, k, _ = cap[L]
            nh, nb = last_block_budget(q[0], k[0], args.block, args.gamma)
            budgets[i, L] = nh
        nbs.append(nb)
    res = dict(block=args.block, gamma=args.gamma, prompts=len(recs),
               tasks=sorted({r["task"] for r in recs}), tokens=[int(r["length"]) for r in recs],
               num_blocks=nbs, mean=budgets.mean(0).round(2).tolist(), min=budgets.min(0).tolist(),
               max=budgets.max(0).tolist(), layer_mean=budgets.mean((0, 2)).round(2).tolist())
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    lines = [f"Blocks (b = {args.block}) needed for {args.gamma:.0%} of the last block's attention mass, per head: "
             f"mean (min-max) over {len(recs)} held-out prompts of {min(res['tokens'])}-{max(res['tokens'])} "
             f"tokens ({max(nbs)} blocks).", "",
             "| layer | " + " | ".join(f"head {h}" for h in range(c.n_heads)) + " |",
             "|---|" + "---|" * c.n_heads]
    for L in range(c.n_layers):
        cells = [f"{budgets[:, L, h].mean():.1f} ({budgets[:, L, h].min()}-{budgets[:, L, h].max()})"
                 for h in range(c.n_heads)]
        lines.append(f"| {L} | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)


if __name__ == "__main__":
    main()
