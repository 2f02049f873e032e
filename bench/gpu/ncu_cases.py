#!/usr/bin/env python3
"""bench/gpu/ncu_cases.py: one call of each case whose target bench_cuda.py reports as missed, for a
hardware-counter profiler to attach to (bench/gpu/profile.sh runs it under Nsight Compute).

  python3 bench/gpu/ncu_cases.py --lib build-gpu/libproxyattn_capi.so --case dense64
Cases (bf16, causal, one sequence):
  dense64      dense attention, 32/8/64 at 32K: the head_dim 64 dense kernel
  dense128     dense attention, 32/8/128 at 32K: the same kernel family at head_dim 128, to compare
  kernel16k    the attention kernel on a docs/SPEC.md random mask of density 0.05, 32/8/128 at 16K
  plan16k      the plan alone (stages 1-6) at gamma 0.95, g = 1, 32/8/128 at 16K
Each case runs once after one warm-up call, so a profiler that skips the first launches of a kernel
sees the steady state; --reps repeats the timed call.
Not named profile.py: bench/gpu is first on the import path of its scripts, and a profile.py there
would shadow the standard library module that cProfile (and so torch._dynamo) imports.
"""
import argparse
import ctypes
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cuda import check, load_lib  # noqa: E402

CASES = {"dense64": (32, 8, 64, 32768), "dense128": (32, 8, 128, 32768),
         "kernel16k": (32, 8, 128, 16384), "plan16k": (32, 8, 128, 16384)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    lib = load_lib(args.lib)
    H, HKV, D, N = CASES[args.case]
    B = 128
    dev = torch.device("cuda")
    torch.manual_seed(0)
    q = torch.randn(N, H, D, device=dev, dtype=torch.bfloat16)
    k = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(N, HKV, D, device=dev, dtype=torch.bfloat16)
    o = torch.empty_like(q)
    P = lambda t: ctypes.c_void_p(t.data_ptr())
    if args.case.startswith("dense"):
        call = lambda: check(lib, lib.pa_dense(P(q), P(k), P(v), P(o), N, H, HKV, D, 0))
    elif args.case == "kernel16k":
        handle = lib.pa_random_plan_create(N, H, HKV, D, B, 0.05, 1)
        if not handle:
            raise RuntimeError(lib.pa_last_error().decode())
        call = lambda: check(lib, lib.pa_random_plan_attend(handle, P(q), P(k), P(v), P(o), N, H,
                                                             HKV, D, 0))
    else:
        size = lib.pa_workspace_size(N, H, HKV, D, B, 1, 0.95, 2048, 0.0, 1)
        if size < 0:
            raise RuntimeError(lib.pa_last_error().decode())
        ws = torch.empty(size, dtype=torch.uint8, device=dev)
        call = lambda: check(lib, lib.pa_plan(P(q), P(k), N, H, HKV, D, 0, B, 1, 0.95, 2048, 0.0,
                                              1, P(ws), size))
    call()  # warm-up: module load, attribute setup
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.reps):
        call()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / args.reps
    print(f"{args.case}: {H}/{HKV}/{D} N={N}: {ms:.3f} ms per call "
          f"(event-timed, {args.reps} reps)", flush=True)


if __name__ == "__main__":
    main()
