#!/usr/bin/env python3
"""bench/gpu/bench_cuda.py: times proxyattn's CUDA path against PyTorch SDPA (flash and cuDNN
backends) in one process on one card, and writes JSON.

Run (on the GPU machine, after bench/gpu/run.sh has built build/libproxyattn_capi.so):
  python3 bench/gpu/bench_cuda.py --lib build/libproxyattn_capi.so --out results.json
Variants per (shape, N): dense (SDPA flash, SDPA cuDNN, ours); kernel only on SPEC.md random
masks at densities 1, 0.3, 0.1, 0.05 (ours, same mask for every density row); the full pipeline
(plan + attend) at forced densities 0.3, 0.1, 0.05, and its plan alone. Median of CUDA-event
timings after a warm-up; inputs are far larger than L2. Verifies our dense output against SDPA
once before timing. A deadline skips what does not fit (recorded as skipped).
"""
import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

I64, F64, VP, INT = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int


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


def time_ms(fn, budget_s=1.5, min_reps=3, max_reps=20):
    """Median of CUDA-event timings after one warm-up run."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    first = start.elapsed_time(end)
    reps = max(min_reps, min(max_reps, int(budget_s * 1000.0 / max(first, 1e-3))))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq-lens", default="16384,32768,65536,131072")
    ap.add_argument("--shapes", default="32/8/128,28/4/128")
    ap.add_argument("--deadline-s", type=float, default=200.0)
    ap.add_argument("--block", type=int, default=128)
    args = ap.parse_args()
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
        "dtype": "bf16", "block": args.block, "method": "median of CUDA events after warm-up",
        "checks": {}, "rows": [],
    }
    rows = result["rows"]
    B = args.block
    for shape in args.shapes.split(","):
        H, HKV, D = (int(x) for x in shape.split("/"))
        for N in (int(x) for x in args.seq_lens.split(",")):
            if time.time() - t_start > args.deadline_s:
                rows.append({"shape": shape, "seq_len": N, "skipped": "deadline"})
                continue
            q = torch.randn(N, H, D, device=dev, dtype=torch.bfloat16)
            k = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
            v = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
            o = torch.empty_like(q)
            k_full = k.repeat_interleave(H // HKV, dim=1).contiguous()
            v_full = v.repeat_interleave(H // HKV, dim=1).contiguous()
            P = lambda t: ctypes.c_void_p(t.data_ptr())
            base = {"shape": shape, "seq_len": N, "num_qo_heads": H, "num_kv_heads": HKV,
                    "head_dim": D}
            flash_ms = time_ms(sdpa(q, k_full, v_full, SDPBackend.FLASH_ATTENTION))
            try:
                cudnn_ms = time_ms(sdpa(q, k_full, v_full, SDPBackend.CUDNN_ATTENTION))
            except RuntimeError as e:
                cudnn_ms = None
                result["checks"]["cudnn_error"] = str(e)[:200]
            dense_fn = lambda: check(lib, lib.pa_dense(P(q), P(k), P(v), P(o), N, H, HKV, D, 0))
            if "dense_rel_error_vs_sdpa" not in result["checks"]:
                dense_fn()
                ref = sdpa(q, k_full, v_full, SDPBackend.FLASH_ATTENTION)().transpose(1, 2)[0]
                torch.cuda.synchronize()
                err = ((o.float() - ref.float()).norm() / ref.float().norm()).item()
                result["checks"]["dense_rel_error_vs_sdpa"] = err
                result["checks"]["dense_check_case"] = f"{shape} N={N}"
            dense_ms = time_ms(dense_fn)
            causal_flop = 4.0 * H * D * N * N / 2.0
            rows.append(dict(base, kind="dense", density=1.0, sdpa_flash_ms=flash_ms,
                             sdpa_cudnn_ms=cudnn_ms, proxyattn_ms=dense_ms,
                             proxyattn_tflops=causal_flop / dense_ms / 1e9,
                             sdpa_flash_tflops=causal_flop / flash_ms / 1e9))
            # Kernel only on random masks (g = num_kv_heads).
            for dens in (1.0, 0.3, 0.1, 0.05):
                handle = lib.pa_random_plan_create(N, H, HKV, D, B, dens, 1)
                if not handle:
                    raise RuntimeError(lib.pa_last_error().decode())
                real = lib.pa_random_plan_density(handle)
                ms = time_ms(lambda: check(lib, lib.pa_random_plan_attend(
                    handle, P(q), P(k), P(v), P(o), N, H, HKV, D, 0)))
                lib.pa_random_plan_free(handle)
                rows.append(dict(base, kind="kernel_random_mask", density=dens,
                                 realized_density=real, sdpa_flash_ms=flash_ms,
                                 sdpa_cudnn_ms=cudnn_ms, proxyattn_ms=ms, dense_ms=dense_ms,
                                 kernel_over_d_dense=ms / (real * dense_ms)))
            # Full pipeline at forced densities, and the plan alone (g = 1).
            ws_size = lib.pa_workspace_size(N, H, HKV, D, B, 1, 0.95, 2048, 0.05, 1)
            ws = torch.empty(ws_size, dtype=torch.uint8, device=dev)
            for dens in (0.3, 0.1, 0.05):
                pre = lambda: check(lib, lib.pa_prefill(P(q), P(k), P(v), P(o), N, H, HKV, D, 0, B,
                                                        1, 0.95, 2048, dens, 1, P(ws), ws_size))
                ms = time_ms(pre)
                real = lib.pa_last_density()
                plan_ms = time_ms(lambda: check(lib, lib.pa_plan(P(q), P(k), N, H, HKV, D, 0, B, 1,
                                                                 0.95, 2048, dens, 1, P(ws), ws_size)))
                rows.append(dict(base, kind="pipeline_forced", density=dens, realized_density=real,
                                 sdpa_flash_ms=flash_ms, sdpa_cudnn_ms=cudnn_ms, proxyattn_ms=ms,
                                 plan_ms=plan_ms, dense_ms=dense_ms,
                                 speedup_vs_flash=flash_ms / ms,
                                 speedup_vs_cudnn=(cudnn_ms / ms) if cudnn_ms else None,
                                 plan_over_cudnn=(plan_ms / cudnn_ms) if cudnn_ms else None))
            # The method itself: gamma 0.95, random inputs (the budgets are data-driven).
            pre = lambda: check(lib, lib.pa_prefill(P(q), P(k), P(v), P(o), N, H, HKV, D, 0, B, 1,
                                                    0.95, 2048, 0.0, 1, P(ws), ws_size))
            ms = time_ms(pre)
            rows.append(dict(base, kind="pipeline_gamma0.95_random_inputs", density=None,
                             realized_density=lib.pa_last_density(), sdpa_flash_ms=flash_ms,
                             sdpa_cudnn_ms=cudnn_ms, proxyattn_ms=ms, dense_ms=dense_ms))
            del q, k, v, o, k_full, v_full, ws
            torch.cuda.empty_cache()
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    # Table last.
    print(f"\n{result['card']}  driver {driver}  torch {torch.__version__}  checks {result['checks']}")
    hdr = f"{'shape':>10} {'N':>7} {'kind':>26} {'dens':>5} {'real':>6} {'flash':>8} {'cudnn':>8} {'ours':>8} {'plan':>7} {'x/fl':>6} {'x/cu':>6}"
    print(hdr)
    for r in rows:
        if "skipped" in r:
            print(f"{r['shape']:>10} {r['seq_len']:>7} skipped ({r['skipped']})")
            continue
        f = lambda x, w=8, p=2: (f"{x:{w}.{p}f}" if isinstance(x, (int, float)) else f"{'-':>{w}}")
        ours = r["proxyattn_ms"]
        print(f"{r['shape']:>10} {r['seq_len']:>7} {r['kind']:>26} {f(r['density'], 5, 2)} "
              f"{f(r.get('realized_density', 1.0), 6, 3)} {f(r['sdpa_flash_ms'])} {f(r['sdpa_cudnn_ms'])} "
              f"{f(ours)} {f(r.get('plan_ms'), 7)} {f(r['sdpa_flash_ms'] / ours, 6)} "
              f"{f((r['sdpa_cudnn_ms'] / ours) if r['sdpa_cudnn_ms'] else None, 6)}")


if __name__ == "__main__":
    sys.exit(main())
