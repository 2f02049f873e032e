"""numpy (CPU) against a plain numpy float64 implementation of dense causal attention and of
block-sparse attention with the plan's own mask (docs/SPEC.md section 4's output conformance).

Run: pytest -q python/tests  (after pip install --no-build-isolation ./python)
"""
import dataclasses

import numpy as np
import pytest

import proxyattn as pa
from reference import attention, qkv, rel_error_per_head

# docs/STYLE.md / README tolerance: relative error per head against the double reference.
FP32_TOL = 2e-5
BF16_TOL = 1.6e-2
LSE_TOL = 1e-3

SPARSE = dict(block_size=64, min_budget_tokens=64, gamma=0.6)


def check_close(out, lse, ref_out, ref_lse, tol=FP32_TOL):
    assert np.all(np.isfinite(out))
    assert rel_error_per_head(out, ref_out) <= tol
    if lse is not None:
        finite = np.isfinite(ref_lse)
        assert np.array_equal(np.isfinite(lse), finite)
        assert np.max(np.abs(lse[finite] - ref_lse[finite]), initial=0.0) <= LSE_TOL


@pytest.mark.parametrize("tokens,heads,kv_heads,dim", [(1, 2, 1, 8), (37, 4, 4, 16),
                                                       (300, 4, 2, 64), (257, 8, 2, 32)])
