"""Merge evaluator runs into one results file, with paired comparisons between methods.

    python -m proxyattn.eval.merge --run study fid32.json fid32-outputs.jsonl.gz \
        --run study fid8.json --run ablations abl.json abl-outputs.jsonl.gz \
        --json fidelity.json --png fidelity.png --png-ablations fidelity-ablations.png \
        --ablation-cell ablations:niah_multikey@32768

Each --run is NAME JSON [OUTPUTS]: an evaluator JSON (--json) and, optionally, its per-prompt
outputs (--outputs, .gz read as gzip). The merged file holds every cell with a `run` field, the
runs' metadata, and a `comparisons` list: for every matched-density cell (method
`SPEC:density=match:REF`), the exact McNemar test of REF against SPEC on the same prompts, and
with `--compare RUN=REF` every other non-dense method of RUN against REF (an ablation's knobs
against its base).

A run given without outputs keeps its cells as the evaluator wrote them (their lost/won against
dense and p-values are the evaluator's own, computed on the prompts when it ran) and adds no
comparisons; its entry in meta.runs says `"outputs": false`.

Several --run with the same NAME are one run continued over several evaluator invocations (one
stopped by a time limit, another finishing its cells): their cells and outputs are pooled, and the
comparisons use the pool. A cell two invocations both hold must be the same result (every field but
the timings), and so must its per-prompt outcomes: the evaluator is deterministic for a given model,
prompts and software, so a difference means the invocations did not measure the same thing.
"""
import argparse
import gzip
import json
import os
import sys

from . import report
from . import stats

SHARED_META = ("model", "tokenizer", "tokenizer_kind", "haystack", "haystack_sha256", "dtype",
               "batch_tokens", "base_config", "torch", "transformers", "proxyattn", "gpu")
RUN_META = ("preset", "tasks", "lengths", "n", "seed_offset", "methods", "date", "argv",
            "complete", "seconds", "method_seconds")
SHIPPED_HAYSTACK = "proxyattn/eval/data/haystack.txt.gz"


def _local_path(p):
    """Paths of the machine that ran the evaluator, made portable: the shipped haystack becomes its
    repository path, any other absolute path its file name."""
    if not isinstance(p, str) or not os.path.isabs(p):
        return p
    if p.endswith(SHIPPED_HAYSTACK):
        return "python/" + SHIPPED_HAYSTACK
    return os.path.basename(p)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def load_outputs(path):
    """{(task, length, method): {seed: correct}} from an evaluator's --outputs JSONL file."""
    opener = gzip.open if path.endswith(".gz") else open
    out = {}
    with opener(path, "rt") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            out.setdefault((r["task"], int(r["length"]), r["method"]), {})[r["seed"]] = \
                bool(r["correct"])
    return out


def matched_reference(method):
    """REF of a matched-density spec `SPEC:density=match:REF` or `SPEC,density=match:REF`; None
    otherwise."""
    key = "density=match:"
    i = method.find(key)
    return method[i + len(key):] if i >= 0 else None


def paired_comparison(ref_outcomes, other_outcomes):
    """Exact McNemar test of two methods on the prompts both ran ({seed: correct} each). ref_only:
    prompts the reference got right and the other wrong; other_only: the reverse."""
    seeds = sorted(set(ref_outcomes) & set(other_outcomes))
    a = [ref_outcomes[s] for s in seeds]
    b = [other_outcomes[s] for s in seeds]
    ref_only, other_only = stats.paired(a, b)
    n = len(seeds)
    return {"n": n, "ref_accuracy": sum(a) / n if n else None,
            "other_accuracy": sum(b) / n if n else None,
            "ref_only": ref_only, "other_only": other_only,
            "p_value": stats.mcnemar_exact(ref_only, other_only)}


