#!/usr/bin/env python3
"""The shipped model (models/pa-tiny-8k: 4 query heads, 2 KV heads, head_dim 64, 8 layers) under
transformers' tensor parallelism against one process. test_tp.py launches it; by hand:

    torchrun --standalone --nproc_per_node 2 python/tests/tp_check.py --device cpu   # gloo
    torchrun --standalone --nproc_per_node 2 python/tests/tp_check.py --device cuda  # NCCL
    ... tp_check.py --device cpu --num-proxy-heads 1 --expect-error   # g = 1 must raise at TP 2

Settings (register()): block_size 64, min_budget_tokens 256, gamma 0.9 and the global
num_proxy_heads g = 2 (one proxy per KV head; at TP 2 one per rank). The prompt,
demo/short_prompt.txt (about 1K tokens, a needle to retrieve), is longer than dense_below_tokens
(256 here), so every layer plans sparsely.

Rank 0 first runs the 1-rank references alone, before the process group exists: the model in
fp32 on the CPU (the reference) and in bf16 on its device (the naive same-precision run). Then
every rank loads the model with tensor parallelism over all ranks (tp_plan="auto", or
DistributedConfig(tp_size=N) where transformers replaced that keyword) and runs the same prompt.
Rank 0 checks:
- logits: rel(TP bf16, fp32 ref) <= 2 * rel(1-rank bf16, fp32 ref) + 1e-4, rel = ||a - ref|| /
  ||ref|| over all logits (docs/STYLE.md section 6: twice the naive same-precision error plus the
  bf16 noise);
- the greedy continuation (16 tokens) is the same text with TP and with one rank;
- every prefill attention call ran ProxyAttn (no SDPA fallback), saw TP = world size and used
  g / TP proxies per rank;
- the density over every head, reduced over the ranks, is within 0.02 of the 1-rank density
  (the plans may differ only where TP's different summation order flips a near-tie).
Writes --json (rank 0). Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import datetime
import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHIPPED = os.path.join(ROOT, "models", "pa-tiny-8k")
SETTINGS = dict(block_size=64, min_budget_tokens=256, gamma=0.9)
NEW_TOKENS = 16
NOISE = 1e-4  # bf16 noise of the tolerance rule
DENSITY_SLACK = 0.02


def local_rows(weight):
    local = weight.to_local() if hasattr(weight, "to_local") else weight
    return int(local.shape[0])


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def rel_error(x, ref):
    return float((x.double() - ref.double()).norm() / ref.double().norm())


def fallback_warnings(record):
    return sorted({str(w.message) for w in record if "proxyattn" in str(w.message)})


def run_model(model, ids, hf, tok):
    """(logits [S, V] fp32 on the CPU, density summary, greedy text, fallback warnings)."""
    import torch
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with torch.no_grad():
            logits = full(model(ids).logits)[0].float().cpu()
            with hf.record_density() as rec:
                model(ids)
            summary = rec.summary()  # all_reduce over the ranks under tensor parallelism
            out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 eos_token_id=tok.eos_id, pad_token_id=tok.eos_id)
    tp_seen = sorted({c["tp"] for c in rec.calls})
    text = tok.decode(full(out)[0, ids.shape[1]:].tolist())
    return logits, summary, text, fallback_warnings(record), tp_seen


def compact(summary):
    return {"density_weighted": round(summary["density_weighted"], 6), "calls": summary["calls"],
            "layers": {str(k): round(v, 6) for k, v in sorted(summary["layers"].items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--num-proxy-heads", type=int, default=2)
    ap.add_argument("--expect-error", action="store_true",
                    help="the settings must raise proxyattn.Error under TP (no references run)")
    ap.add_argument("--prompt-file", default=os.path.join(SHIPPED, "demo", "short_prompt.txt"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # transformers picks the mesh's device type itself

    import torch
    import torch.distributed as dist
    import transformers

    import proxyattn
    import proxyattn.hf as hf
    sys.path.insert(0, os.path.join(ROOT, "eval"))
    import tasks  # noqa: E402 (eval/tasks.py: the project's sentencepiece tokenizer)

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if args.device == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    settings = dict(SETTINGS, num_proxy_heads=args.num_proxy_heads)
    hf.register(**settings)
    tok = tasks.SpmTokenizer(os.path.join(SHIPPED, "tokenizer.model"))
    with open(args.prompt_file, encoding="utf-8") as f:
        ids_list = [tok.bos_id] + tok.encode(f.read())
    dense_below = proxyattn.Config(**settings).dense_below()
    result = dict(world=world, device=args.device, torch=torch.__version__,
                  transformers=transformers.__version__, proxyattn=proxyattn.__version__,
                  settings=settings, prompt_tokens=len(ids_list), dense_below_tokens=dense_below)
    failures = []
    if len(ids_list) <= dense_below:
        failures.append(f"prompt of {len(ids_list)} tokens is not longer than dense_below_tokens")

    def load(dtype, where, **kwargs):
        model = transformers.AutoModelForCausalLM.from_pretrained(
            SHIPPED, dtype=dtype, attn_implementation="proxyattn", **kwargs)
        return (model if kwargs else model.to(where)).eval()

    # 1-rank references, rank 0 alone, before any process group exists.
    if rank == 0 and not args.expect_error:
        ids_cpu = torch.tensor([ids_list])
        ref_model = load(torch.float32, torch.device("cpu"))
        ref_logits, ref_summary, ref_text, ref_warn, _ = run_model(ref_model, ids_cpu, hf, tok)
        del ref_model
        hf.clear_cache()
        one_model = load(torch.bfloat16, device)
        one_logits, one_summary, one_text, one_warn, _ = run_model(one_model, ids_cpu.to(device),
                                                                   hf, tok)
        del one_model
        if args.device == "cuda":
            torch.cuda.empty_cache()

    dist.init_process_group("nccl" if args.device == "cuda" else "gloo",
                            timeout=datetime.timedelta(minutes=30))
    hf.clear_cache()  # settings are cached per module id; the reference models are gone
    model = load(torch.bfloat16, device, **hf.tp_pretrained_kwargs(world))
    q_rows = local_rows(model.model.layers[0].self_attn.q_proj.weight)
    heads, head_dim = model.config.num_attention_heads, model.config.head_dim
    result["q_proj_local_rows"] = q_rows
    if q_rows * world != heads * head_dim:
        failures.append(f"q_proj not sharded: {q_rows} local rows of {heads * head_dim}")
    ids = torch.tensor([ids_list], device=model.device)
    if args.expect_error:
        try:
            with torch.no_grad():
                model(ids)
            failures.append(f"num_proxy_heads = {args.num_proxy_heads} at TP {world} ran")
        except proxyattn.Error as e:
            result["error"] = str(e)
            if "cross ranks" not in str(e) and "split evenly" not in str(e):
                failures.append(f"unexpected message: {e}")
    else:
        tp_logits, tp_summary, tp_text, tp_warn, tp_seen = run_model(model, ids, hf, tok)
        proxies = sorted({r.config.num_proxy_heads for r in hf._cache.values() if not r.dense})
        result.update(tp_seen=tp_seen, proxies_per_rank=proxies)
        if tp_seen != [world]:
            failures.append(f"attention calls saw TP degrees {tp_seen}, expected [{world}]")
        if proxies != [args.num_proxy_heads // world]:
            failures.append(f"per-rank num_proxy_heads {proxies}, expected "
                            f"{args.num_proxy_heads // world}")
        if tp_warn:
            failures.append(f"rank {rank} fell back to SDPA: {tp_warn}")

    if rank == 0 and not args.expect_error:
        err_tp, err_one = rel_error(tp_logits, ref_logits), rel_error(one_logits, ref_logits)
        bound = 2 * err_one + NOISE
        d_tp, d_one = tp_summary["density_weighted"], one_summary["density_weighted"]
        result.update(
            rel_err_tp_vs_fp32=err_tp, rel_err_1rank_bf16_vs_fp32=err_one, bound=bound,
            rel_err_tp_vs_1rank=rel_error(tp_logits, one_logits),
            max_abs_tp_vs_1rank=float((tp_logits - one_logits).abs().max()),
            text_tp=tp_text, text_1rank=one_text, text_fp32=ref_text,
            density_tp=compact(tp_summary), density_1rank=compact(one_summary),
            density_fp32=compact(ref_summary), fallbacks_1rank=ref_warn + one_warn)
        if not torch.isfinite(tp_logits).all():
            failures.append("TP logits are not finite")
        if not err_tp <= bound:
            failures.append(f"logits: rel error {err_tp:.3e} against fp32 > 2 x {err_one:.3e} "
                            f"+ {NOISE:g}")
        if tp_text != one_text:
            failures.append(f"greedy text differs: TP {tp_text!r}, 1 rank {one_text!r}")
        if ref_warn or one_warn:
            failures.append(f"1-rank runs fell back to SDPA: {ref_warn + one_warn}")
        if not abs(d_tp - d_one) <= DENSITY_SLACK:
            failures.append(f"density over ranks {d_tp:.4f}, 1 rank {d_one:.4f}")
        if not d_tp < 0.95:
            failures.append(f"density {d_tp:.4f}: the plans are not sparse")
    failed = torch.tensor([len(failures)], dtype=torch.int64,
                          device=device if args.device == "cuda" else "cpu")
    dist.all_reduce(failed)
    result.update(failures=failures, failures_all_ranks=int(failed.item()),
                  passed=int(failed.item()) == 0)
    if rank == 0:
        print(json.dumps(result, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    elif failures:
        print(f"rank {rank}: {failures}", file=sys.stderr)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
