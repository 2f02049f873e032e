"""proxyattn.hf under tensor parallelism, the parts that need no torch: per-rank settings from the
model's head counts (shard_settings), the degree implied by an attention call's local heads
(tp_degree), and the density statistics put together over ranks (place_heads, summarize_density)."""
import numpy as np
import pytest

import proxyattn as pa
from proxyattn import hf


def test_shipped_model_two_ranks():
    # pa-tiny-8k: 4 query heads, 2 KV heads; global g = 2 -> one proxy per rank.
    for rank in (0, 1):
        shard = hf.shard_settings(4, 2, 2, 2, rank)
        assert (shard.num_qo_heads, shard.num_kv_heads, shard.num_proxy_heads) == (2, 1, 1)
        assert shard.qo_heads == (2 * rank, 2 * rank + 2)
        assert shard.kv_heads == (rank, rank + 1) and shard.proxy_heads == (rank, rank + 1)


@pytest.mark.parametrize("heads,kv,g,tp", [(32, 8, 8, 2), (32, 8, 4, 4), (32, 8, 8, 8),
                                           (28, 4, 4, 2), (64, 8, 2, 2), (8, 8, 8, 1)])
def test_ranks_tile_the_global_heads_and_groups(heads, kv, g, tp):
    shards = [hf.shard_settings(heads, kv, g, tp, r) for r in range(tp)]
    for name, total in (("qo_heads", heads), ("kv_heads", kv), ("proxy_heads", g)):
        ranges = [getattr(s, name) for s in shards]
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for s in shards:
        assert s.num_proxy_heads == g // tp and s.num_kv_heads % s.num_proxy_heads == 0
        # Every proxy group of this rank holds only this rank's KV heads (docs/SPEC.md stage 1).
        per = kv // g
        for j in range(*s.proxy_heads):
            assert s.kv_heads[0] <= j * per and (j + 1) * per <= s.kv_heads[1]


def test_proxy_group_crossing_ranks_is_an_error():
    with pytest.raises(pa.Error, match=r"num_proxy_heads = 1 is not a multiple of the "
                                       r"tensor-parallel degree 2.*cross ranks 0-1.*= 2"):
        hf.shard_settings(4, 2, 1, 2)
    with pytest.raises(pa.Error, match=r"proxy group 1 \(KV heads 2-3\) would cross ranks 0-1"):
        hf.shard_settings(12, 12, 6, 4)
    with pytest.raises(pa.Error, match=r"= 2 or 4 or 8"):
        hf.shard_settings(32, 8, 1, 2)  # the paper's g = 1 for Llama-3.1-8B, at TP 2


def test_kv_heads_not_splitting_is_an_error():
    with pytest.raises(pa.Error, match="KV heads don't split evenly.*2 KV heads over 4"):
        hf.shard_settings(4, 2, 2, 4)
    with pytest.raises(pa.Error, match="query heads don't split evenly"):
        hf.shard_settings(6, 2, 2, 4)


@pytest.mark.parametrize("args,match", [
    ((4, 2, 2, 0), "world_size = 0"),
    ((4, 2, 0, 2), "num_proxy_heads = 0"),
    ((4, 2, 2, 2, 2), "rank = 2"),
    ((4, 2, 2, 2, -1), "rank = -1"),
    ((4, 3, 1, 1), "not a multiple of num_kv_heads"),
    ((4, 2, 4, 1), "num_proxy_heads = 4 does not divide"),
])
def test_bad_arguments(args, match):
    with pytest.raises(pa.Error, match=match):
        hf.shard_settings(*args)


def test_tp_degree_from_local_heads():
    assert hf.tp_degree(4, 2, 4, 2) == 1
    assert hf.tp_degree(4, 2, 2, 1) == 2
    assert hf.tp_degree(32, 8, 8, 2) == 4
    with pytest.raises(pa.Error, match="KV heads don't split evenly"):
        hf.tp_degree(4, 2, 2, 2)  # KV heads replicated while query heads are split
    with pytest.raises(pa.Error, match="KV heads don't split evenly"):
        hf.tp_degree(8, 2, 2, 1)  # 4 ranks cannot hold 2 KV heads whole
    with pytest.raises(pa.Error, match="3 of the model's 8 query heads"):
        hf.tp_degree(8, 2, 3, 1)


