"""python -m proxyattn.eval: needle accuracy of ProxyAttn, dense attention and matched-density
baselines on any transformers causal LM (python/README.md, "Accuracy evaluation").

    python -m proxyattn.eval --model meta-llama/Llama-3.1-8B --lengths 8192,16384,32768 --n 100 \
        --preset study --json fidelity.json --png fidelity.png

Every method of a cell (task, length) sees the same prompts: the i-th prompt has seed
tasks.eval_seed(task, length, i + seed_offset).
"""
import argparse
import datetime
import hashlib
import json
import os
import sys
import time

from . import DEFAULT_HAYSTACK
from . import methods as M
from . import report
from . import stats
from . import tasks as T

DEFAULT_TASKS = "niah_single,niah_multikey,niah_multivalue"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m proxyattn.eval",
        description="Needle accuracy of ProxyAttn against dense attention and matched-density "
                    "baselines, through transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="method specs: dense | proxyattn[:FIELD=V,...] | sink_local:window=W|density=D | "
               "topk:k=K|density=D; density=match:SPEC (last) matches SPEC's measured density. "
               "Presets: " + ", ".join(M.PRESETS) + ".")
    ap.add_argument("--model", required=True, help="a transformers causal LM: folder or hub name")
    ap.add_argument("--tokenizer", default=None,
                    help="a sentencepiece .model file, or a folder/hub name for AutoTokenizer "
                         "(default: the model's: its tokenizer.model when it has no "
                         "tokenizer_config.json, else AutoTokenizer)")
    ap.add_argument("--haystack", default=DEFAULT_HAYSTACK,
                    help="text, one document per line (.gz read as gzip) [the shipped held-out "
                         "haystack]")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma list of {', '.join(T.TASKS)}")
    ap.add_argument("--lengths", default="8192,16384,32768",
                    help="target lengths in tokens (prompt + max_new_tokens)")
    ap.add_argument("--n", type=int, default=100, help="prompts per cell")
    ap.add_argument("--seed-offset", type=int, default=0,
                    help="first prompt index of every cell (prompt i has eval seed i + offset)")
    ap.add_argument("--methods", nargs="*", default=None, metavar="SPEC",
                    help="method specs (dense always runs: the paired baseline)")
    ap.add_argument("--preset", choices=M.PRESETS, default=None,
                    help="study: dense, proxyattn gamma 0.8/0.9/0.95/0.99, sink_local, topk and "
                         "last_block_selection=proxy at gamma 0.9's density; study_wide: also at "
                         "gamma 0.8's; ablations: gamma 0.9 with one knob changed at a time")
    ap.add_argument("--defaults", default=None, metavar="FIELD=V,...",
                    help="Config fields every proxyattn/topk method (and sink_local's block_size) "
                         "starts from [the model config's `proxyattn` entry, else the library "
                         "defaults]")
    ap.add_argument("--batch-tokens", type=int, default=131072,
                    help="padded tokens per prefill batch (1048576 = 32 prompts of 32K)")
    ap.add_argument("--calib-prompts", type=int, default=32,
                    help="prompts of a cell used to choose gamma for density targets (bisection "
                         "on the first 8, then secant steps on all)")
    ap.add_argument("--recall-prompts", type=int, default=2,
                    help="prompts per cell and method whose attention recall is measured (0: off)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None, metavar="OUT.json")
    ap.add_argument("--png", default=None, metavar="OUT.png")
    ap.add_argument("--outputs", default=None, metavar="OUT.jsonl",
                    help="per-prompt outputs, one JSON line per prompt and method")
    ap.add_argument("--max-docs", type=int, default=None, help="read only this many haystack lines")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def method_list(args, num_kv_heads, base):
    specs = []
    if args.preset:
        specs += M.preset_specs(args.preset, num_kv_heads, base)
    specs += list(args.methods or [])
    if not specs:
        specs = ["dense", "proxyattn:gamma=0.9"]
    seen, out = set(), []
    for s in specs:
        m = M.parse_spec(s)
        if m.spec not in seen:
            seen.add(m.spec)
            out.append(m)
    return M.run_order(out)


def load_tokenizer(args):
    path = args.tokenizer
    if path is not None and path.endswith(".model") and os.path.isfile(path):
        return T.SpmTokenizer(path)
    if path is None and os.path.isdir(args.model):
        spm = os.path.join(args.model, "tokenizer.model")
        if os.path.exists(spm) and not os.path.exists(os.path.join(args.model,
                                                                   "tokenizer_config.json")):
            return T.SpmTokenizer(spm)
    return T.HFTokenizer.from_pretrained(path or args.model)


def base_fields(args):
    if args.defaults is not None:
        return M.parse_assignments(args.defaults)
    cfg = os.path.join(args.model, "config.json")
    if os.path.isfile(cfg):
        with open(cfg) as f:
            entry = json.load(f).get("proxyattn")
        if isinstance(entry, dict):
            from ..config import FIELDS
            return {k: v for k, v in entry.items() if k in FIELDS}
    return {}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Progress:
    """tqdm on a terminal when importable, else a line on stderr every few seconds (30 s when
    stderr is not a terminal, e.g. a log file)."""

    def __init__(self, total, disable=False):
        self.total, self.done, self.bar, self.disable = total, 0, None, disable
        self.t0 = self.last = time.time()
        self.every = 5 if sys.stderr.isatty() else 30
        if not disable and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="prompt", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, k, what=""):
        self.done += k
        if self.disable:
            return
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)
            self.bar.update(k)
        elif time.time() - self.last > self.every or self.done == self.total:
            self.last = time.time()
            el = self.last - self.t0
            eta = el / self.done * (self.total - self.done) if self.done else 0
            print(f"[{self.done}/{self.total}] {what} {el:.0f}s elapsed, ~{eta:.0f}s left",
                  file=sys.stderr, flush=True)

    def write(self, line):
        """A line that doesn't break the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def calibrate_gamma(runner, config, rows, target, small=8, iters=14, tol=0.003):
    """gamma whose mean density over rows is nearest the target -> (gamma, density on rows).

    Density grows with gamma. Bisection on the first `small` rows, then up to three secant steps
    on all rows (the slope from the bisection's last bracket), keeping the best gamma seen."""
    def dens(g, sub):
        runner.configure("proxyattn", {"config": dict(config, gamma=g)})
        d = runner.densities(sub)
        return sum(d) / len(d)

    few = rows[:small]
    top = dens(1.0, few)
    if top <= target:
        return 1.0, (top if len(few) == len(rows) else dens(1.0, rows))
    lo, hi = (0.0, None), (1.0, top)  # (gamma, density) below / above the target
    best = (abs(top - target), 1.0, top)
    for _ in range(iters):
        mid = round(0.5 * (lo[0] + hi[0]), 6)
        d = dens(mid, few)
        best = min(best, (abs(d - target), mid, d))
        if best[0] < tol:
            break
        if d < target:
            lo = (mid, d)
        else:
            hi = (mid, d)
    if len(few) == len(rows):
        return best[1], best[2]
    slope = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo[1] is not None and hi[0] > lo[0] else None
    g = best[1]
    d = dens(g, rows)
    best = (abs(d - target), g, d)
    prev = None
    for _ in range(3):
        if best[0] < tol:
            break
        if prev is not None and prev[0] != g and prev[1] != d:
            slope = (d - prev[1]) / (g - prev[0])
        if not slope or slope <= 0:
            break
        prev = (g, d)
        g = round(min(1.0, max(1e-4, g + (target - d) / slope)), 6)
        if g == prev[0]:
            break
        d = dens(g, rows)
        best = min(best, (abs(d - target), g, d))
    return best[1], best[2]


def resolve(method, target, lengths, base, runner, calib_rows):
    """The method's knobs on this cell: {"config": Config fields} for proxyattn/topk (plus "k"),
    {"window", "sink", "block_size"} for sink_local; target = the density to match or None."""
    from ..config import Config
    defaults = Config().to_dict()
    if method.kind == "dense":
        return {}
    if method.kind == "sink_local":
        b = int(method.params.get("block_size", base.get("block_size", defaults["block_size"])))
        sink = int(method.params.get("sink", 1))
        window = method.params.get("window")
        if target is not None:
            window, _ = M.solve_window(lengths, b, target, sink)
        return {"window": float(window), "sink": sink, "block_size": b}
    config = dict(base)
    if method.kind == "topk":
        for key in M.TOPK_FIXED:
            config.pop(key, None)
        config.update({k: v for k, v in method.params.items() if k != "k"})
        full = dict(defaults, **config)
        b = int(full["block_size"])
        k = method.params.get("k")
        if target is not None:
            k, _ = M.solve_topk(lengths, b, target, full["keep_sink"], full["keep_diagonal"],
                                full["dense_below_tokens"])
        # gamma 1 asks for every block; the clamp to [k, k] blocks sets each budget
        config.update(gamma=1.0, min_budget_tokens=int(k) * b, max_budget_tokens=int(k) * b)
        return {"config": config, "k": int(k)}
    config.update(method.params)
    if target is not None:
        gamma, _ = calibrate_gamma(runner, config, calib_rows, target)
        config["gamma"] = gamma
    return {"config": config}


def knob_summary(kind, knobs):
    if kind in ("proxyattn", "topk"):
        from ..config import resolve_config
        out = resolve_config(knobs["config"]).to_dict()
        if "k" in knobs:
            out["k"] = knobs["k"]
        return out
    return dict(knobs)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in T.TASKS:
            raise SystemExit(f"unknown task {t!r}, expected some of {', '.join(T.TASKS)}")
    lengths = [int(x) for x in args.lengths.split(",") if x]
    if not os.path.exists(args.haystack):
        raise SystemExit(f"haystack {args.haystack} not found (give --haystack FILE: text, one "
                         "document per line)")
    try:
        base = base_fields(args)
        for spec in (args.methods or []):
            M.parse_spec(spec)  # fail on a bad spec before loading anything
        method_list(args, None, base)
    except ValueError as e:
        raise SystemExit(f"proxyattn.eval: {e}") from None
    tok = load_tokenizer(args)
    print(f"tokenizer: {type(tok).__name__} ({getattr(tok, 'path', None)}), bos={tok.bos_id}",
          file=sys.stderr)
    t0 = time.time()
    hay = T.Haystack.from_file(args.haystack, tok, max_docs=args.max_docs)
    words = T.load_words()
    print(f"haystack: {len(hay.sents)} sentences, {int(hay.starts[-1])} tokens "
          f"({time.time() - t0:.1f}s)", file=sys.stderr)

    from . import runner as R  # torch and transformers from here on
    run = R.Runner(args.model, tok, device=args.device, dtype=args.dtype,
                   batch_tokens=args.batch_tokens)
    try:
        methods = method_list(args, run.num_kv_heads, base)
    except ValueError as e:
        raise SystemExit(f"proxyattn.eval: {e}") from None
    print("methods: " + "; ".join(m.spec for m in methods), file=sys.stderr)
    print(f"base config: {base or 'library defaults'}", file=sys.stderr)
    meta = {"model": args.model, "tokenizer": getattr(tok, "path", None),
            "tokenizer_kind": type(tok).__name__, "haystack": args.haystack,
            "haystack_sha256": sha256(args.haystack), "tasks": tasks, "lengths": lengths,
            "n": args.n, "seed_offset": args.seed_offset, "dtype": args.dtype,
            "batch_tokens": args.batch_tokens, "base_config": base,
            "methods": [m.spec for m in methods], "preset": args.preset,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else list(argv)}
    meta.update(R.environment(args.device))

    total = len(tasks) * len(lengths) * args.n * len(methods)
    prog = Progress(total, disable=args.no_progress)
    fout = open(args.outputs, "w") if args.outputs else None
    cells, timing = [], {}
    try:
        for length in lengths:
            for task in tasks:
                prompts = []
                for i in range(args.n):
                    seed = T.eval_seed(task, length, i + args.seed_offset)
                    inst, ids = T.fit(task, seed, length, hay, tok, words)
                    prompts.append((inst, ids))
                rows = [ids for _, ids in prompts]
                plens = [len(r) for r in rows]
                max_new = T.MAX_NEW_TOKENS[task]
                measured, dense_correct = {}, None
                for m in methods:
                    tm = time.time()
                    target = m.density if m.match is None else measured.get(m.match)
                    knobs = resolve(m, target, plens, base, run, rows[:args.calib_prompts])
                    t_calib = time.time() - tm
                    run.configure(m.kind, knobs)
                    outs, dens = [None] * len(rows), [None] * len(rows)
                    for idx in run.batches(plens):
                        gen, d = run.generate([rows[i] for i in idx], max_new)
                        for j, i in enumerate(idx):
                            outs[i], dens[i] = gen[j], d[j]
                        prog.update(len(idx), f"{task} {length} {m.spec}")
                    correct, partial = [], []
                    for (inst, ids), g, d in zip(prompts, outs, dens):
                        text = tok.decode(g)
                        ok, frac = T.score(inst["answers"], text)
                        correct.append(ok)
                        partial.append(frac)
                        if fout:
                            fout.write(json.dumps({
                                "task": task, "length": length, "method": m.spec,
                                "seed": inst["seed"], "prompt_tokens": len(ids),
                                "answers": inst["answers"], "output": text, "correct": ok,
                                "partial": frac, "density": d}) + "\n")
                    if m.kind == "dense":
                        dense_correct = correct
                    t_run = time.time() - tm - t_calib
                    rec_mean, rec_min = (None, None)
                    if args.recall_prompts > 0 and m.kind != "dense":
                        rec_mean, rec_min = run.recall(rows[:args.recall_prompts])
                    density = sum(dens) / len(dens)
                    measured[m.spec] = density
                    cell = {"task": task, "length": length, "method": m.spec,
                            "family": m.family, "kind": m.kind}
                    cell.update(stats.cell_stats(correct, partial, dense_correct))
                    cell.update(density=density, density_target=target,
                                density_matched=(None if target is None
                                                 else abs(density - target) <= M.DENSITY_TOL),
                                recall_mean=rec_mean, recall_min_head=rec_min,
                                recall_prompts=min(args.recall_prompts, len(rows))
                                if m.kind != "dense" else 0,
                                knobs=knob_summary(m.kind, knobs),
                                prompt_tokens_mean=sum(plens) / len(plens),
                                seconds=round(time.time() - tm, 2),
                                calibration_seconds=round(t_calib, 2))
                    cells.append(cell)
                    prog.write(report.table([cell]).splitlines()[-1])
                    if args.json:  # complete cells survive an interrupted run
                        report.write_json(args.json, cells, dict(meta, complete=False))
                    tt = timing.setdefault(m.spec, [0.0, 0.0, 0])
                    tt[0] += t_run
                    tt[1] += time.time() - tm - t_run
                    tt[2] += len(rows)
                    if fout:
                        fout.flush()
    finally:
        prog.close()
        if fout:
            fout.close()
    print(report.table(cells))
    print("\ntime per method (decode = prefill + greedy decoding; other = knob search + recall):")
    for spec, (t_run, t_other, n) in timing.items():
        print(f"  {spec:60s} decode {t_run:8.1f} s ({n / max(t_run, 1e-9):7.1f} prompts/s)  "
              f"other {t_other:6.1f} s")
    meta["complete"] = True
    meta["seconds"] = round(time.time() - t_start, 1)
    meta["method_seconds"] = {s: {"decode": round(v[0], 2), "other": round(v[1], 2),
                                  "prompts": v[2]} for s, v in timing.items()}
    if args.json:
        report.write_json(args.json, cells, meta)
    if args.png:
        try:
            report.write_png(args.png, cells, title=os.path.basename(args.model.rstrip("/")))
        except ImportError:
            print("matplotlib is not installed: no PNG", file=sys.stderr)
    print(f"total {meta['seconds']} s", file=sys.stderr)
    return 0