def check_against_dense(cells, outputs):
    """Recomputes every cell's lost/won against dense from the outputs; raises on a mismatch."""
    for c in cells:
        key = (c["task"], c["length"], c["method"])
        dkey = (c["task"], c["length"], "dense")
        if key not in outputs or dkey not in outputs:
            continue
        r = paired_comparison(outputs[dkey], outputs[key])
        if (r["n"], r["ref_only"], r["other_only"]) != (c["n"], c.get("lost"), c.get("won")):
            raise ValueError(f"outputs disagree with the cell {key}: n/lost/won "
                             f"{r['n']}/{r['ref_only']}/{r['other_only']} against "
                             f"{c['n']}/{c.get('lost')}/{c.get('won')}")


def comparisons(run, cells, outputs, reference=None):
    """The paired comparisons of one run: each matched-density cell against its reference, and,
    given `reference` (a method spec), every other non-dense cell against that method."""
    by_key = {(c["task"], c["length"], c["method"]): c for c in cells}
    out = []
    for c in cells:
        ref = matched_reference(c["method"])
        if ref is None and reference is not None and c["method"] not in ("dense", reference):
            ref = reference
        if ref is None:
            continue
        rkey = (c["task"], c["length"], ref)
        okey = (c["task"], c["length"], c["method"])
        if rkey not in outputs or okey not in outputs or rkey not in by_key:
            continue
        r = paired_comparison(outputs[rkey], outputs[okey])
        out.append({"run": run, "task": c["task"], "length": c["length"], "reference": ref,
                    "method": c["method"], "family": c.get("family"),
                    "reference_density": by_key[rkey].get("density"),
                    "density": c.get("density"), **r})
    return out


def _holds(cells):
    """{task: {length: [methods]}} of a run's cells."""
    h = {}
    for c in cells:
        h.setdefault(c["task"], {}).setdefault(str(c["length"]), []).append(c["method"])
    return h


TIMING_FIELDS = ("seconds", "calibration_seconds")


def _result(cell):
    """A cell's result: every field but the timings, as canonical JSON (NaN-safe equality)."""
    return json.dumps({k: v for k, v in cell.items() if k not in TIMING_FIELDS}, sort_keys=True)


def _pool(name, pool, cells, outputs):
    """Adds one invocation's cells and outputs to its run's pool; returns the keys it added."""
    added = []
    for c in cells:
        key = (c["task"], c["length"], c["method"])
        held = pool["cells"].get(key)
        if held is None:
            pool["cells"][key] = c
            added.append(key)
        elif _result(held) != _result(c):
            raise ValueError(f"run {name!r}: two invocations disagree on the cell {key}")
    for key, per_seed in (outputs or {}).items():
        held = pool["outputs"].setdefault(key, {})
        for seed, ok in per_seed.items():
            if held.get(seed, ok) != ok:
                raise ValueError(f"run {name!r}: two invocations disagree on prompt {seed} of "
                                 f"the cell {key}")
            held[seed] = ok
    return added


def merge(runs, note=None, references=None):
    """runs: [(name, evaluator JSON dict, outputs dict or None)]; references: {run name: method
    spec} whose every other method is compared with that one. Returns the merged dict."""
    if not runs:
        raise ValueError("merge needs at least one run")
    run_meta, shared, pools, first_holder = [], {}, {}, {}
    for name, data, outputs in runs:
        meta = data.get("meta", {})
        for k in SHARED_META:
            v = _local_path(meta.get(k)) if k in ("haystack", "tokenizer") else meta.get(k)
            if k in shared and shared[k] != v:
                raise ValueError(f"runs disagree on meta {k!r}: {shared[k]!r} against {v!r}")
            shared[k] = v
        rm = {"run": name}
        for k in RUN_META:
            if k in meta:
                rm[k] = [_local_path(a) for a in meta[k]] if k == "argv" else meta[k]
        rm["cells"] = len(data["cells"])
        rm["holds"] = _holds(data["cells"])
        rm["outputs"] = outputs is not None
        rm["comparisons"] = 0
        if outputs is None:
            rm["outputs_note"] = ("per-prompt outputs not kept: lost/won and p_value are the "
                                  "evaluator's own; no paired comparisons")
        else:
            check_against_dense(data["cells"], outputs)
        run_meta.append(rm)
        pool = pools.setdefault(name, {"cells": {}, "outputs": {}})
        for key in _pool(name, pool, data["cells"], outputs):
            first_holder[(name, key)] = rm
    cells, comps = [], []
    for name, pool in pools.items():
        cells.extend({"run": name, **c} for c in pool["cells"].values())
        for comp in comparisons(name, list(pool["cells"].values()), pool["outputs"],
                                (references or {}).get(name)):
            first_holder[(name, (comp["task"], comp["length"], comp["method"]))]["comparisons"] += 1
            comps.append(comp)
    meta = dict(shared)
    meta["runs"] = run_meta
    if note:
        meta["note"] = note
    return {"meta": meta, "cells": cells, "comparisons": comps}