def test_density_over_ranks_equals_the_one_rank_table():
    rng = np.random.default_rng(0)
    full = rng.uniform(0.05, 1.0, size=(3, 8))  # [batch, global heads]
    blocks = np.array([10.0, 36.0, 136.0])
    tp = 4
    summed = sum(hf.place_heads(full[:, r * 2:(r + 1) * 2], r, tp) for r in range(tp))
    np.testing.assert_array_equal(summed, full)
    want = float((full * blocks[:, None]).sum() / (blocks.sum() * 8))
    assert hf.weighted_density(summed, blocks) == pytest.approx(want, rel=1e-12)


def test_summarize_density_per_layer_and_head():
    calls = [{"layer": 0, "tp": 2, "density": np.array([[1.0, 0.5]]),
              "causal_blocks": np.array([3.0])},
             {"layer": 1, "tp": 2, "density": np.array([[0.25, 0.25]]),
              "causal_blocks": np.array([3.0])},
             {"layer": 0, "tp": 2, "density": np.array([[0.0, 0.5]]),
              "causal_blocks": np.array([1.0])}]
    s = hf.summarize_density(calls)
    assert s["calls"] == 3
    assert s["layers"][1] == pytest.approx(0.25)
    assert s["heads"][0] == pytest.approx([0.75, 0.5])  # (1*3 + 0*1) / 4, (0.5*3 + 0.5*1) / 4
    assert s["layers"][0] == pytest.approx(0.625)
    assert s["density_weighted"] == pytest.approx((3 + 1.5 + 0 + 0.5 + 0.75 + 0.75) / 14)


def test_record_without_tensor_parallelism_needs_no_communication():
    rec = hf.DensityRecord()
    rec.calls.append({"layer": 3, "tp": 1, "density": np.array([[0.5, 1.0]]),
                      "causal_blocks": np.array([6.0])})
    assert rec.summary()["layers"] == {3: 0.75}
    assert hf.DensityRecord().summary()["calls"] == 0


class FakeModelConfig:
    num_attention_heads = 4
    num_key_value_heads = 2


class FakeAttention:
    """What proxyattn.hf reads of an attention module: its model config and layer index."""

    def __init__(self, layer_idx=0):
        self.config = FakeModelConfig()
        self.layer_idx = layer_idx


def test_settings_resolved_from_local_heads(monkeypatch):
    monkeypatch.setattr(hf, "_distributed_world", lambda: 2)  # as if under torchrun, 2 ranks
    monkeypatch.setitem(hf._defaults, "tp-test", {"num_proxy_heads": 2, "gamma": 0.9})
    hf.clear_cache()
    dense, cfg, _ = hf._settings("tp-test", FakeAttention(), 2, 1)  # 2 of 4 heads, 1 of 2 KV
    assert not dense and cfg.num_proxy_heads == 1 and cfg.gamma == 0.9
    dense, cfg, _ = hf._settings("tp-test", FakeAttention(1), 4, 2)  # an unsharded call
    assert cfg.num_proxy_heads == 2
    hf.clear_cache()


def test_local_config_errors_and_single_process(monkeypatch):
    module, g2 = FakeAttention(), pa.Config(num_proxy_heads=2)
    monkeypatch.setattr(hf, "_distributed_world", lambda: 2)
    with pytest.raises(pa.Error, match="would cross ranks 0-1"):
        hf._local_config(module, pa.Config(), 2, 1)  # the default g = 1 at TP 2
    with pytest.raises(pa.Error, match="KV heads don't split evenly"):
        hf._local_config(module, g2, 2, 2)
    assert hf._local_config(module, g2, 4, 2) is g2
    monkeypatch.setattr(hf, "_distributed_world", lambda: 1)  # one process: never sharded
    assert hf._local_config(module, pa.Config(), 2, 1).num_proxy_heads == 1
