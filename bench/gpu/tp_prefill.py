#!/usr/bin/env python3
"""Prefill of transformers' LlamaForCausalLM under tensor parallelism, sdpa against proxyattn.

The model has Llama-3.1-8B's shapes (32 layers, 32 query and 8 KV heads, head_dim 128, hidden
4096, MLP 14336, vocab 128256) and random bf16 weights (std 0.02, norms 1), written once as a
safetensors checkpoint so that from_pretrained can shard it: nothing is downloaded. ProxyAttn runs
at forced densities (docs/SPEC.md section 2), so the sparsity does not depend on random weights,
with num_proxy_heads g = TP (one proxy per rank; g must be a multiple of TP) on every run, 1 GPU
included, so that both sides do the same attention work.

Launch with torchrun, one process per GPU; TP is the number of processes (after
`pip install --no-build-isolation ./python` on the GPU machine):
    torchrun --standalone --nproc_per_node 2 bench/gpu/tp_prefill.py      # 64K, 128K x 0.1, 0.05
    torchrun --standalone --nproc_per_node 4 bench/gpu/tp_prefill.py      # TP 4
    torchrun --standalone --nproc_per_node 2 bench/gpu/tp_prefill.py --lengths 8192 --layers 2 \
        --repeats 1 --warmup 0                                            # a quick smoke run
Variants: --lengths, --densities, --layers (fewer layers, same shapes), --repeats, --warmup,
--num-proxy-heads (default TP), --checkpoint DIR (the random checkpoint, written when missing;
default: the temp folder), --no-baseline (skip the 1-GPU runs), --json FILE (default
bench/results/tp-<YYYY-MM-DD>-<N>x<card>.json).

Order: rank 0 first writes the checkpoint if needed and times the 1-GPU baseline alone on its GPU
(sdpa and proxyattn, the same model without tensor parallelism), while the other ranks wait to
join the process group. Then every rank loads its shard (transformers' tp_plan="auto", or
DistributedConfig(tp_size=N) where it replaced that keyword) and the TP runs are timed with CUDA
events on every rank after a barrier; a run's time is the slowest rank's (median over repeats).
One untimed recorded pass per density gives the realized density over all heads, reduced over the
ranks.

Each row: seq_len, tp, density, sdpa_ms, proxy_ms, speedup (sdpa / proxy at TP), the 1-GPU
sdpa_ms_1gpu, proxy_ms_1gpu, speedup_1gpu, the scaling efficiencies sdpa_scaling / proxy_scaling
= t_1gpu / (TP * t_tp), speedup_retained = speedup / speedup_1gpu (the target: >= 0.9 at 128K,
density 0.1, TP 2) and realized_density. Output: a table on stdout (rank 0), then one JSON line.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist

import proxyattn
import proxyattn.hf

LLAMA_31_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                   num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                   head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   tie_word_embeddings=False)
SHARD_BYTES = 4 << 30


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def write_checkpoint(path, layers):
    """A random bf16 checkpoint with Llama-3.1-8B shapes (and `layers` layers) in path."""
    import transformers
    from safetensors.torch import save_file
    config = transformers.LlamaConfig(**dict(LLAMA_31_8B, num_hidden_layers=layers))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in
                  transformers.LlamaForCausalLM(config).state_dict().items()}
    tmp = path + ".partial"
    os.makedirs(tmp, exist_ok=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, device="cuda", generator=gen) * 0.02).to(torch.bfloat16).cpu()
        current[name] = t
        size += t.numel() * 2
        if size >= SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(tmp, fname), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * 2
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    config.save_pretrained(tmp)
    os.replace(tmp, path)


def load(path, tp=None):
    import transformers
    if tp is None:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
        model = model.to("cuda")
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.bfloat16, **proxyattn.hf.tp_pretrained_kwargs(tp))
    return model.eval()


def time_prefill(model, ids, repeats, warmup, distributed):
    """Median over repeats of the slowest rank's milliseconds for model(ids) (last logits only)."""
    times = []
    for i in range(warmup + repeats):
        torch.cuda.synchronize()
        if distributed:
            dist.barrier()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.inference_mode():
            model(ids, use_cache=False, logits_to_keep=1)
        end.record()
        torch.cuda.synchronize()
        ms = torch.tensor([start.elapsed_time(end)], device="cuda")
        if distributed:
            dist.all_reduce(ms, op=dist.ReduceOp.MAX)
        if i >= warmup:
            times.append(float(ms.item()))
    return statistics.median(times)


def realized_density(model, ids, distributed):
    with torch.inference_mode(), proxyattn.hf.record_density() as rec:
        model(ids, use_cache=False, logits_to_keep=1)
    return rec.summary()["density_weighted"]  # an all_reduce over the ranks under TP


def measure(model, lengths, densities, g, args, distributed, density_pass):
    """{seq_len: {"sdpa": ms, density: (ms, realized or None)}}."""
    out = {}
    for seq_len in lengths:
        gen = torch.Generator().manual_seed(seq_len)  # the same ids on every rank
        ids = torch.randint(0, LLAMA_31_8B["vocab_size"], (1, seq_len), generator=gen).cuda()
        proxyattn.hf.set_attention(model, "sdpa")
        res = {"sdpa": time_prefill(model, ids, args.repeats, args.warmup, distributed)}
        proxyattn.hf.set_attention(model, "proxyattn")
        for density in densities:
            model.config.proxyattn = {"forced_density": density, "num_proxy_heads": g}
            ms = time_prefill(model, ids, args.repeats, args.warmup, distributed)
            real = realized_density(model, ids, distributed) if density_pass else None
            res[density] = (ms, real)
        out[seq_len] = res
        del ids
        torch.cuda.empty_cache()
    return out