def _ablation_label(cell, base):
    method = cell["method"]
    if method == base:
        k = cell.get("knobs") or {}
        varied = ("stride", "num_proxy_heads", "block_size", "min_budget_tokens")
        return "base: " + ",\n".join(f"{n}={k[n]}" for n in varied if n in k) if k else "base"
    if method.startswith(base + ","):
        return method[len(base) + 1:]
    return method


def write_ablations_png(path, cells, task, length, base="proxyattn:gamma=0.9", title=None,
                        panels=None):
    """Ablations: accuracy (95% interval, dense line and band), density and recall (mean and
    minimum head) per configuration, one row each. One row of panels per (task, length) of
    `panels` ([(cells, task, length)]; by default the one (task, length) of `cells`), the rows in
    the order of the first panel's configurations. Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if panels is None:
        panels = [(cells, task, length)]
    groups = []
    for pcells, ptask, plength in panels:
        here = [c for c in pcells if c["task"] == ptask and c["length"] == plength]
        dense = next((c for c in here if c["method"] == "dense"), None)
        rows = [c for c in here if c["method"] != "dense"]
        if not rows:
            raise ValueError(f"no ablation cells for {ptask} at {plength}")
        groups.append((ptask, plength, dense, rows))
    methods = list(dict.fromkeys(c["method"] for _, _, _, rows in groups for c in rows))
    labels = {}
    for _, _, _, rows in groups:
        for c in rows:
            labels.setdefault(c["method"], _ablation_label(c, base))
    y_of = {m: len(methods) - 1 - i for i, m in enumerate(methods)}
    rh_all = [c.get("recall_min_head") or 0.0 for _, _, _, rows in groups for c in rows]
    fig, axes = plt.subplots(len(groups), 3, sharey=True, squeeze=False,
                             figsize=(12, (0.42 * len(methods) + 1.3) * len(groups) + 0.4))
    for g, (ptask, plength, dense, rows) in enumerate(groups):
        ax = axes[g][0]
        y = [y_of[c["method"]] for c in rows]
        n = rows[0].get("n")
        if dense is not None:
            ax.axvline(dense["accuracy"], color="black", lw=1, ls="--", label="dense")
            ax.axvspan(dense["ci_low"], dense["ci_high"], color="black", alpha=0.08, lw=0)
        ax.errorbar([c["accuracy"] for c in rows], y,
                    xerr=[[c["accuracy"] - c["ci_low"] for c in rows],
                          [c["ci_high"] - c["accuracy"] for c in rows]],
                    fmt="o", ms=5, capsize=2, elinewidth=0.8, label="ProxyAttn")
        here = {c["method"] for c in rows}
        for m, v in y_of.items():
            if m not in here:
                ax.text(0.5, v, "not run", transform=ax.get_yaxis_transform(), ha="center",
                        va="center", fontsize=7, color="gray")
        ax.set_xlabel("accuracy (95% interval)")
        ax.set_yticks(list(y_of.values()))
        ax.set_yticklabels([labels[m] for m in y_of], fontsize=8)
        ax.set_title(f"{ptask}, {plength} tokens" + (f", {n} prompts" if n else ""),
                     fontsize=9, loc="left", pad=16)
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
        axes[g][1].barh(y, [c["density"] for c in rows], color="tab:orange")
        for v, c in zip(y, rows):
            axes[g][1].text(c["density"] + 0.01, v, f"{c['density']:.3f}", va="center",
                            fontsize=7)
        axes[g][1].set_xlabel("mean density")
        axes[g][1].set_xlim(0, 1)
        rm = [c.get("recall_mean") or 0.0 for c in rows]
        rh = [c.get("recall_min_head") or 0.0 for c in rows]
        axes[g][2].barh([v + 0.2 for v in y], rm, height=0.4, color="tab:green", label="mean")
        axes[g][2].barh([v - 0.2 for v in y], rh, height=0.4, color="tab:red",
                        label="minimum head")
        axes[g][2].set_xlabel("attention recall (first prompt)")
        axes[g][2].set_xlim(min(rh_all + [0.7]) - 0.05, 1.0)
        axes[g][2].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2,
                          frameon=False)
        for a in axes[g]:
            a.grid(alpha=0.3, axis="x")
    fig.suptitle(title or f"ablations of {base}, one knob changed at a time", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_ablation_cell(spec):
    """`[RUN:]TASK@LENGTH` -> (run, task, length); RUN defaults to 'ablations'."""
    run, _, cell = spec.rpartition(":")
    task, _, length = cell.partition("@")
    if not task or not length.isdigit():
        raise ValueError(f"--ablation-cell {spec!r}: expected [RUN:]TASK@LENGTH")
    return run or "ablations", task, int(length)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m proxyattn.eval.merge",
                                 description="Merge evaluator runs into one results file.")
    ap.add_argument("--run", action="append", nargs="+", required=True,
                    metavar=("NAME", "JSON"), help="NAME JSON [OUTPUTS]; repeat per run")
    ap.add_argument("--json", required=True, help="the merged file")
    ap.add_argument("--note", default=None, help="a note stored in meta")
    ap.add_argument("--png", default=None,
                    help="accuracy against density of the runs named 'study'")
    ap.add_argument("--compare", action="append", default=[], metavar="RUN=SPEC",
                    help="also compare every other method of run RUN with method SPEC on the "
                         "same prompts (e.g. ablations=proxyattn:gamma=0.9: each knob against "
                         "the base); repeat per run")
    ap.add_argument("--png-ablations", default=None,
                    help="ablations, one row of panels per --ablation-cell")
    ap.add_argument("--ablation-cell", action="append", default=None,
                    help="[RUN:]TASK@LENGTH (RUN defaults to 'ablations'); repeat for more "
                         "rows; default ablations:niah_multikey@32768")
    args = ap.parse_args(argv)
    for r in args.run:
        if len(r) not in (2, 3):
            ap.error("--run takes NAME JSON [OUTPUTS]")
    args.references = {}
    for spec in args.compare:
        run, eq, method = spec.partition("=")
        if not eq or not run or not method:
            ap.error(f"--compare {spec!r}: expected RUN=SPEC")
        args.references[run] = method
    return args


def main(argv=None):
    args = parse_args(argv)
    runs = [(r[0], load_json(r[1]), load_outputs(r[2]) if len(r) == 3 else None)
            for r in args.run]
    merged = merge(runs, note=args.note, references=args.references)
    with open(args.json, "w") as f:
        json.dump(report._clean(merged), f, indent=1)  # NaN becomes null
        f.write("\n")
    if args.png:
        study = [c for c in merged["cells"] if c["run"] == "study"]
        report.write_png(args.png, study, title=f"{merged['meta'].get('model')}: accuracy "
                         "against density (same prompts for every method)")
    if args.png_ablations:
        panels = []
        for spec in args.ablation_cell or ["ablations:niah_multikey@32768"]:
            run, task, length = parse_ablation_cell(spec)
            panels.append(([c for c in merged["cells"] if c["run"] == run], task, length))
        write_ablations_png(args.png_ablations, None, None, None, panels=panels)
    for c in merged["comparisons"]:
        print(f"{c['task']:16s} {c['length']:6d} {c['reference']} vs {c['method']}: "
              f"{c['ref_accuracy']:.3f} vs {c['other_accuracy']:.3f}, "
              f"{c['ref_only']}/{c['other_only']}, p {c['p_value']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
