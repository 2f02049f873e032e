"""proxyattn.eval.merge: merged cells and metadata, paired comparisons from per-prompt outputs."""
import gzip
import json

import pytest

from proxyattn.eval import merge
from proxyattn.eval import stats as S

REF = "proxyattn:gamma=0.9"
MATCHED = "topk:density=match:" + REF


def fake_run(length, n=40, complete=True):
    """An evaluator JSON and its outputs: dense right on i % 5 != 0, REF flips prompts 0-1,
    the matched baseline flips prompts 0-7."""
    outcomes = {}
    cells = []
    rows = []
    for method, flip, dens in (("dense", 0, 1.0), (REF, 2, 0.6), (MATCHED, 8, 0.6)):
        corr = [(i % 5 != 0) != (i < flip) for i in range(n)]
        outcomes[method] = corr
        cell = {"task": "niah_multivalue", "length": length, "method": method,
                "family": method.split(":")[0], "density": dens, "recall_mean": 0.9,
                "recall_min_head": 0.8, "knobs": {}}
        cell.update(S.cell_stats(corr, [float(c) for c in corr], outcomes["dense"]))
        cells.append(cell)
        for i, c in enumerate(corr):
            rows.append({"task": "niah_multivalue", "length": length, "method": method,
                         "seed": 1000 + i, "correct": c})
    meta = {"model": "m", "tokenizer": "/far/away/tok.model", "haystack_sha256": "abc",
            "haystack": "/x/site/proxyattn/eval/data/haystack.txt.gz", "torch": "t",
            "transformers": "tr", "gpu": "g", "date": "d", "complete": complete,
            "argv": ["--json", "/far/away/out/f.json", "--n", str(n)]}
    return {"meta": meta, "cells": cells}, rows


def test_matched_reference():
    assert merge.matched_reference(MATCHED) == REF
    assert merge.matched_reference("proxyattn:last_block_selection=proxy,density=match:" + REF) \
        == REF
    assert merge.matched_reference(REF) is None


def test_paired_comparison_counts_and_p():
    ref = {1: True, 2: True, 3: False, 4: True, 5: False}
    other = {1: False, 2: True, 3: True, 4: False, 6: True}
    r = merge.paired_comparison(ref, other)
    assert r["n"] == 4 and r["ref_only"] == 2 and r["other_only"] == 1
    assert r["p_value"] == S.mcnemar_exact(2, 1)


def test_merge_and_main(tmp_path):
    args = []
    for name, length in (("study", 32768), ("ablations", 16384)):
        data, rows = fake_run(length, complete=(name == "study"))
        jp = tmp_path / f"{name}.json"
        jp.write_text(json.dumps(data))
        op = tmp_path / f"{name}.jsonl.gz"
        with gzip.open(op, "wt") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n")
        args += ["--run", name, str(jp), str(op)]
    out = tmp_path / "merged.json"
    assert merge.main(args + ["--json", str(out), "--note", "cut short"]) == 0
    m = json.loads(out.read_text())
    assert len(m["cells"]) == 6
    assert {c["run"] for c in m["cells"]} == {"study", "ablations"}
    assert all(isinstance(c["length"], int) for c in m["cells"])
    meta = m["meta"]
    assert meta["note"] == "cut short" and meta["model"] == "m"
    assert meta["haystack"] == "python/proxyattn/eval/data/haystack.txt.gz"
    assert meta["tokenizer"] == "tok.model"
    assert [r["run"] for r in meta["runs"]] == ["study", "ablations"]
    assert meta["runs"][0]["argv"][1] == "f.json"
    assert meta["runs"][1]["complete"] is False
    assert meta["runs"][0]["holds"] == {"niah_multivalue": {"32768": ["dense", REF, MATCHED]}}
    comps = m["comparisons"]
    assert len(comps) == 2
    c = comps[0]
    assert c["reference"] == REF and c["method"] == MATCHED and c["n"] == 40
    # prompts 2-7 flipped by the baseline only: 0, 5 were wrong in dense (flipped to right)
    assert (c["ref_only"], c["other_only"]) == (5, 1)
    assert c["p_value"] == S.mcnemar_exact(5, 1)
    assert all(r["outputs"] is True for r in meta["runs"])
    assert [r["comparisons"] for r in meta["runs"]] == [1, 1]