def card_slug(name):
    slug = re.sub(r"^nvidia\s+", "", name.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", slug).strip("-") or "gpu"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="65536,131072")
    ap.add_argument("--densities", default="0.1,0.05")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--num-proxy-heads", type=int, default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",") if x]
    densities = [float(x) for x in args.densities.split(",") if x]
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local_rank)
    g = args.num_proxy_heads or world
    # Fails here, on every rank, when g is not a multiple of TP or 8 KV heads don't split.
    proxyattn.hf.shard_settings(32, 8, g, world)
    proxyattn.hf.register(num_proxy_heads=g)
    ckpt = args.checkpoint or os.path.join(tempfile.gettempdir(),
                                           f"proxyattn-llama31-8b-random-{args.layers}l")
    import transformers
    device = torch.cuda.get_device_name()
    if rank == 0:
        log(f"# {world} x {device}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, proxyattn {proxyattn.__version__}, {args.layers} layers, "
            f"g = {g}")
        if not os.path.exists(os.path.join(ckpt, "config.json")):
            t0 = time.time()
            write_checkpoint(ckpt, args.layers)
            log(f"# wrote the random checkpoint {ckpt} in {time.time() - t0:.0f} s")

    # 1 GPU, rank 0 alone: the other ranks wait in init_process_group.
    base = {}
    if rank == 0 and not args.no_baseline:
        model = load(ckpt)
        base = measure(model, lengths, densities, g, args, False, False)
        del model
        torch.cuda.empty_cache()
        log("# 1-GPU baseline done")

    dist.init_process_group("nccl", timeout=datetime.timedelta(hours=2),
                            device_id=torch.device("cuda", local_rank))
    model = load(ckpt, tp=world)
    q = model.model.layers[0].self_attn.q_proj.weight
    local = q.to_local() if hasattr(q, "to_local") else q
    if local.shape[0] * world != 32 * 128:
        raise SystemExit(f"q_proj is not sharded over {world} ranks: {tuple(local.shape)} local")
    tp_res = measure(model, lengths, densities, g, args, True, True)

    rows = []
    if rank == 0:
        print(f"{'seq_len':>8} {'tp':>3} {'density':>8} {'sdpa_ms':>9} {'proxy_ms':>9} "
              f"{'speedup':>8} {'1gpu_x':>7} {'retained':>8} {'sdpa_eff':>8} {'prox_eff':>8} "
              f"{'realized':>8}")
    for seq_len in lengths:
        sdpa = tp_res[seq_len]["sdpa"]
        for density in densities:
            proxy, real = tp_res[seq_len][density]
            row = dict(seq_len=seq_len, tp=world, density=density, sdpa_ms=round(sdpa, 2),
                       proxy_ms=round(proxy, 2), speedup=round(sdpa / proxy, 3),
                       realized_density=round(real, 4), num_proxy_heads=g)
            if base:
                s1, (p1, _) = base[seq_len]["sdpa"], base[seq_len][density]
                row.update(sdpa_ms_1gpu=round(s1, 2), proxy_ms_1gpu=round(p1, 2),
                           speedup_1gpu=round(s1 / p1, 3),
                           sdpa_scaling=round(s1 / (world * sdpa), 3),
                           proxy_scaling=round(p1 / (world * proxy), 3),
                           speedup_retained=round((sdpa / proxy) / (s1 / p1), 3))
            rows.append(row)
            if rank == 0:
                print(f"{seq_len:>8} {world:>3} {density:>8.2f} {sdpa:>9.1f} {proxy:>9.1f} "
                      f"{sdpa / proxy:>8.2f} {row.get('speedup_1gpu', float('nan')):>7.2f} "
                      f"{row.get('speedup_retained', float('nan')):>8.3f} "
                      f"{row.get('sdpa_scaling', float('nan')):>8.3f} "
                      f"{row.get('proxy_scaling', float('nan')):>8.3f} {real:>8.3f}", flush=True)

    if rank == 0:
        target = [r for r in rows if r["seq_len"] == 131072 and r["density"] == 0.1 and
                  r["tp"] == 2 and "speedup_retained" in r]
        result = dict(bench="tp_prefill", device=device, gpus=world, tp=world,
                      torch=torch.__version__, transformers=transformers.__version__,
                      proxyattn=proxyattn.__version__, layers=args.layers, num_proxy_heads=g,
                      model="LlamaForCausalLM, Llama-3.1-8B shapes, random bf16 weights",
                      repeats=args.repeats, warmup=args.warmup, rows=rows,
                      target_128k_d01_retained_ge_0_9=(target[0]["speedup_retained"] >= 0.9
                                                       if target else None))
        json_path = args.json or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "results",
            f"tp-{datetime.date.today().isoformat()}-{world}x{card_slug(device)}.json")
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        log(f"# wrote {os.path.abspath(json_path)}")
        print(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
