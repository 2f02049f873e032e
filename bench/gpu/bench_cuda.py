#!/usr/bin/env python3
"""bench/gpu/bench_cuda.py: times proxyattn's CUDA path against PyTorch SDPA (flash and cuDNN
backends) in one process on one card, and writes JSON.

Run (on a machine with an NVIDIA GPU, after bench/gpu/run.sh has built
build-gpu/libproxyattn_capi.so):
  python3 bench/gpu/bench_cuda.py --lib build-gpu/libproxyattn_capi.so --out results.json
  ... --quick                       smoke test: 32/8/128 at 16K, every kind, short timings
  ... --kinds dense,kernel,dumps    only these sections (names below)
Sections (row kinds) per (shape, N), in this order:
  dense      SDPA flash, SDPA cuDNN, our dense (kind "dense"); checks our dense against SDPA once
  kernel     kernel only on docs/SPEC.md random masks at densities 1, 0.3, 0.1, 0.05
             ("kernel_random_mask")
  pipeline   plan + attend at forced densities 1, 0.3, 0.1, 0.05 ("pipeline_forced"), with the
             plan alone timed at each (g = 1)
  plan       the plan alone at gamma 0.95 with g = 1 and g = 4 ("plan"; plan_over_cudnn)
  gamma      the whole method at gamma 0.95 on these random inputs ("pipeline_gamma0.95_random_inputs")
  variants   the attention kernels against each other (PROXYATTN_CUDA_ATTEND, src/cuda/dispatch.h):
             dense and random mask d = 0.05 per kernel at N >= 64K ("variant_dense",
             "variant_kernel_random_mask", field attend_kernel)
and once per real Q/K/V dump (--dumps; docs/SPEC.md section 5 files):
  dumps      gamma 0.9 and 0.95 at each --dump-blocks, min_budget 256 ("real_dump_gamma<g>"):
             realized density, recall (docs/SPEC.md section 4, from fp32 dense probabilities in
             torch and the plan's block mask), output error against fp32 dense attention, prefill time
Cases run most important first: a dense pass over every (shape, N >= 32K) (SDPA flash, cuDNN,
ours), the first shape at N >= 64K, then the dumps, then the rest by N descending. A deadline skips what does not fit (recorded as skipped rows). Timing: median of
CUDA-event timings after a warm-up (at least 3 runs, about --budget-s per measurement); inputs are
far larger than L2 except in the small dumps. Every row has sdpa_flash_ms, sdpa_cudnn_ms and
proxyattn_ms (the timed call of the row).
"""
import argparse
import ctypes
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "train"))
from st import load_file  # noqa: E402 (the project's safetensors reader)

I64, F64, VP, INT = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int
NO_TIMES = {"sdpa_flash_ms": None, "sdpa_cudnn_ms": None, "proxyattn_ms": None}
SECTIONS = ("dense", "kernel", "pipeline", "plan", "gamma", "variants", "dumps")
# PROXYATTN_CUDA_ATTEND values the variants section compares (src/cuda/dispatch.h).
ATTEND_KERNELS = ("sm80", "sm90_one_tile", "sm90_persistent", "sm90_more_stages", "sm90_pingpong")


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.pa_last_error.restype = ctypes.c_char_p
    lib.pa_device_name.restype = ctypes.c_char_p
    lib.pa_workspace_size.restype = I64
    lib.pa_workspace_size.argtypes = [I64, I64, I64, I64, INT, INT, F64, I64, F64, INT]
    lib.pa_dense.argtypes = [VP, VP, VP, VP, I64, I64, I64, I64, INT]
    lib.pa_plan.argtypes = [VP, VP, I64, I64, I64, I64, INT, INT, INT, F64, I64, F64, INT, VP, I64]
    lib.pa_prefill.argtypes = [VP, VP, VP, VP, I64, I64, I64, I64, INT, INT, INT, F64, I64, F64,
                               INT, VP, I64]
    lib.pa_last_density.restype = F64
    lib.pa_last_block_mask.restype = I64
    lib.pa_last_block_mask.argtypes = [VP, I64]
    lib.pa_random_plan_create.restype = VP
    lib.pa_random_plan_create.argtypes = [I64, I64, I64, I64, INT, F64, ctypes.c_uint64]
    lib.pa_random_plan_density.restype = F64
    lib.pa_random_plan_density.argtypes = [VP]
    lib.pa_random_plan_attend.argtypes = [VP, VP, VP, VP, VP, I64, I64, I64, I64, INT]
    lib.pa_random_plan_free.argtypes = [VP]
    return lib


