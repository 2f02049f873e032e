"""The evaluator's outputs: the printed table, the JSON file and the accuracy-density figure.

Files are written to a temporary file in the same folder and renamed over the target after a
successful close, so a reader never sees half a file and a failed write leaves the old one."""
import json
import math
import os
import tempfile

CELL_KEYS = ("task", "length", "method", "accuracy", "dense_accuracy", "p_value", "density", "n",
             "ci_low", "ci_high", "lost", "won", "recall_mean", "recall_min_head", "partial")


def _num(x, fmt):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, fmt)


def table(cells):
    """One line per cell: accuracy [95% interval], dense accuracy, lost/won against dense, McNemar
    p, mean density, recall mean/min-head, seconds."""
    width = max([len("method")] + [len(c["method"]) for c in cells])
    head = (f"{'task':16s} {'length':>6s} {'method':{width}s} {'n':>5s} {'acc':>6s} "
            f"{'95% CI':>15s} {'dense':>6s} {'lost/won':>9s} {'p':>7s} {'density':>7s} "
            f"{'recall':>13s} {'s':>6s}")
    lines = [head, "-" * len(head)]
    for c in cells:
        ci = f"[{_num(c.get('ci_low'), '.3f')}, {_num(c.get('ci_high'), '.3f')}]"
        lw = f"{c.get('lost', 0)}/{c.get('won', 0)}"
        rec = f"{_num(c.get('recall_mean'), '.3f')}/{_num(c.get('recall_min_head'), '.3f')}"
        lines.append(f"{c['task']:16s} {c['length']:6d} {c['method']:{width}s} {c['n']:5d} "
                     f"{_num(c['accuracy'], '.3f'):>6s} {ci:>15s} "
                     f"{_num(c.get('dense_accuracy'), '.3f'):>6s} {lw:>9s} "
                     f"{_num(c.get('p_value'), '.3g'):>7s} {_num(c.get('density'), '.3f'):>7s} "
                     f"{rec:>13s} {_num(c.get('seconds'), '.1f'):>6s}")
    return "\n".join(lines)


def _clean(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write, binary=False):
    """Calls write(f) on a temporary file next to path, then renames it to path (the mode a new
    file would get). On any failure, or an interrupt, the temporary file is removed and path is
    left as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) \
                as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path, cells, meta):
    """{"meta": {...}, "cells": [...]}; NaN becomes null. Written atomically."""
    data = _clean({"meta": meta, "cells": cells})

    def write(f):
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
    write_atomic(path, write)


def write_lines(path, lines):
    """Text lines (each without its newline), written atomically."""
    def write(f):
        for line in lines:
            f.write(line + "\n")
    write_atomic(path, write)


def write_png(path, cells, title=None):
    """Accuracy (95% interval bars) against density, one panel per (task, length), one series per
    method family (the spec without its density knob), dense as a horizontal line: a PNG (a PDF
    or SVG when path ends so), written atomically. Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(c["task"] for c in cells))
    lengths = sorted({c["length"] for c in cells})
    fams = list(dict.fromkeys(c.get("family", c["method"]) for c in cells
                              if c["method"] != "dense"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>pPhX*"
    fig, axes = plt.subplots(len(tasks), len(lengths), squeeze=False,
                             figsize=(4.2 * len(lengths) + 2.5, 3.3 * len(tasks)))
    for r, task in enumerate(tasks):
        for col, length in enumerate(lengths):
            ax = axes[r][col]
            here = [c for c in cells if c["task"] == task and c["length"] == length]
            dense = next((c for c in here if c["method"] == "dense"), None)
            if dense is not None:
                ax.axhline(dense["accuracy"], color="black", lw=1, ls="--", label="dense")
                ax.axhspan(dense["ci_low"], dense["ci_high"], color="black", alpha=0.08, lw=0)
            for i, fam in enumerate(fams):
                pts = sorted((c for c in here if c.get("family", c["method"]) == fam
                              and c["method"] != "dense" and c.get("density") is not None),
                             key=lambda c: c["density"])
                if not pts:
                    continue
                x = [c["density"] for c in pts]
                y = [c["accuracy"] for c in pts]
                err = [[c["accuracy"] - c["ci_low"] for c in pts],
                       [c["ci_high"] - c["accuracy"] for c in pts]]
                ax.errorbar(x, y, yerr=err, color=colors[i % len(colors)],
                            marker=markers[i % len(markers)], ms=5, lw=1 if len(pts) > 1 else 0,
                            elinewidth=0.8, capsize=2, label=fam)
            ax.set_title(f"{task}, {length} tokens", fontsize=9)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if r == len(tasks) - 1:
                ax.set_xlabel("density (computed / causal blocks)")
            if col == 0:
                ax.set_ylabel("accuracy")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 0.97 if title else 1))
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    try:
        write_atomic(path, lambda f: fig.savefig(f, dpi=120, format=ext if ext in ("pdf", "svg")
                                                 else "png"), binary=True)
    finally:
        plt.close(fig)
