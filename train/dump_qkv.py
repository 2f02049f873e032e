#!/usr/bin/env python3
"""Dumps post-RoPE Q/K/V of one held-out prompt, one safetensors file per layer, in the layout of
docs/SPEC.md section 5: tensors q [tokens, num_qo_heads, head_dim], k and v [tokens, num_kv_heads, head_dim].

Usage: dump_qkv.py --model models/NAME --haystack data/build/heldout.txt --layers 2,6 \
                   --task niah_multikey --target-length 2056 --index 0 --dtype bf16 --out-dir data/qkv
The prompt is tasks.build(task, eval_seed(task, target_length, 900000 + index)) on the held-out text,
so it is reproducible and disjoint from the evaluation cells' first 900000 prompts.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "eval"))
import tasks as T  # noqa: E402
from model import load_hf  # noqa: E402
from st import save_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--haystack", required=True)
    ap.add_argument("--layers", default="2,6")
    ap.add_argument("--task", default="niah_multikey")
    ap.add_argument("--target-length", type=int, default=2056)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32", "fp16"])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--name", default=None, help="file prefix (default: the model folder's name)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = args.name or os.path.basename(os.path.normpath(args.model))
    model = load_hf(args.model, device=dev, dtype=torch.float32)  # fp32 activations, cast at the end
    c = model.c
    tok = T.SpmTokenizer(os.path.join(args.model, "tokenizer.model"))
    hay = T.Haystack.from_file(args.haystack, tok)
    seed = T.eval_seed(args.task, args.target_length, 900000 + args.index)
    inst = T.build(args.task, seed, args.target_length, hay, tok, T.load_words())
    prompt = T.to_text(inst, hay)
    ids = [tok.bos_id] + tok.encode(prompt)
    layers = [int(x) for x in args.layers.split(",")]
    cap = {"layers": set(layers)}
    with torch.no_grad():
        model.hidden(torch.tensor([ids], device=dev), capture=cap)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    os.makedirs(args.out_dir, exist_ok=True)
    for L in layers:
        q, k, v = (t[0].transpose(0, 1).contiguous().to(dt) for t in cap[L])  # [T, H, D]
        meta = dict(model=name, layer=L, tokens=len(ids), num_qo_heads=c.n_heads, num_kv_heads=c.n_kv_heads,
                    head_dim=c.head_dim, rope_theta=c.rope_theta, scale=c.head_dim ** -0.5, post_rope="true",
                    task=args.task, seed=seed, target_length=args.target_length,
                    answers=json.dumps(inst["answers"]), needle_depths=json.dumps(inst["depths"]),
                    computed="fp32 activations of the bf16 weights, cast to " + args.dtype)
        path = os.path.join(args.out_dir, f"{name}-layer{L}.safetensors")
        save_file({"q": q, "k": k, "v": v}, path, metadata=meta)
        print(path, tuple(q.shape), tuple(k.shape), os.path.getsize(path))


if __name__ == "__main__":
    main()
