#!/usr/bin/env python3
"""End-to-end prefill of transformers' LlamaForCausalLM, sdpa against proxyattn, on one GPU.

The model has Llama-3.1-8B's shapes (32 layers, 32 query and 8 KV heads, head_dim 128, hidden
4096, MLP 14336, vocab 128256) and random bf16 weights: nothing is downloaded. ProxyAttn runs at
forced densities (docs/SPEC.md section 2), so the sparsity does not depend on random weights. Every
ratio is taken in one process, on one card: sdpa timed once per length, then each density.

Run on a machine with an NVIDIA GPU (after `pip install --no-build-isolation ./python`):
    python3 bench/gpu/hf_prefill.py                                   # 32K, 64K, 128K x 0.3, 0.1, 0.05
    python3 bench/gpu/hf_prefill.py --lengths 4096 --layers 4 --repeats 1    # a quick smoke run
Variants: --lengths, --densities, --layers (fewer layers, same shapes), --repeats, --warmup,
--json FILE (default $OUTDIR/hf_prefill.json when OUTDIR is set, else bench/results/hf_prefill.json).
Output: a table on stdout; the last line of stdout is one JSON object.

Also measured: the Python layer's host cost per attention call (proxyattn.hf's forward, the
torch custom op and the DLPack hand-over, less the C++ entry's own host time), and its share of a
32-layer prefill at 4K and at 32K.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

import proxyattn
import proxyattn.hf
from proxyattn import _arrays, _core

LLAMA_31_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                   num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                   head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   tie_word_embeddings=False)


def build_model(layers):
    import transformers
    config = transformers.LlamaConfig(**dict(LLAMA_31_8B, num_hidden_layers=layers))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def time_prefill(model, ids, repeats, warmup):
    """Median milliseconds of model(ids) with logits for the last token only."""
    times = []
    for i in range(warmup + repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        with torch.inference_mode():
            model(ids, use_cache=False, logits_to_keep=1)
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def host_cost_us(module, seq_len, density, calls=30):
    """(python layer us, C++ entry us) per attention call at seq_len, host time only."""
    heads, kv_heads, dim = 32, 8, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, heads, seq_len, dim, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, kv_heads, seq_len, dim, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, kv_heads, seq_len, dim, device="cuda", dtype=torch.bfloat16, generator=g)
    scaling = dim ** -0.5

    def measure(fn):
        fn()
        samples = []
        for _ in range(calls):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e6)
        torch.cuda.synchronize()
        return statistics.median(samples)

    full = measure(lambda: proxyattn.hf.attention_forward(module, q, k, v, None, scaling=scaling))
    # The C++ entry alone: capsules, workspace and output made once, outside the timer.
    cfg = proxyattn.Config(forced_density=density, scale=scaling)
    q3 = q.transpose(1, 2).reshape(seq_len, heads, dim)
    k3 = k.transpose(1, 2).reshape(seq_len, kv_heads, dim)
    v3 = v.transpose(1, 2).reshape(seq_len, kv_heads, dim)
    out = torch.empty_like(q3)
    ws = _arrays.workspace(q3, proxyattn.workspace_size(q3, k3, None, cfg))
    caps = [_arrays.capsule(t, "t") for t in (q3, k3, v3, ws, out)]
    core_cfg = cfg.to_core()
    stream = torch.cuda.current_stream().cuda_stream
    core = measure(lambda: _core.prefill(caps[0], caps[1], caps[2], None, core_cfg, caps[3],
                                         caps[4], None, stream, 0, False))
    return full - core, core


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="32768,65536,131072")
    ap.add_argument("--densities", default="0.3,0.1,0.05")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",") if x]
    densities = [float(x) for x in args.densities.split(",") if x]
    out_dir = os.environ.get("OUTDIR") or os.path.join(os.path.dirname(__file__), "..", "results")
    json_path = args.json or os.path.join(out_dir, "hf_prefill.json")

    import transformers
    proxyattn.hf.register()
    model = build_model(args.layers)
    device = torch.cuda.get_device_name()
    print(f"# {device}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"proxyattn {proxyattn.__version__}, {args.layers} layers", file=sys.stderr)

    rows = []
    print(f"{'seq_len':>8} {'density':>8} {'sdpa_ms':>10} {'proxy_ms':>10} {'speedup':>8}")
    for seq_len in lengths:
        ids = torch.randint(0, LLAMA_31_8B["vocab_size"], (1, seq_len), device="cuda")
        # sdpa once per length (a 32-layer 128K prefill is ~17 s a run on an H200), then each
        # density; all in this process on this card.
        proxyattn.hf.set_attention(model, "sdpa")
        sdpa_ms = time_prefill(model, ids, args.repeats, args.warmup)
        for density in densities:
            proxyattn.hf.set_attention(model, "proxyattn")
            model.config.proxyattn = {"forced_density": density}
            proxy_ms = time_prefill(model, ids, args.repeats, args.warmup)
            row = dict(seq_len=seq_len, density=density, sdpa_ms=round(sdpa_ms, 2),
                       proxy_ms=round(proxy_ms, 2), speedup=round(sdpa_ms / proxy_ms, 3))
            rows.append(row)
            print(f"{seq_len:>8} {density:>8.2f} {sdpa_ms:>10.1f} {proxy_ms:>10.1f} "
                  f"{row['speedup']:>8.2f}", flush=True)
        del ids
        torch.cuda.empty_cache()

    # Python layer's host cost, and its share of a 32-layer prefill (forced density 0.1).
    module = model.model.layers[0].self_attn
    model.config.proxyattn = {"forced_density": 0.1}
    host = []
    for seq_len in (4096, 32768):
        python_us, core_us = host_cost_us(module, seq_len, 0.1)
        ids = torch.randint(0, LLAMA_31_8B["vocab_size"], (1, seq_len), device="cuda")
        proxyattn.hf.set_attention(model, "proxyattn")
        prefill_ms = time_prefill(model, ids, args.repeats, args.warmup) * 32 / args.layers
        share = 32 * python_us / (prefill_ms * 1e3)
        host.append(dict(seq_len=seq_len, python_layer_us=round(python_us, 1),
                         core_entry_us=round(core_us, 1), prefill_32_layers_ms=round(prefill_ms, 1),
                         python_share=round(share, 5)))
        print(f"# host: seq_len {seq_len}: Python layer {python_us:.1f} us/call (C++ entry "
              f"{core_us:.1f} us), {100 * share:.3f}% of a 32-layer prefill ({prefill_ms:.0f} ms)")

    result = dict(bench="hf_prefill", device=device, torch=torch.__version__,
                  transformers=transformers.__version__, layers=args.layers,
                  model="LlamaForCausalLM, Llama-3.1-8B shapes, random bf16 weights",
                  repeats=args.repeats, warmup=args.warmup, rows=rows, host=host)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
