"""Hostile arguments around the arrays: cu_seqlens in every container, thread counts, streams,
ranks, plan-building integers and outputs whose elements share memory. Each is a proxyattn.Error
naming the argument (docs/SPEC.md section 6), never a silent reinterpretation, a TypeError from
the binding or a write into out."""
import numpy as np
import pytest

import proxyattn as pa
from reference import qkv

SENTINEL = 7.0
SPARSE = dict(block_size=64, min_budget_tokens=0, dense_below_tokens=0)


@pytest.fixture
def inputs():
    return qkv(1, 200, 4, 2, 16)


def rejects(match, fn, *args, **kwargs):
    with pytest.raises(pa.Error, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize("cu", [np.array([], np.int32), np.array([0], np.int64), [200], ()])
@pytest.mark.parametrize("fn", ["dense", "prefill"])
def test_short_cu_seqlens_is_not_one_sequence(inputs, fn, cu):
    # An empty or one-entry cu_seqlens is an error; only None means "one sequence".
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, np.float32)
    rejects(r"expected batch \+ 1 >= 2|expected a 1-D integer", getattr(pa, fn), q, k, v,
            cu_seqlens=cu, out=out)
    assert np.all(out == SENTINEL)


def test_binding_reads_no_empty_cu_seqlens_as_one_sequence(inputs):
    # The binding itself (the torch op calls it with a list) refuses it too.
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, np.float32)
    rejects(r"cu_seqlens.size = 0, expected batch \+ 1 >= 2", pa._core.dense, q, k, v, [], out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("threads", [-1, 1.5, 2**40, True, "2", None])
@pytest.mark.parametrize("fn", ["dense", "prefill"])
def test_bad_num_threads(inputs, fn, threads):
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, np.float32)
    rejects("num_threads", getattr(pa, fn), q, k, v, out=out, num_threads=threads)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("stream", ["abc", -1, 1.5, 2**70])
def test_bad_stream(inputs, stream):
    q, k, v = inputs
    rejects("stream", pa.dense, q, k, v, stream=stream)


@pytest.mark.parametrize("scale", ["0.1", True, [0.1]])
def test_bad_scale_type(inputs, scale):
    q, k, v = inputs
    rejects("scale", pa.dense, q, k, v, scale=scale)
    rejects("scale", pa.Plan.from_block_mask, np.ones(4 * 16), q, k, block_size=64, scale=scale)


def test_ranks_are_errors_not_index_errors(inputs):
    q, k, v = inputs
    rejects(r"q.ndim = 1, expected 3", pa.dense, q.reshape(-1), k, v, return_lse=True)
    rejects(r"q.ndim = 2, expected 3", pa.Plan.from_block_mask, np.ones(64), q[:, 0], k,
            block_size=64)
    rejects(r"k.ndim = 1, expected 3", pa.Plan.from_block_mask, np.ones(64), q, k.reshape(-1),
            block_size=64)


@pytest.mark.parametrize("field, value", [("stride", True), ("num_proxy_heads", True),
                                          ("min_budget_tokens", False), ("gamma", True),
                                          ("forced_density", np.True_), ("scale", False)])
def test_bools_are_not_integers(inputs, field, value):
    q, k, v = inputs
    rejects(field, pa.prefill, q, k, v, block_size=64, **{field: value})


@pytest.mark.parametrize("groups", [1.5, True, "1"])
def test_block_mask_groups_are_integers(inputs, groups):
    q, k, _ = inputs
    rejects("num_proxy_heads", pa.Plan.from_block_mask, np.ones(4 * 16), q, k, block_size=64,
            num_proxy_heads=groups)


def test_block_mask_list_must_match_the_sequences(inputs):
    q, k, _ = inputs
    cu = [0, 64, 200]  # 1 and 3 blocks of 64
    good = [np.ones((4, 1, 1)), np.ones((4, 3, 3))]
    assert pa.Plan.from_block_mask(good, q, k, cu_seqlens=cu, block_size=64).num_blocks == [1, 3]
    # Same total size (4 + 36 entries), other split: refused, not read shifted.
    rejects(r"mask\[0\].shape = \(4, 3, 3\), expected \[num_qo_heads, nb, nb\] = \[4, 1, 1\]",
            pa.Plan.from_block_mask, good[::-1], q, k, cu_seqlens=cu, block_size=64)
    rejects("expected one per sequence", pa.Plan.from_block_mask, good[:1], q, k, cu_seqlens=cu,
            block_size=64)


