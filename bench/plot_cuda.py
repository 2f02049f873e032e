#!/usr/bin/env python3
"""Speed curves from a CUDA results file (bench/gpu/run.sh's JSON, as kept in bench/results/).

Usage: /usr/bin/python3 bench/plot_cuda.py bench/results/cuda-2026-11-28-h200.json [out.png]
Needs matplotlib (Debian: python3-matplotlib). Writes <input>.png by default: for each shape, the
full pipeline's speedup over SDPA flash and SDPA cuDNN against sequence length, one line per
forced density, and our dense mode against SDPA flash and cuDNN. Rows come from the file's top-level `rows`
and, for shapes or lengths they lack, from `supplementary_runs` and then `earlier_runs` (their
commits are named in each panel's title).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def collect(results):
    """{(shape, kind, density, seq_len): (row, commit)}, newest run first."""
    runs = [(results.get("commit", "?"), results.get("rows", []))]
    for older in ("supplementary_runs", "earlier_runs"):
        runs += [(r.get("commit", "?"), r.get("rows", [])) for r in results.get(older, [])]
    table = {}
    for commit, rows in runs:
        for row in rows:
            if "proxyattn_ms" not in row or row.get("proxyattn_ms") is None:
                continue  # skipped or failed cases
            key = (row["shape"], row["kind"], row.get("density"), row["seq_len"])
            table.setdefault(key, (row, commit))
    return table


def main():
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else path.rsplit(".", 1)[0] + ".png"
    results = json.load(open(path))
    table = collect(results)
    shapes = sorted({k[0] for k in table if k[1] == "pipeline_forced"})
    fig, axes = plt.subplots(1, len(shapes), figsize=(6.5 * len(shapes), 4.8), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        densities = sorted({k[2] for k in table if k[0] == shape and k[1] == "pipeline_forced"},
                           reverse=True)
        for density, color in zip(densities, ["tab:blue", "tab:orange", "tab:green", "tab:red"]):
            points = sorted((k[3], v) for k, v in table.items()
                            if k[0] == shape and k[1] == "pipeline_forced" and k[2] == density)
            xs = [n // 1024 for n, _ in points]
            ax.plot(xs, [v[0]["speedup_vs_flash"] for _, v in points], "o-", color=color,
                    label=f"pipeline d={density} vs SDPA flash")
            ax.plot(xs, [v[0]["speedup_vs_cudnn"] for _, v in points], "s--", color=color,
                    label=f"pipeline d={density} vs SDPA cuDNN")
        dense = sorted((k[3], v) for k, v in table.items() if k[0] == shape and k[1] == "dense")
        ax.plot([n // 1024 for n, _ in dense],
                [v[0]["sdpa_flash_ms"] / v[0]["proxyattn_ms"] for _, v in dense], "k^:",
                label="our dense vs SDPA flash")
        cudnn = [(n, v) for n, v in dense if v[0].get("sdpa_cudnn_ms")]
        ax.plot([n // 1024 for n, _ in cudnn],
                [v[0]["sdpa_cudnn_ms"] / v[0]["proxyattn_ms"] for _, v in cudnn], "kv--",
                label="our dense vs SDPA cuDNN")
        commits = sorted({v[1] for k, v in table.items() if k[0] == shape})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("sequence length (K tokens)")
        ax.set_ylabel("speedup (x)")
        ax.set_title(f"{results.get('card', '?')}, heads/kv/dim {shape}, {results.get('dtype', '')} "
                     f"(commits {', '.join(commits)})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