def test_run_without_outputs(tmp_path):
    """A run given without outputs keeps the evaluator's lost/won and p-values and adds no
    comparisons; meta says so. Outputs of another run are still checked and compared."""
    with_out, rows = fake_run(32768)
    bare, _ = fake_run(8192, n=30, complete=False)
    bare["cells"][1]["lost"] = 7  # not checked: nothing to check it against
    args = []
    for name, data, rws in (("study", with_out, rows), ("study", bare, None)):
        jp = tmp_path / f"{name}{data['cells'][0]['length']}.json"
        jp.write_text(json.dumps(data))
        args += ["--run", name, str(jp)]
        if rws is not None:
            op = tmp_path / "out.jsonl"
            op.write_text("\n".join(json.dumps(r) for r in rws) + "\n")
            args.append(str(op))
    out = tmp_path / "merged.json"
    png = tmp_path / "abl.png"
    try:
        import matplotlib  # noqa: F401
        args += ["--png-ablations", str(png), "--ablation-cell", "study:niah_multivalue@32768",
                 "--ablation-cell", "study:niah_multivalue@8192"]
    except ImportError:
        pass
    assert merge.main(args + ["--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert len(m["cells"]) == 6
    runs = m["meta"]["runs"]
    assert [r["outputs"] for r in runs] == [True, False]
    assert [r["comparisons"] for r in runs] == [1, 0]
    assert "outputs_note" in runs[1] and "outputs_note" not in runs[0]
    kept = [c for c in m["cells"] if c["length"] == 8192 and c["method"] == REF][0]
    assert (kept["lost"], kept["n"]) == (7, 30)
    assert [c["length"] for c in m["comparisons"]] == [32768]
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_ablation_cell():
    assert merge.parse_ablation_cell("niah_multikey@32768") == ("ablations", "niah_multikey", 32768)
    assert merge.parse_ablation_cell("ablations_multivalue:niah_multivalue@32768") == \
        ("ablations_multivalue", "niah_multivalue", 32768)
    with pytest.raises(ValueError):
        merge.parse_ablation_cell("niah_multikey")


def test_outputs_must_agree_with_cells():
    data, rows = fake_run(32768)
    outputs = {}
    for r in rows:
        outputs.setdefault((r["task"], r["length"], r["method"]), {})[r["seed"]] = r["correct"]
    data["cells"][1]["lost"] += 1
    with pytest.raises(ValueError, match="disagree"):
        merge.merge([("study", data, outputs)])


def test_runs_must_share_the_model():
    a, _ = fake_run(32768)
    b, _ = fake_run(16384)
    b["meta"]["model"] = "other"
    with pytest.raises(ValueError, match="model"):
        merge.merge([("study", a, None), ("study", b, None)])


def test_ablations_png(tmp_path):
    pytest.importorskip("matplotlib")
    data, _ = fake_run(32768)
    path = tmp_path / "abl.png"
    merge.write_ablations_png(str(path), data["cells"], "niah_multivalue", 32768, base=REF)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other, _ = fake_run(16384)
    merge.write_ablations_png(str(path), None, None, None, base=REF,
                              panels=[(data["cells"], "niah_multivalue", 32768),
                                      (other["cells"][:2], "niah_multivalue", 16384)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _write(tmp_path, stem, data, rows):
    jp = tmp_path / f"{stem}.json"
    jp.write_text(json.dumps(data))
    args = [str(jp)]
    if rows is not None:
        op = tmp_path / f"{stem}.jsonl"
        op.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        args.append(str(op))
    return args


def test_a_run_continued_over_invocations_is_pooled(tmp_path):
    """The first invocation stopped after the reference; the second reran dense and the reference
    (identical results, other timings) and added the matched baseline: the comparison pairs the
    pooled cells, each cell appears once, and the duplicates are checked."""
    data, rows = fake_run(32768)
    first = {"meta": data["meta"], "cells": data["cells"][:2]}
    first_rows = [r for r in rows if r["method"] != MATCHED]
    second = json.loads(json.dumps(data))
    for c in second["cells"]:
        c["seconds"] = 99.0
    out = tmp_path / "merged.json"
    args = ["--run", "study"] + _write(tmp_path, "a", first, first_rows)
    args += ["--run", "study"] + _write(tmp_path, "b", second, rows)
    assert merge.main(args + ["--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert [c["method"] for c in m["cells"]] == ["dense", REF, MATCHED]
    assert len(m["comparisons"]) == 1 and m["comparisons"][0]["n"] == 40
    assert [r["comparisons"] for r in m["meta"]["runs"]] == [0, 1]
    # a continuation of another run name is not pooled: no reference there, no comparison
    args2 = ["--run", "study"] + _write(tmp_path, "a", first, first_rows)
    args2 += ["--run", "other"] + _write(tmp_path, "c", {"meta": data["meta"],
                                                         "cells": data["cells"][2:]}, rows)
    assert merge.main(args2 + ["--json", str(out)]) == 0
    assert json.loads(out.read_text())["comparisons"] == []


def test_continued_invocations_must_agree(tmp_path):
    data, rows = fake_run(32768)
    other = json.loads(json.dumps(data))
    other["cells"][1]["density"] = 0.61
    with pytest.raises(ValueError, match="disagree on the cell"):
        merge.merge([("study", data, None), ("study", other, None)])
    good = {}
    for r in rows:
        good.setdefault((r["task"], r["length"], r["method"]), {})[r["seed"]] = r["correct"]
    flipped = {k: dict(v) for k, v in good.items()}
    flipped[("niah_multivalue", 32768, REF)][1005] ^= True
    bare = {"meta": data["meta"], "cells": []}  # outputs only: nothing to check them against
    with pytest.raises(ValueError, match="disagree on prompt 1005"):
        merge.merge([("study", data, good), ("study", bare, flipped)])


def test_compare_every_method_with_a_reference(tmp_path):
    """--compare RUN=SPEC pairs every other non-dense method of RUN with SPEC (each knob of an
    ablation against its base); other runs are untouched."""
    data, rows = fake_run(32768)
    out = tmp_path / "merged.json"
    args = ["--run", "ablations"] + _write(tmp_path, "a", data, rows)
    args += ["--run", "study"] + _write(tmp_path, "b", data, rows)
    assert merge.main(args + ["--compare", "ablations=" + REF, "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    # ablations: MATCHED against REF, once (its matched reference is REF too); study: the matched
    assert [(c["run"], c["reference"], c["method"]) for c in m["comparisons"]] == [
        ("ablations", REF, MATCHED), ("study", REF, MATCHED)]
    data2 = json.loads(json.dumps(data))
    data2["cells"][2]["method"] = "proxyattn:gamma=0.9,stride=1"
    rows2 = [dict(r, method="proxyattn:gamma=0.9,stride=1") if r["method"] == MATCHED else r
             for r in rows]
    args = ["--run", "ablations"] + _write(tmp_path, "c", data2, rows2)
    assert merge.main(args + ["--compare", "ablations=" + REF, "--json", str(out)]) == 0
    c = json.loads(out.read_text())["comparisons"]
    assert [(x["reference"], x["method"], x["ref_only"], x["other_only"]) for x in c] == [
        (REF, "proxyattn:gamma=0.9,stride=1", 5, 1)]
    with pytest.raises(SystemExit):
        merge.parse_args(["--run", "a", "b.json", "--json", "x", "--compare", "ablations"])