def test_outputs_whose_elements_share_memory(inputs):
    q, k, v = inputs
    row = np.full(16, SENTINEL, np.float32)
    out = np.lib.stride_tricks.as_strided(row, shape=q.shape, strides=(0, 0, 4))
    rejects(r"out.strides\[0\] = 0", pa.dense, q, k, v, out=out)
    assert np.all(row == SENTINEL)
    lse_row = np.full(200, SENTINEL, np.float32)
    lse = np.lib.stride_tricks.as_strided(lse_row, shape=(4, 200), strides=(0, 4))
    rejects(r"lse.strides\[0\] = 0", pa.prefill, q, k, v, lse=lse, return_lse=True, **SPARSE)
    assert np.all(lse_row == SENTINEL)
    # A broadcast KV head (zero stride on an input) is valid and matches the copied one.
    k1 = np.lib.stride_tricks.as_strided(k[:, :1], shape=k.shape, strides=(k.strides[0], 0, 4))
    v1 = np.lib.stride_tricks.as_strided(v[:, :1], shape=v.shape, strides=(v.strides[0], 0, 4))
    np.testing.assert_array_equal(pa.dense(q, k1, v1), pa.dense(q, np.ascontiguousarray(k1),
                                                                 np.ascontiguousarray(v1)))


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("cu, match", [
    (torch.tensor([0.0, 200.0]), "expected a 1-D integer"),
    ([0, 100.5, 200], "expected a 1-D integer"),
    ([0, 2**40], r"must lie in \[0, 2\^31\)"),
    (torch.tensor([[0, 200]]), "expected a 1-D integer"),
    ([], r"expected batch \+ 1 >= 2|expected a 1-D integer"),
    (torch.tensor([], dtype=torch.int32), r"expected batch \+ 1 >= 2"),
    (torch.tensor([0, 300, 200], dtype=torch.int64), r"expected >= cu_seqlens\[1\]"),
])
@pytest.mark.parametrize("fn", ["dense", "prefill"])
def test_torch_cu_seqlens_follow_the_same_rules(inputs, fn, cu, match):
    # The torch op path never truncates floats or reads an empty cu_seqlens as one sequence.
    q, k, v = (torch.from_numpy(a) for a in inputs)
    kwargs = SPARSE if fn == "prefill" else {}
    rejects(match, getattr(pa, fn), q, k, v, cu_seqlens=cu, **kwargs)


def test_torch_cu_seqlens_int64_and_lists_work(inputs):
    q, k, v = (torch.from_numpy(a) for a in inputs)
    ref = pa.prefill(q, k, v, cu_seqlens=torch.tensor([0, 120, 200], dtype=torch.int32), **SPARSE)
    for cu in ([0, 120, 200], (0, 120, 200), torch.tensor([0, 120, 200]), np.array([0, 120, 200])):
        torch.testing.assert_close(pa.prefill(q, k, v, cu_seqlens=cu, **SPARSE), ref, rtol=0, atol=0)


def test_torch_choice_text_cannot_set_other_fields(inputs):
    # The op takes the config as "name=text;..." text: a value holding ';' must not smuggle in a
    # second field.
    q, k, v = (torch.from_numpy(a) for a in inputs)
    rejects("last_block_selection", pa.prefill, q, k, v, last_block_selection="proxy;gamma=0.5",
            **SPARSE)


def test_torch_ranks(inputs):
    q, k, v = (torch.from_numpy(a) for a in inputs)
    rejects(r"q.ndim = 2, expected 3", pa.prefill, q[:, 0], k, v, **SPARSE)
    rejects(r"k.ndim = 1, expected 3", pa.prefill, q, k.reshape(-1), v, **SPARSE)
    rejects(r"q.ndim = 2, expected 3", pa.dense, q[:, 0], k, v)
