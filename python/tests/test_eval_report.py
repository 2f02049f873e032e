"""proxyattn.eval.report: the table, the JSON layout and the PNG (when matplotlib is there)."""
import json

import pytest

from proxyattn.eval import report
from proxyattn.eval import stats as S


def fake_cells():
    cells = []
    for task in ("niah_single", "niah_multikey"):
        for length in (8192, 32768):
            dense = [i % 10 != 0 for i in range(50)]
            for spec, fam, dens, flip in (("dense", "dense", 1.0, 0),
                                          ("proxyattn:gamma=0.9", "proxyattn", 0.5, 1),
                                          ("proxyattn:gamma=0.8", "proxyattn", 0.4, 3),
                                          ("topk:density=match:proxyattn:gamma=0.9", "topk", 0.5,
                                           6)):
                corr = [c if i >= flip else not c for i, c in enumerate(dense)]
                cell = {"task": task, "length": length, "method": spec, "family": fam}
                cell.update(S.cell_stats(corr, [float(c) for c in corr], dense))
                cell.update(density=dens, recall_mean=None if spec == "dense" else 0.97,
                            recall_min_head=None if spec == "dense" else 0.9, seconds=1.5,
                            knobs={"gamma": 0.9})
                cells.append(cell)
    return cells


def test_table_and_json(tmp_path):
    cells = fake_cells()
    text = report.table(cells)
    assert "niah_multikey" in text and "topk:density=match:proxyattn:gamma=0.9" in text
    assert len(text.splitlines()) == 2 + len(cells)
    cells[0]["partial"] = float("nan")
    path = tmp_path / "out.json"
    report.write_json(str(path), cells, {"model": "m", "date": "d"})
    data = json.loads(path.read_text())
    assert data["meta"]["model"] == "m"
    assert len(data["cells"]) == len(cells)
    for c in data["cells"]:
        for key in report.CELL_KEYS:
            assert key in c, key
        assert isinstance(c["length"], int)
    assert data["cells"][0]["partial"] is None


def test_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "acc.png"
    report.write_png(str(path), fake_cells(), title="fake")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