def check(lib, rc):
    if rc != 0:
        raise RuntimeError(lib.pa_last_error().decode())


def ptr(t):
    return ctypes.c_void_p(t.data_ptr())


class Timer:
    """Median of CUDA-event timings: one warm-up run, then at least min_reps timed runs, as many
    as fit budget_s (the first timed run sizes the count; it counts as a sample)."""

    def __init__(self, budget_s, min_reps=3, max_reps=20):
        self.budget_s, self.min_reps, self.max_reps = budget_s, min_reps, max_reps

    def __call__(self, fn, budget_s=None):
        budget = self.budget_s if budget_s is None else budget_s
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        reps = 1
        while len(times) < reps:
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
            if len(times) == 1:
                reps = max(self.min_reps, min(self.max_reps, int(budget * 1000.0 / max(times[0], 1e-3))))
        times.sort()
        return times[len(times) // 2]


def sdpa(q, k_full, v_full, backend):
    n, h, d = q.shape
    qt = q.view(1, n, h, d).transpose(1, 2)
    kt = k_full.view(1, n, h, d).transpose(1, 2)
    vt = v_full.view(1, n, h, d).transpose(1, 2)

    def run():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    return run


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# --- real dumps ------------------------------------------------------------------------------------

def read_safetensors(path):
    """{name: CPU tensor} of q, k, v, read by the project's own reader (train/st.py)."""
    return load_file(path)


def dump_quality(q, k, v, o, mask, block, scale):
    """docs/SPEC.md section 4 on one sequence, in fp32 on the GPU, one head at a time.
    q [N, H, D], k/v [N, Hkv, D], o [N, H, D] ours; mask [H, nb, nb] uint8 (the plan's blocks).
    Returns recall (mean over incomplete rows of all heads), recall_min_head (min over heads of the
    per-head mean), rel_error (max over heads of ||o - O_dense|| / ||O_dense||, O_dense fp32),
    max_abs_error, rel_error_vs_sparse_ref (ours against fp32 attention on our own plan: the
    kernel's error, not the cost of sparsity), per-head density."""
    N, H, D = q.shape
    r = H // k.shape[1]
    nb = mask.shape[1]
    pos = torch.arange(N, device=q.device)
    causal = pos[None, :] <= pos[:, None]                         # [N, N]
    row_blk = pos // block
    tri = torch.tril(torch.ones(nb, nb, dtype=torch.bool, device=q.device))
    sum_recall, n_incomplete, head_recall = 0.0, 0, []
    rel, rel_sparse, max_abs, dens = [], [], 0.0, []
    for h in range(H):
        qh, kh, vh = q[:, h].float(), k[:, h // r].float(), v[:, h // r].float()
        s = (qh @ kh.T) * scale                                   # [N, N]
        s = s.masked_fill(~causal, float("-inf"))
        lse_dense = torch.logsumexp(s, dim=-1)                    # [N]
        o_dense = torch.softmax(s, dim=-1) @ vh                   # [N, D]
        mh = mask[h].bool() & tri                                 # [nb, nb]
        keep = mh[row_blk][:, row_blk] & causal                   # [N, N]
        s_sparse = s.masked_fill(~keep, float("-inf"))
        lse_sparse = torch.logsumexp(s_sparse, dim=-1)
        o_sparse = torch.nan_to_num(torch.softmax(s_sparse, dim=-1)) @ vh
        recall = torch.exp(lse_sparse - lse_dense)                # [N]
        complete_blocks = mh.sum(dim=1) == torch.arange(1, nb + 1, device=q.device)  # [nb]
        incomplete = ~complete_blocks[row_blk]                    # [N]
        cnt = int(incomplete.sum())
        if cnt:
            total = float(recall[incomplete].sum())
            sum_recall += total
            n_incomplete += cnt
            head_recall.append(total / cnt)
        oh = o[:, h].float()
        rel.append(((oh - o_dense).norm() / o_dense.norm()).item())
        rel_sparse.append(((oh - o_sparse).norm() / o_sparse.norm()).item())
        max_abs = max(max_abs, (oh - o_dense).abs().max().item())
        dens.append(float(mh.sum()) / (nb * (nb + 1) / 2))
        del s, s_sparse, keep
    return {
        "recall": sum_recall / n_incomplete if n_incomplete else 1.0,
        "recall_min_head": min(head_recall) if head_recall else 1.0,
        "incomplete_rows": n_incomplete,
        "rel_error": max(rel), "max_abs_error": max_abs,
        "rel_error_vs_sparse_ref": max(rel_sparse), "density_per_head": dens,
    }


def run_dump(lib, path, args, timer, rows, dev):
    tensors = read_safetensors(path)
    q, k, v = (tensors[n].to(dev).contiguous() for n in ("q", "k", "v"))
    N, H, D = q.shape
    HKV = k.shape[1]
    dt = {torch.bfloat16: 0, torch.float16: 1}[q.dtype]
    scale = 1.0 / math.sqrt(D)
    o = torch.empty_like(q)
    k_full = k.repeat_interleave(H // HKV, dim=1).contiguous()
    v_full = v.repeat_interleave(H // HKV, dim=1).contiguous()
    flash_ms = timer(sdpa(q, k_full, v_full, SDPBackend.FLASH_ATTENTION))
    try:
        cudnn_ms = timer(sdpa(q, k_full, v_full, SDPBackend.CUDNN_ATTENTION))
    except RuntimeError:
        cudnn_ms = None
    dense_ms = timer(lambda: check(lib, lib.pa_dense(ptr(q), ptr(k), ptr(v), ptr(o), N, H, HKV, D, dt)))
    base = {"dump": os.path.basename(path), "shape": f"{H}/{HKV}/{D}", "seq_len": N,
            "num_qo_heads": H, "num_kv_heads": HKV, "head_dim": D, "num_proxy_heads": 1,
            "min_budget": args.dump_min_budget, "last_block": "exact",
            "sdpa_flash_ms": flash_ms, "sdpa_cudnn_ms": cudnn_ms, "dense_ms": dense_ms}
    for block in (int(b) for b in args.dump_blocks.split(",")):
        for gamma in (0.9, 0.95):
            cfg = (block, 1, gamma, args.dump_min_budget, 0.0, 1)
            ws_size = lib.pa_workspace_size(N, H, HKV, D, *cfg)
            if ws_size < 0:
                raise RuntimeError(lib.pa_last_error().decode())
            ws = torch.empty(max(ws_size, 1), dtype=torch.uint8, device=dev)
            pre = lambda: check(lib, lib.pa_prefill(ptr(q), ptr(k), ptr(v), ptr(o), N, H, HKV, D, dt,
                                                    *cfg, ptr(ws), ws_size))
            pre()
            torch.cuda.synchronize()
            real = lib.pa_last_density()
            nb = (N + block - 1) // block
            mask = np.empty(H * nb * nb, dtype=np.uint8)
            got = lib.pa_last_block_mask(mask.ctypes.data_as(ctypes.c_void_p), mask.size)
            if got != mask.size:
                raise RuntimeError(f"pa_last_block_mask: {got} bytes ({lib.pa_last_error().decode()})")
            mask_t = torch.from_numpy(mask.reshape(H, nb, nb)).to(dev)
            quality = dump_quality(q, k, v, o, mask_t, block, scale)
            ms = timer(pre)
            plan_ms = timer(lambda: check(lib, lib.pa_plan(ptr(q), ptr(k), N, H, HKV, D, dt, *cfg,
                                                           ptr(ws), ws_size)))
            rows.append(dict(base, kind=f"real_dump_gamma{gamma}", block=block, gamma=gamma,
                             density=None, realized_density=real, proxyattn_ms=ms, plan_ms=plan_ms,
                             **quality))


# --- one (shape, N) ----------------------------------------------------------------------------------

def run_case(lib, shape, N, args, timer, rows, result, dev, t_start, sections):
    H, HKV, D = (int(x) for x in shape.split("/"))
    B = args.block
    q = torch.randn(N, H, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
    o = torch.empty_like(q)
    k_full = k.repeat_interleave(H // HKV, dim=1).contiguous()
    v_full = v.repeat_interleave(H // HKV, dim=1).contiguous()
    P = ptr
    base = {"shape": shape, "seq_len": N, "num_qo_heads": H, "num_kv_heads": HKV, "head_dim": D,
            "block": B}
    checks = result["checks"]
    late = lambda: time.time() - t_start > args.deadline_s

    # Baselines are needed by every row of the case.
    flash_ms = timer(sdpa(q, k_full, v_full, SDPBackend.FLASH_ATTENTION))
    try:
        cudnn_ms = timer(sdpa(q, k_full, v_full, SDPBackend.CUDNN_ATTENTION))
    except RuntimeError as e:
        cudnn_ms = None
        checks["cudnn_error"] = str(e)[:200]
    dense_fn = lambda: check(lib, lib.pa_dense(P(q), P(k), P(v), P(o), N, H, HKV, D, 0))
    if "dense_rel_error_vs_sdpa" not in checks:
        dense_fn()
        ref = sdpa(q, k_full, v_full, SDPBackend.FLASH_ATTENTION)().transpose(1, 2)[0]
        torch.cuda.synchronize()
        checks["dense_rel_error_vs_sdpa"] = rel_err(o, ref)
        checks["dense_check_case"] = f"{shape} N={N}"
        del ref
    dense_ms = timer(dense_fn)
    base.update(sdpa_flash_ms=flash_ms, sdpa_cudnn_ms=cudnn_ms, dense_ms=dense_ms)
    on_cudnn = lambda x: (x / cudnn_ms) if cudnn_ms else None
    if "dense" in sections or N < getattr(args, "dense_below", 0):
        causal_flop = 4.0 * H * D * N * N / 2.0
        rows.append(dict(base, kind="dense", density=1.0, proxyattn_ms=dense_ms,
                         proxyattn_tflops=causal_flop / dense_ms / 1e9,
                         sdpa_flash_tflops=causal_flop / flash_ms / 1e9,
                         sdpa_cudnn_tflops=(causal_flop / cudnn_ms / 1e9) if cudnn_ms else None))

    def skip(kind):
        rows.append(dict(base, kind=kind, proxyattn_ms=None, skipped="deadline"))

    # Kernel only on random masks (g = num_kv_heads).
    handles = {}
    try:
        if "kernel" in sections:
            for dens in (1.0, 0.3, 0.1, 0.05):
                if late():
                    skip("kernel_random_mask")
                    break
                handle = lib.pa_random_plan_create(N, H, HKV, D, B, dens, 1)
                if not handle:
                    raise RuntimeError(lib.pa_last_error().decode())
                handles[dens] = handle
                real = lib.pa_random_plan_density(handle)
                ms = timer(lambda: check(lib, lib.pa_random_plan_attend(
                    handle, P(q), P(k), P(v), P(o), N, H, HKV, D, 0)))
                rows.append(dict(base, kind="kernel_random_mask", density=dens,
                                 realized_density=real, proxyattn_ms=ms,
                                 kernel_over_d_dense=ms / (real * dense_ms)))
                lib.pa_random_plan_free(handle)
                del handles[dens]

        # Full pipeline at forced densities, and the plan alone (g = 1).
        ws_size = 0
        for g in (1, 4):
            if HKV % g == 0:
                size = lib.pa_workspace_size(N, H, HKV, D, B, g, 0.95, 2048, 0.05, 1)
                if size < 0:
                    raise RuntimeError(lib.pa_last_error().decode())
                ws_size = max(ws_size, size)
        ws = torch.empty(ws_size, dtype=torch.uint8, device=dev)
        if "pipeline" in sections:
            for dens in (1.0, 0.3, 0.1, 0.05):
                if late():
                    skip("pipeline_forced")
                    break
                pre = lambda: check(lib, lib.pa_prefill(P(q), P(k), P(v), P(o), N, H, HKV, D, 0, B,
                                                        1, 0.95, 2048, dens, 1, P(ws), ws_size))
                ms = timer(pre)
                real = lib.pa_last_density()
                if dens == 1.0 and "pipeline_forced1_vs_dense_max_abs" not in checks:
                    o_pipe = o.clone()
                    dense_fn()
                    torch.cuda.synchronize()
                    checks["pipeline_forced1_vs_dense_max_abs"] = (o_pipe.float() - o.float()).abs().max().item()
                    del o_pipe
                plan_ms = timer(lambda: check(lib, lib.pa_plan(P(q), P(k), N, H, HKV, D, 0, B, 1,
                                                               0.95, 2048, dens, 1, P(ws), ws_size)))
                rows.append(dict(base, kind="pipeline_forced", density=dens, realized_density=real,
                                 num_proxy_heads=1, proxyattn_ms=ms, plan_ms=plan_ms,
                                 speedup_vs_flash=flash_ms / ms,
                                 speedup_vs_cudnn=(cudnn_ms / ms) if cudnn_ms else None,
                                 plan_over_cudnn=on_cudnn(plan_ms)))
        # The plan alone at gamma 0.95 (not forced), g = 1 and g = 4 (g must divide Hkv).
        if "plan" in sections:
            for g in (1, 4):
                if HKV % g:
                    continue
                if late():
                    skip("plan")
                    break
                plan_ms = timer(lambda: check(lib, lib.pa_plan(P(q), P(k), N, H, HKV, D, 0, B, g,
                                                               0.95, 2048, 0.0, 1, P(ws), ws_size)))
                rows.append(dict(base, kind="plan", density=None, num_proxy_heads=g, gamma=0.95,
                                 realized_density=lib.pa_last_density(), proxyattn_ms=plan_ms,
                                 plan_ms=plan_ms, plan_over_cudnn=on_cudnn(plan_ms)))
        # The method itself: gamma 0.95, random inputs (the budgets are data-driven).
        if "gamma" in sections:
            if late():
                skip("pipeline_gamma0.95_random_inputs")
            else:
                pre = lambda: check(lib, lib.pa_prefill(P(q), P(k), P(v), P(o), N, H, HKV, D, 0, B,
                                                        1, 0.95, 2048, 0.0, 1, P(ws), ws_size))
                ms = timer(pre)
                rows.append(dict(base, kind="pipeline_gamma0.95_random_inputs", density=None,
                                 num_proxy_heads=1, realized_density=lib.pa_last_density(),
                                 proxyattn_ms=ms))
        # The attention kernels against each other (bf16 builds carry every variant).
        if "variants" in sections and N >= 65536:
            handle = lib.pa_random_plan_create(N, H, HKV, D, B, 0.05, 1)
            if not handle:
                raise RuntimeError(lib.pa_last_error().decode())
            handles["variants"] = handle
            real = lib.pa_random_plan_density(handle)
            saved = os.environ.get("PROXYATTN_CUDA_ATTEND")
            try:
                for name in ATTEND_KERNELS:
                    if late():
                        skip("variant_dense")
                        break
                    os.environ["PROXYATTN_CUDA_ATTEND"] = name
                    ms = timer(dense_fn)
                    rows.append(dict(base, kind="variant_dense", attend_kernel=name, density=1.0,
                                     proxyattn_ms=ms))
                    ms = timer(lambda: check(lib, lib.pa_random_plan_attend(
                        handle, P(q), P(k), P(v), P(o), N, H, HKV, D, 0)))
                    rows.append(dict(base, kind="variant_kernel_random_mask", attend_kernel=name,
                                     density=0.05, realized_density=real, proxyattn_ms=ms))
            finally:
                if saved is None:
                    os.environ.pop("PROXYATTN_CUDA_ATTEND", None)
                else:
                    os.environ["PROXYATTN_CUDA_ATTEND"] = saved
        del ws
    finally:
        for handle in handles.values():
            lib.pa_random_plan_free(handle)


def case_order(shapes, seq_lens):
    """The first shape at N >= 64K (longest first), then the rest by N descending."""
    lens = sorted(seq_lens, reverse=True)
    first = [(shapes[0], n) for n in lens if n >= 65536]
    rest = [(s, n) for n in lens for s in shapes if (s, n) not in first]
    return first, rest


def print_table(result):
    rows = result["rows"]
    print(f"\n{result['card']}  driver {result['driver']}  torch {result['torch']}  "
          f"commit {result['commit']}")
    print(f"checks {json.dumps(result['checks'])}")
    f = lambda x, w=8, p=2: (f"{x:{w}.{p}f}" if isinstance(x, (int, float)) else f"{'-':>{w}}")
    print(f"{'shape':>9} {'N':>6} {'kind':>32} {'dens':>5} {'real':>6} {'flash':>8} {'cudnn':>8} "
          f"{'ours':>8} {'plan':>6} {'x/fl':>6} {'x/cu':>6}  note")
    for r in rows:
        name = r["kind"]
        if "dump" in r:  # e.g. "dump g0.95 b128 layer7"
            name = f"dump g{r.get('gamma', '-')} b{r['block']} {os.path.splitext(r['dump'])[0].split('-')[-1]}"
        if "skipped" in r or "error" in r or r.get("proxyattn_ms") is None:
            why = r.get("skipped") or r.get("error", "no time")
            print(f"{r['shape']:>9} {r['seq_len']:>6} {name:>32} {f(r.get('density'), 5)} "
                  f"{'':>6} {'':>8} {'':>8} {'':>8} {'':>6} {'':>6} {'':>6}  {why[:100]}")
            continue
        ours, fl, cu = r["proxyattn_ms"], r["sdpa_flash_ms"], r["sdpa_cudnn_ms"]
        kind = r["kind"]
        if "attend_kernel" in r:
            name = f"{kind} {r['attend_kernel']}"[-32:]
        if kind == "dense":
            note = f"{r['proxyattn_tflops']:.0f} TF/s (flash {r['sdpa_flash_tflops']:.0f})"
        elif "kernel_over_d_dense" in r:
            note = f"k/(d*dense) {r['kernel_over_d_dense']:.3f}"
        elif kind == "plan" or kind == "pipeline_forced":
            pc = r.get("plan_over_cudnn")
            note = (f"g={r['num_proxy_heads']} plan/cudnn {pc:.2%}" if pc is not None else "")
        elif kind.startswith("real_dump"):
            note = (f"recall {r['recall']:.4f} min {r['recall_min_head']:.4f} "
                    f"err {r['rel_error']:.4f} (kernel {r['rel_error_vs_sparse_ref']:.1e})")
        else:
            note = ""
        print(f"{r['shape']:>9} {r['seq_len']:>6} {name:>32} {f(r.get('density'), 5)} "
              f"{f(r.get('realized_density'), 6, 3)} {f(fl)} {f(cu)} {f(ours)} "
              f"{f(r.get('plan_ms'), 6)} {f(fl / ours, 6)} {f((cu / ours) if cu else None, 6)}  {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libproxyattn_capi.so")
    ap.add_argument("--out", required=True, help="JSON results file (rewritten after each case)")
    ap.add_argument("--seq-lens", default="16384,32768,65536,131072")
    ap.add_argument("--shapes", default="32/8/128,28/4/128,32/8/64",
                    help="heads/kv_heads/head_dim list")
    ap.add_argument("--deadline-s", type=float, default=200.0,
                    help="sections starting later than this (from start-up) are skipped")
    ap.add_argument("--budget-s", type=float, default=1.0,
                    help="time per measurement (at least 3 runs after a warm-up)")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--dumps", default="data/qkv/*.safetensors,.gpu-data/*.safetensors",
                    help="globs of real Q/K/V dumps (docs/SPEC.md section 5 layout)")
    ap.add_argument("--dump-blocks", default="64,128")
    ap.add_argument("--dump-min-budget", type=int, default=256)
    ap.add_argument("--kinds", default=",".join(SECTIONS), help="sections to run: " + ",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: the first shape at 16K, short timings (overrides --seq-lens, --shapes)")
    args = ap.parse_args()
    sections = set(args.kinds.split(","))
    bad = sections - set(SECTIONS)
    if bad:
        ap.error(f"--kinds: unknown {sorted(bad)}; known: {','.join(SECTIONS)}")
    if args.quick:
        args.shapes = args.shapes.split(",")[0]
        args.seq_lens = "16384"
        args.budget_s = min(args.budget_s, 0.2)
    shapes = args.shapes.split(",")
    seq_lens = [int(x) for x in args.seq_lens.split(",")]
    dumps = sorted({p for pattern in args.dumps.split(",") if pattern for p in glob.glob(pattern)})

    t_start = time.time()
    lib = load_lib(args.lib)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        driver = "unknown"
    result = {
        "card": props.name, "driver": driver, "torch": torch.__version__,
        "commit": os.environ.get("PROXYATTN_COMMIT", "unknown"),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "dtype": "bf16", "block": args.block,
        "method": f"median of CUDA events after a warm-up, >= 3 runs, ~{args.budget_s} s each",
        "args": vars(args), "checks": {}, "errors": [], "rows": [],
    }
    rows = result["rows"]
    timer = Timer(args.budget_s)

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)

    def run_guarded(label, fn):
        try:
            fn()
        except Exception as e:  # one failing case must not lose the others
            msg = f"{label}: {type(e).__name__}: {e}"[:400]
            print(f"error in {msg}", file=sys.stderr)
            result["errors"].append(msg)
        torch.cuda.empty_cache()
        save()

    def cases(todo):
        for shape, n in todo:
            if time.time() - t_start > args.deadline_s:
                rows.append(dict(shape=shape, seq_len=n, kind="case", skipped="deadline", **NO_TIMES))
                continue
            t0 = time.time()
            run_guarded(f"{shape} N={n}", lambda: run_case(lib, shape, n, args, timer, rows, result,
                                                           dev, t_start, sections))
            print(f"[bench] {shape} N={n}: {time.time() - t0:.1f} s", file=sys.stderr)

    first, rest = case_order(shapes, seq_lens)
    case_sections = sections - {"dumps"}
    if "dense" in sections:
        # Dense rows first for every shape at N >= 32K (the dense targets); the later passes do
        # not repeat them (their baselines are timed again for their own rows).
        dense_cases = [(s, n) for n in sorted(seq_lens, reverse=True) for s in shapes if n >= 32768]
        full = sections
        sections = {"dense"}
        cases(dense_cases)
        sections = full - {"dense"}
        case_sections = sections - {"dumps"}
        args.dense_below = 32768  # run_case still adds dense rows below this N
    if case_sections:
        cases(first)
    if "dumps" in sections:
        for path in dumps:
            if time.time() - t_start > args.deadline_s:
                rows.append(dict(dump=os.path.basename(path), shape="-", seq_len=0, kind="real_dump",
                                 block=0, skipped="deadline", **NO_TIMES))
                continue
            t0 = time.time()
            run_guarded(path, lambda: run_dump(lib, path, args, timer, rows, dev))
            print(f"[bench] {path}: {time.time() - t0:.1f} s", file=sys.stderr)
    if case_sections:
        cases(rest)
    result["total_s"] = time.time() - t_start
    save()
    print_table(result)
    if result["errors"]:
        print("errors:\n  " + "\n  ".join(result["errors"]))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
