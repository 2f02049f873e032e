#!/usr/bin/env python3
"""Checks the exported folder with Hugging Face transformers: LlamaForCausalLM.from_pretrained(dir) loads it,
LlamaTokenizer-compatible tokenizer.model tokenizes like sentencepiece, and its logits match train/model.py.
Usage: check_hf.py models/NAME PROMPTS.jsonl [N]"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "eval"))
import tasks as T  # noqa: E402
from model import load_hf  # noqa: E402


def main():
    d, prompts = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    import transformers
    from transformers import LlamaForCausalLM
    hf = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32).cuda().eval()
    mine = load_hf(d, device="cuda", dtype=torch.float32)
    tok = T.SpmTokenizer(os.path.join(d, "tokenizer.model"))
    recs = [json.loads(x) for x in open(prompts)][:n]
    worst = 0.0
    hf_ok = 0
    for r in recs:
        ids = torch.tensor([[tok.bos_id] + tok.encode(r["prompt"])], device="cuda")
        with torch.no_grad():
            a = hf(ids).logits.float()
            b = mine(ids).float()
            rel = ((a - b).norm() / b.norm()).item()
            worst = max(worst, rel)
            g = hf.generate(ids, max_new_tokens=r["max_new_tokens"], do_sample=False, eos_token_id=tok.eos_id,
                            pad_token_id=tok.eos_id)
        text = tok.decode(g[0, ids.shape[1]:].tolist())
        ok, _ = T.score(r["answers"], text)
        hf_ok += int(ok)
        print(f"hf-check {r['task']} len={ids.shape[1]} rel_logit_diff={rel:.2e} hf_generate={text!r} "
              f"answers={r['answers']} correct={ok}", flush=True)
    print(json.dumps(dict(transformers=transformers.__version__, max_rel_logit_diff=worst, hf_generate_correct=hf_ok,
                          prompts=len(recs))))


if __name__ == "__main__":
    main()