def test_dense_matches_reference(tokens, heads, kv_heads, dim):
    q, k, v = qkv(1, tokens, heads, kv_heads, dim)
    out, lse = pa.dense(q, k, v, return_lse=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == q.shape
    assert lse.shape == (heads, tokens) and lse.dtype == np.float32
    check_close(out, lse, *attention(q, k, v))


def test_dense_varlen_scale_and_empty_sequence():
    q, k, v = qkv(2, 400, 6, 3, 16)
    cu = [0, 100, 100, 257, 400]
    out, lse = pa.dense(q, k, v, cu_seqlens=cu, scale=0.3, return_lse=True)
    check_close(out, lse, *attention(q, k, v, cu, scale=0.3))
    # cu_seqlens as numpy int64 is accepted too
    out2 = pa.dense(q, k, v, cu_seqlens=np.array(cu, dtype=np.int64), scale=0.3)
    assert np.array_equal(out, out2)


def test_dense_out_is_written_in_place_and_returned():
    q, k, v = qkv(3, 64, 2, 1, 8)
    out = np.full(q.shape, 7.0, dtype=np.float32)
    result = pa.dense(q, k, v, out=out)
    assert result is out
    check_close(out, None, *attention(q, k, v))


def test_strided_views_zero_copy():
    """Non-contiguous [tokens, heads, dim] views (free token and head strides) are read in place."""
    rng = np.random.default_rng(4)
    base_q = rng.standard_normal((4, 200, 24)).astype(np.float32)  # [heads, tokens, 24]
    q = base_q.transpose(1, 0, 2)[:, :, :16]  # strides (24, 4800, 1)
    kv = rng.standard_normal((200, 2, 2, 16)).astype(np.float32)
    k, v = kv[:, :, 0], kv[:, :, 1]
    out_base = np.zeros((200, 4, 32), dtype=np.float32)
    out = out_base[:, :, 8:24]
    result = pa.dense(q, k, v, out=out)
    assert result is out and np.shares_memory(out_base, result)
    assert np.all(out_base[:, :, :8] == 0) and np.all(out_base[:, :, 24:] == 0)
    check_close(out, None, *attention(q, k, v))


@pytest.mark.parametrize("last_block", ["exact", "proxy"])
@pytest.mark.parametrize("heads,kv_heads,groups", [(4, 2, 1), (8, 4, 2), (4, 4, 4)])
def test_prefill_matches_block_sparse_reference(last_block, heads, kv_heads, groups):
    q, k, v = qkv(5, 700, heads, kv_heads, 32, peaked=True)
    cu = [0, 90, 700]  # a dense-fallback sequence and a sparse one
    out, lse, plan = pa.prefill(q, k, v, cu, return_lse=True, return_plan=True,
                                last_block_selection=last_block, num_proxy_heads=groups, **SPARSE)
    masks = plan.to_dense()
    assert [m.shape for m in masks] == [(heads, 2, 2), (heads, 10, 10)]
    assert plan.is_dense == [True, False]
    assert masks[0][:, np.tril_indices(2)[0], np.tril_indices(2)[1]].all()
    assert plan.density_weighted < 1.0  # the long sequence is sparse
    check_close(out, lse, *attention(q, k, v, cu, block_masks=masks, block_size=64))


def test_plan_then_attend_equals_prefill():
    q, k, v = qkv(6, 500, 4, 2, 32, peaked=True)
    out = pa.prefill(q, k, v, **SPARSE)
    plan = pa.plan(q, k, **SPARSE)
    assert np.array_equal(pa.attend(q, k, v, plan), out)
    ws = pa.allocate_workspace(q, k, **SPARSE)
    assert ws.ctypes.data % 256 == 0 and ws.nbytes == pa.workspace_size(q, k, **SPARSE)
    plan2 = pa.plan(q, k, None, pa.Config(**SPARSE), workspace=ws)
    assert plan2.workspace is ws
    assert np.array_equal(pa.attend(q, k, v, plan2), out)


def test_forced_density_one_is_dense_bit_for_bit():
    """At block 128 dense() tiles the same way, so the sums are the same sums."""
    q, k, v = qkv(7, 600, 4, 1, 32)
    dense, dense_lse = pa.dense(q, k, v, return_lse=True)
    out, lse, plan = pa.prefill(q, k, v, block_size=128, min_budget_tokens=128,
                                forced_density=1.0, return_lse=True, return_plan=True)
    assert np.array_equal(out, dense) and np.array_equal(lse, dense_lse)
    assert plan.density_weighted == 1.0
    # block 64 tiles differently: equal within the tolerance
    check_close(pa.prefill(q, k, v, forced_density=1.0, **SPARSE), None, *attention(q, k, v))


def test_plan_stats():
    q, k, v = qkv(8, 900, 4, 2, 16, peaked=True)
    cu = [0, 300, 900]
    plan = pa.plan(q, k, cu, **SPARSE)
    stats = plan.stats()
    assert stats.budgets.shape == (2, 4) and stats.budgets.dtype == np.int32
    assert stats.density.shape == (2, 4) and stats.seq_density.shape == (2,)
    masks = plan.to_dense()
    for i, m in enumerate(masks):
        nb = m.shape[1]
        tri = nb * (nb + 1) / 2
        per_head = np.tril(m).sum(axis=(1, 2)) / tri
        np.testing.assert_allclose(stats.density[i], per_head, rtol=1e-6)
        np.testing.assert_allclose(stats.seq_density[i], per_head.mean(), rtol=1e-6)
    tris = np.array([m.shape[1] * (m.shape[1] + 1) / 2 for m in masks])
    weighted = (stats.density * tris[:, None]).sum() / (tris.sum() * 4)
    assert stats.density_weighted == pytest.approx(weighted, rel=1e-6)
    assert np.array_equal(plan.budgets, stats.budgets)
    assert "proxyattn.Plan" in repr(plan)
    arrays = plan.host_arrays()
    assert set(arrays) == {"group_order", "last_order", "counts", "budgets", "density"}


def test_forced_density_realizes_about_the_target():
    q, k, v = qkv(9, 2048, 2, 1, 16)
    plan = pa.plan(q, k, forced_density=0.3, **SPARSE)
    assert 0.3 <= plan.density_weighted < 0.45


def test_results_do_not_depend_on_threads():
    q, k, v = qkv(10, 640, 4, 2, 32, peaked=True)
    a = pa.prefill(q, k, v, num_threads=1, **SPARSE)
    b = pa.prefill(q, k, v, num_threads=3, **SPARSE)
    assert np.array_equal(a, b)


def random_nested_masks(rng, cu, heads, kv_heads, block_size, density=0.4):
    """Per sequence [heads, nb, nb]: one random causal selection per KV head (always sink and
    diagonal), shared by its query heads, so heads of a group (g = num_kv_heads) are nested."""
    masks = []
    for i in range(len(cu) - 1):
        nb = -(-(cu[i + 1] - cu[i]) // block_size)
        m = np.zeros((heads, nb, nb), dtype=bool)
        for kv in range(kv_heads):
            sel = np.tril(rng.random((nb, nb)) < density)
            sel[:, 0] = True
            sel[np.arange(nb), np.arange(nb)] = True
            sel = np.tril(sel)
            for h in range(kv * heads // kv_heads, (kv + 1) * heads // kv_heads):
                m[h] = sel
        masks.append(m)
    return masks


def test_from_block_mask_attend_matches_reference():
    rng = np.random.default_rng(11)
    q, k, v = qkv(11, 650, 4, 2, 32)
    cu = [0, 130, 650]
    masks = random_nested_masks(rng, cu, 4, 2, 64)
    plan = pa.Plan.from_block_mask(masks, q, k, cu, block_size=64)
    assert plan.num_proxy_heads == 2 and plan.block_size == 64
    for got, want in zip(plan.to_dense(), masks):
        assert np.array_equal(got, want)
    out, lse = pa.attend(q, k, v, plan, return_lse=True)
    check_close(out, lse, *attention(q, k, v, cu, block_masks=masks, block_size=64))
    # the flat layout of to_dense is accepted as well
    flat = np.concatenate([m.reshape(-1) for m in masks])
    plan2 = pa.Plan.from_block_mask(flat, q, k, cu, block_size=64)
    assert np.array_equal(pa.attend(q, k, v, plan2), out)


def test_from_block_mask_nested_heads_within_a_group():
    """g = 1 over 2 KV heads: head 1 selects a superset of head 0 in every row."""
    q, k, v = qkv(12, 256, 2, 2, 16)
    nb = 4
    small = np.eye(nb, dtype=bool)
    small[:, 0] = True
    big = np.tril(np.ones((nb, nb), dtype=bool))
    mask = np.stack([small, big])
    plan = pa.Plan.from_block_mask(mask, q, k, block_size=64, num_proxy_heads=1)
    out = pa.attend(q, k, v, plan)
    check_close(out, None, *attention(q, k, v, block_masks=[mask], block_size=64))


def test_empty_rows_give_zero_output_and_minus_inf_lse():
    q, k, v = qkv(13, 128, 1, 1, 8)
    mask = np.zeros((1, 2, 2), dtype=bool)
    mask[0, 1, :] = True  # block row 0 attends nothing
    plan = pa.Plan.from_block_mask(mask, q, k, block_size=64, num_proxy_heads=1)
    out, lse = pa.attend(q, k, v, plan, return_lse=True)
    assert np.all(out[:64] == 0) and np.all(np.isneginf(lse[0, :64]))
    check_close(out, lse, *attention(q, k, v, block_masks=[mask], block_size=64))


def test_bf16_numpy_inputs():
    q, k, v = qkv(14, 400, 4, 2, 32, peaked=True)
    qb, kb, vb = pa.as_bf16(q), pa.as_bf16(k), pa.as_bf16(v)
    assert isinstance(qb, pa.BF16Array) and qb.dtype == np.uint16
    qf, kf, vf = (pa.bf16_to_float32(x) for x in (qb, kb, vb))
    out = pa.dense(qb, kb, vb)
    assert isinstance(out, pa.BF16Array)
    check_close(pa.bf16_to_float32(out), None, *attention(qf, kf, vf), tol=BF16_TOL)
    out, plan = pa.prefill(qb, kb, vb, return_plan=True, **SPARSE)
    ref = attention(qf, kf, vf, block_masks=plan.to_dense(), block_size=64)
    check_close(pa.bf16_to_float32(out), None, *ref, tol=BF16_TOL)


def test_as_bf16_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -2.5, np.inf, np.nan], dtype=np.float32)
    back = pa.bf16_to_float32(pa.as_bf16(x))
    assert back[0] == 1.0 and back[1] == 1.0 and back[2] == 1.0 + 2 ** -6 and back[3] == -2.5
    assert np.isposinf(back[4]) and np.isnan(back[5])


def test_read_only_inputs_are_accepted():
    q, k, v = qkv(15, 64, 2, 1, 8)
    for x in (q, k, v):
        x.flags.writeable = False
    check_close(pa.dense(q, k, v), None, *attention(q, k, v))


def test_config_defaults_follow_spec():
    c = pa.Config()
    assert (c.block_size, c.stride, c.gamma, c.num_proxy_heads) == (128, 4, 0.95, 1)
    assert c.min_budget_tokens == 2048 and c.max_budget_tokens is None
    assert c.dense_below_tokens is None and c.dense_below() == 2048
    assert c.keep_sink and c.keep_diagonal and c.last_block_selection == "exact"
    assert c.forced_density is None and c.scale is None
    assert pa.Config(block_size=64, min_budget_tokens=0).dense_below() == 128
    assert c.replace(gamma=0.5).gamma == 0.5 and c.gamma == 0.95
    assert pa.Config(**c.to_dict()) == c


def test_config_follows_the_cpp_field_table():
    from proxyattn import _core
    from proxyattn.config import FIELDS, resolve_config
    table = _core.config_fields()
    assert FIELDS == tuple(f["name"] for f in table)
    assert [f.name for f in dataclasses.fields(pa.Config)] == list(FIELDS)
    for f in table:
        assert f["type"] in ("int", "float", "bool", "choice") and f["flag"].startswith("--")
    # Defaults: the C++ Config{}'s values, sentinels as None.
    assert pa.Config().key() == tuple(_core.Config().values()[n] for n in FIELDS)
    # Every field travels to C++ and back unchanged.
    c = pa.Config(block_size=64, stride=8, gamma=0.875, num_proxy_heads=2, min_budget_tokens=256,
                  max_budget_tokens=4096, dense_below_tokens=300, keep_sink=False,
                  keep_diagonal=False, last_block_selection="proxy", forced_density=0.3,
                  scale=0.125)
    assert tuple(c.to_core().values()[n] for n in FIELDS) == c.key()
    assert resolve_config(c.to_core()) == c
    assert resolve_config(pa.Config().to_core()) == pa.Config()
    assert c.to_core().values()["max_budget_tokens"] == "4096"
    assert pa.Config().to_core().values()["max_budget_tokens"] == "none"
    assert pa.Config(gamma=0.1 + 0.2).to_core().values()["gamma"] == repr(0.1 + 0.2)
    assert len({pa.Config().key(), c.key()}) == 2


def test_is_supported():
    assert pa.is_supported("fp32", 64) and pa.is_supported("bf16", 128, "cpu")
    assert not pa.is_supported("fp16", 64, "cpu")
    assert not pa.is_supported("fp32", 12)
    assert pa.is_supported(np.float32, 64) is True
    if not pa.with_cuda:
        assert not pa.is_supported("bf16", 128, "cuda") and not pa.cuda_available()
