#!/usr/bin/env python3
"""Trains the small long-context Llama on RULER-style tasks over training haystacks.

Recipe (the probe's lessons): a length curriculum from 512 tokens up to the trained length, scheduled on
wall-clock time so a run ends within its time budget; loss = mean LM loss over all tokens + ANSWER_WEIGHT x mean loss
over the answer tokens (the answer and its EOS). Samples come from eval/tasks.py with training seeds
(< EVAL_SEED_BASE) and training text (gcide, jargon, bible-kjv); evaluation uses dict-foldoc.

Usage (GPU): train.py --corpus data/build/train.txt.gz --tokenizer data/build/tokenizer.model \
                        --out /tmp/out/model --seconds 400
       (CPU smoke test): train.py ... --tiny --steps 3 --device cpu
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "eval"))
import tasks as T  # noqa: E402
from model import Config, Llama, load_hf, save_hf  # noqa: E402

TASK_MIX = {"niah_single": 0.22, "niah_multikey": 0.26, "niah_multivalue": 0.14, "vt": 0.14, "cwe": 0.10,
            "lm": 0.14}
# (fraction of the time budget at which the stage starts, lengths sampled in that stage)
CURRICULUM = [(0.00, [512]), (0.08, [1024]), (0.16, [2048]), (0.30, [4096]), (0.50, [8192, 8192, 8192, 4096])]
ANSWER_WEIGHT = 1.0

_G = {}  # worker globals (set before fork)


def make_sample_lm(rng, L):
    hay, tok = _G["hay"], _G["tok"]
    x = np.empty(L + 1, dtype=np.int32)
    m = np.ones(L + 1, dtype=np.int8)
    s = int(rng.integers(0, len(hay.ids) - L - 1))
    x[0] = tok.bos_id
    x[1:] = hay.ids[s:s + L]
    m[0] = 0
    return x, m, "lm"


def make_sample(rng, L, seed):
    """Token ids x[L+1] and a role mask m[L+1] for targets x[1:]: 0 pad, 1 text, 2 answer."""
    hay, tok, words = _G["hay"], _G["tok"], _G["words"]
    names = list(TASK_MIX)
    task = names[int(rng.choice(len(names), p=np.array([TASK_MIX[n] for n in names])))]
    x = np.full(L + 1, tok.eos_id, dtype=np.int32)
    m = np.zeros(L + 1, dtype=np.int8)
    if task == "lm":
        return make_sample_lm(rng, L)
    inst = T.build(task, seed, L, hay, tok, words)
    p = T.to_ids(inst, hay, tok)
    a = np.asarray(tok.encode(inst["answer_text"]) + [tok.eos_id], dtype=np.int32)
    if len(p) + len(a) > L + 1:  # too short a length for this task: train on plain text instead
        return make_sample_lm(rng, L)
    n = len(p) + len(a)
    seq = np.concatenate([p, a])[:n]
    x[:n] = seq
    m[1:len(p)] = 1
    m[len(p):n] = 2
    return x, m, task


def worker(wid, q, length_v, tokens_per_step):
    torch.set_num_threads(1)
    rng = np.random.default_rng(7919 * (wid + 1))
    seed = wid * 50_000_000  # training seeds: [0, 1e9), disjoint from evaluation's
    while True:
        L = int(length_v.value)
        B = max(1, tokens_per_step // L)
        xs, ms, ts = [], [], []
        for _ in range(B):
            x, m, t = make_sample(rng, L, seed)
            seed += 1
            xs.append(x)
            ms.append(m)
            ts.append(t)
        q.put((L, np.stack(xs), np.stack(ms), ts))


def pick_length(frac, rng):
    opts = CURRICULUM[0][1]
    for start, lens in CURRICULUM:
        if frac >= start:
            opts = lens
    return int(opts[int(rng.integers(0, len(opts)))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=400)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: time only)")
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--tokens-per-step", type=int, default=131072)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model and lengths, for smoke tests")
    ap.add_argument("--max-docs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue from this HF-layout folder (fresh optimizer)")
    ap.add_argument("--mix", default=None, help="task mix, e.g. niah_multikey=0.5,lm=0.2 (renormalized)")
    ap.add_argument("--curriculum", default=None, help="stages 'frac:len/len;frac:len', e.g. 0:1024;0.5:4096/8192")
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--answer-weight", type=float, default=1.0)
    ap.add_argument("--ckpt-every", type=float, default=120.0, help="seconds between checkpoints")
    ap.add_argument("--rope-theta", type=float, default=None,
                    help="RoPE base for this run (with --init: the context extension's new base)")
    args = ap.parse_args()

    global CURRICULUM, TASK_MIX, ANSWER_WEIGHT
    ANSWER_WEIGHT = args.answer_weight
    if args.mix:
        kv = [x.split("=") for x in args.mix.split(",") if x]
        tot = sum(float(v) for _, v in kv)
        TASK_MIX = {k: float(v) / tot for k, v in kv}
    if args.curriculum:
        CURRICULUM = [(float(a), [int(L) for L in b.split("/")])
                      for a, b in (st.split(":") for st in args.curriculum.split(";") if st)]
    if args.tiny:
        CURRICULUM = [(0.0, [256]), (0.5, [512])]
        args.max_len = 512
    else:
        CURRICULUM = [(s, [min(L, args.max_len) for L in lens]) for s, lens in CURRICULUM]

    t_setup = time.time()
    tok = T.make_tokenizer(args.tokenizer)
    _G["tok"] = tok
    _G["hay"] = T.Haystack.from_file(args.corpus, tok, max_docs=args.max_docs)
    _G["words"] = T.load_words()
    print(f"haystack: {len(_G['hay'].sents)} sentences, {len(_G['hay'].ids)} tokens, "
          f"setup {time.time() - t_setup:.1f}s", flush=True)

    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize=2 * args.workers)
    length_v = ctx.Value("i", CURRICULUM[0][1][0])
    procs = [ctx.Process(target=worker, args=(w, q, length_v, args.tokens_per_step), daemon=True)
             for w in range(args.workers)]
    for p in procs:
        p.start()

    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if args.init:
        model = load_hf(args.init, device=dev, dtype=torch.float32).train()
        c = model.c
        # Context extension: the trained length and the RoPE base come from this run's arguments
        # (positions are rotated per call, so nothing else depends on them).
        c.max_seq_len = max(c.max_seq_len, args.max_len)
        if args.rope_theta:
            c.rope_theta = args.rope_theta
        print(f"initialized from {args.init} (context {c.max_seq_len}, rope theta {c.rope_theta:g})",
              flush=True)
    else:
        if args.tiny:
            c = Config(dim=64, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=32, ffn_dim=128, max_seq_len=512)
        else:
            c = Config(max_seq_len=args.max_len)
            if args.rope_theta:
                c.rope_theta = args.rope_theta
        model = Llama(c).to(dev)
    print(f"params {sum(p.numel() for p in model.parameters())} ({c.n_params() * 2 / 2**20:.2f} MiB bf16)",
          flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if dev.type == "cuda":
        opt_kw["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            **opt_kw)
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    warmup = args.warmup if not args.tiny else 1
    rng = np.random.default_rng(args.seed)
    log = open(os.path.join(args.out, "train_log.jsonl"), "w") if os.path.isdir(args.out) else None
    os.makedirs(args.out, exist_ok=True)
    if log is None:
        log = open(os.path.join(args.out, "train_log.jsonl"), "w")

    t0 = time.time()
    last_ckpt = t0
    step, tokens_seen = 0, 0
    agg = {}
    while True:
        el = time.time() - t0
        frac = el / args.seconds
        if frac >= 1.0 or (args.steps and step >= args.steps):
            break
        length_v.value = pick_length(min(frac + 0.01, 0.999), rng)  # workers fill ahead
        L, xs, ms, tsk = q.get(timeout=300)
        x = torch.from_numpy(xs).to(dev, non_blocking=True).long()
        m = torch.from_numpy(ms).to(dev, non_blocking=True)
        inp, tgt, role = x[:, :-1], x[:, 1:], m[:, 1:]
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        with amp:
            h = model.hidden(inp)
            logits = model.logits(h)
        ce = F.cross_entropy(logits.float().reshape(-1, c.vocab_size), tgt.reshape(-1), reduction="none")
        ce = ce.view(tgt.shape)
        valid = (role > 0).float()
        ans = (role == 2).float()
        lm_loss = (ce * valid).sum() / valid.sum().clamp(min=1)
        ans_loss = (ce * ans).sum() / ans.sum().clamp(min=1)
        loss = lm_loss + ANSWER_WEIGHT * ans_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += inp.numel()
        # exact-match of answers under teacher forcing, by task
        with torch.no_grad():
            ok = ((logits.argmax(-1) == tgt) | (role != 2)).all(dim=1).cpu().numpy()
        for t, o in zip(tsk, ok):
            if t != "lm":
                a = agg.setdefault((L, t), [0, 0])
                a[0] += int(o)
                a[1] += 1
        if step % 25 == 0 or step == 1:
            rec = dict(step=step, t=round(time.time() - t0, 1), L=L, lr=lr, loss=loss.item(), lm=lm_loss.item(),
                       ans=ans_loss.item(), gnorm=float(gn), tokens=tokens_seen,
                       acc={f"{t}@{l}": round(a[0] / a[1], 3) for (l, t), a in sorted(agg.items())})
            agg = {}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_ckpt > args.ckpt_every:
            save_hf(model, args.out, extra_meta=dict(step=step, tokens=tokens_seen))
            last_ckpt = time.time()
    train_s = time.time() - t0
    save_hf(model, args.out, extra_meta=dict(step=step, tokens=tokens_seen))
    info = dict(steps=step, tokens=tokens_seen, train_seconds=round(train_s, 1), lr=args.lr,
                tokens_per_step=args.tokens_per_step, curriculum=CURRICULUM, task_mix=TASK_MIX,
                answer_weight=ANSWER_WEIGHT, config=c.__dict__, init=args.init,
                device=torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
                torch=torch.__version__)
    with open(os.path.join(args.out, "train_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info), flush=True)
    for p in procs:
        p.terminate()


if __name__ == "__main__":
    main()
