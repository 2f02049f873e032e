"""proxyattn.eval.stats against known values, and method specs, presets and the matched-density
knob arithmetic of proxyattn.eval.methods."""
import math

import numpy as np
import pytest

from proxyattn.eval import methods as M
from proxyattn.eval import stats as S


def test_wilson_known_values():
    lo, hi = S.wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.27753, abs=1e-5)
    lo, hi = S.wilson(10, 10)
    assert lo == pytest.approx(0.72247, abs=1e-5) and hi == pytest.approx(1)
    lo, hi = S.wilson(8, 10)
    assert lo == pytest.approx(0.49016, abs=1e-5) and hi == pytest.approx(0.94332, abs=1e-5)
    lo, hi = S.wilson(50, 100)
    assert lo == pytest.approx(0.40383, abs=1e-5) and hi == pytest.approx(0.59617, abs=1e-5)
    assert S.wilson(0, 0) == (0.0, 0.0)


def test_mcnemar_exact_known_values():
    assert S.mcnemar_exact(0, 0) == 1.0
    assert S.mcnemar_exact(0, 5) == 0.0625  # 2 / 2^5
    assert S.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert S.mcnemar_exact(9, 1) == S.mcnemar_exact(1, 9)
    assert S.mcnemar_exact(3, 3) == 1.0
    assert S.mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert 0 < S.mcnemar_exact(0, 400) < 1e-100  # no overflow


def test_cell_stats():
    dense = [True] * 8 + [False] * 2
    meth = [True] * 6 + [False] * 2 + [True, False]
    c = S.cell_stats(meth, [1.0 if x else 0.5 for x in meth], dense)
    assert c["n"] == 10 and c["accuracy"] == 0.7 and c["dense_accuracy"] == 0.8
    assert (c["lost"], c["won"]) == (2, 1)
    assert c["p_value"] == S.mcnemar_exact(2, 1) == 1.0
    assert c["partial"] == pytest.approx(0.85)
    assert (c["ci_low"], c["ci_high"]) == S.wilson(7, 10)


def test_parse_specs():
    m = M.parse_spec("proxyattn:gamma=0.9,stride=4,num_proxy_heads=1,block_size=64,"
                     "min_budget_tokens=256")
    assert m.kind == "proxyattn" and m.params == {"gamma": 0.9, "stride": 4, "num_proxy_heads": 1,
                                                  "block_size": 64, "min_budget_tokens": 256}
    assert m.family == "proxyattn:stride=4,num_proxy_heads=1,block_size=64,min_budget_tokens=256"
    m = M.parse_spec("sink_local:density=0.3")
    assert m.kind == "sink_local" and m.density == 0.3 and m.family == "sink_local"
    m = M.parse_spec("topk:density=match:proxyattn:gamma=0.9,stride=2")
    assert m.match == "proxyattn:gamma=0.9,stride=2" and m.density is None
    m = M.parse_spec("proxyattn:last_block_selection=proxy,density=0.3")
    assert m.params == {"last_block_selection": "proxy"} and m.density == 0.3
    assert m.family == "proxyattn:last_block_selection=proxy"
    assert M.parse_spec("proxyattn:max_budget_tokens=none").params == {"max_budget_tokens": None}
    for bad in ("sparse", "dense:gamma=1", "proxyattn:gamma=0.9,density=0.3", "topk:k=0",
                "topk:gamma=0.9,k=3", "sink_local:density=1.5", "sink_local:foo=1",
                "sink_local:sink=1", "topk", "proxyattn:gamma", "topk:density=match:dense",
                "proxyattn:nonsense=3"):
        with pytest.raises(ValueError):
            M.parse_spec(bad)


def test_run_order_puts_targets_first():
    ms = [M.parse_spec(s) for s in ("topk:density=match:proxyattn:gamma=0.8",
                                    "proxyattn:gamma=0.9")]
    order = [m.spec for m in M.run_order(ms)]
    assert order[0] == "dense"
    assert order.index("proxyattn:gamma=0.8") < order.index(
        "topk:density=match:proxyattn:gamma=0.8")
    assert len(order) == 4


def test_presets():
    study = M.preset_specs("study")
    assert study[0] == "dense" and len(study) == 8
    assert all(M.parse_spec(s) for s in study)
    wide = M.preset_specs("study_wide")
    assert len(wide) == 11 and set(study) <= set(wide)
    abl = M.preset_specs("ablations", num_kv_heads=8,
                         base={"block_size": 64, "min_budget_tokens": 256})
    for s in abl:
        M.parse_spec(s)
    assert "proxyattn:gamma=0.9,stride=4" not in abl  # equal to the base
    assert "proxyattn:gamma=0.9,stride=8" in abl and "proxyattn:gamma=0.9,block_size=128" in abl
    assert [s for s in abl if "num_proxy_heads" in s] == [
        f"proxyattn:gamma=0.9,num_proxy_heads={g}" for g in (2, 4, 8)]
    assert "proxyattn:gamma=0.9,min_budget_tokens=256" not in abl
    with pytest.raises(ValueError):
        M.preset_specs("nope")


def brute_sink_local(nb, window, sink):
    whole, frac = int(math.floor(window)), window - math.floor(window)
    total = 0
    for m in range(nb):
        w = max(1, whole + math.floor(frac * (m + 1)) - math.floor(frac * m))
        keys = {n for n in range(nb) if n <= m and (n >= m - w + 1 or n < sink)}
        total += len(keys)
    return total / (nb * (nb + 1) / 2)


def test_sink_local_density_and_mask():
    for nb, window, sink in ((1, 1, 1), (7, 2, 1), (64, 10.5, 1), (100, 3.25, 2), (50, 80, 1)):
        d = M.sink_local_density(nb * 64 - 5, 64, window, sink)
        assert d == pytest.approx(brute_sink_local(nb, window, sink))
        mask = M.sink_local_mask(nb, window, sink, heads=3)
        assert mask.shape == (3, nb, nb)
        assert not np.triu(mask[0], 1).any() and mask[:, np.arange(nb), np.arange(nb)].all()
        assert mask[:, :, 0].all() if sink else True
        assert mask[0].sum() / (nb * (nb + 1) / 2) == pytest.approx(d)
    assert M.sink_local_density(64 * 64, 64, 64, 1) == 1.0


def test_topk_density():
    # nb = 4 rows keep max(min(k, m+1), forced): k = 2 -> 1, 2, 2, 2 of 10 causal blocks
    assert M.topk_density(4 * 64, 64, 2, dense_below_tokens=0) == pytest.approx(7 / 10)
    assert M.topk_density(4 * 64, 64, 1, dense_below_tokens=0) == pytest.approx(7 / 10)
    assert M.topk_density(4 * 64, 64, 3, dense_below_tokens=0) == pytest.approx(9 / 10)
    assert M.topk_density(4 * 64, 64, 1, keep_sink=False, dense_below_tokens=0) == \
        pytest.approx(4 / 10)
    # the default dense_below_tokens = max(2b, k b): sequences that short run dense
    assert M.topk_density(300, 64, 5) == 1.0
    assert M.topk_density(128, 64, 2) == 1.0 and M.topk_density(129, 64, 2) < 1


@pytest.mark.parametrize("target", [0.2, 0.3, 0.5, 0.7])
def test_matched_knobs_within_tolerance(target):
    rng = np.random.default_rng(1)
    for length in (8192, 16384, 32768):
        lens = [int(x) for x in rng.integers(length - 80, length - 16, size=50)]
        w, d = M.solve_window(lens, 64, target)
        assert abs(d - target) <= M.DENSITY_TOL, (length, w, d)
        assert d == pytest.approx(np.mean([M.sink_local_density(n, 64, w) for n in lens]))
        k, d = M.solve_topk(lens, 64, target)
        assert abs(d - target) <= M.DENSITY_TOL, (length, k, d)
        for kk in (k - 1, k + 1):  # the nearest integer k
            if kk >= 1:
                dk = np.mean([M.topk_density(n, 64, kk) for n in lens])
                assert abs(dk - target) >= abs(d - target) - 1e-12


class FakeRunner:
    """densities() of a made-up monotone step function of gamma, shifted per prompt."""

    def __init__(self):
        self.gamma, self.calls = None, 0

    def configure(self, kind, knobs):
        assert kind == "proxyattn"
        self.gamma = knobs["config"]["gamma"]

    def densities(self, rows):
        self.calls += 1
        return [min(1.0, math.floor((0.15 + r + 0.8 * self.gamma ** 4) * 400) / 400) for r in rows]


@pytest.mark.parametrize("target", [0.3, 0.5, 0.72, 0.9])
def test_calibrate_gamma(target):
    from proxyattn.eval import cli
    rows = [0.1 * ((7 * i) % 11) / 10 - 0.05 + (0.08 if i >= 8 else 0) for i in range(32)]
    run = FakeRunner()
    gamma, dens = cli.calibrate_gamma(run, {"block_size": 64}, rows, target)
    run.configure("proxyattn", {"config": {"gamma": gamma}})
    assert dens == pytest.approx(np.mean(run.densities(rows)))
    assert abs(dens - target) <= 0.005, (gamma, dens)  # the first 8 prompts alone are biased
    assert run.calls <= 2 + 14 + 4 + 1
    low = FakeRunner()
    assert cli.calibrate_gamma(low, {}, rows, 1.5)[0] == 1.0  # unreachable: gamma 1
