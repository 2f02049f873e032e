"""Hostile Python inputs: every one is a proxyattn.Error (a ValueError) naming the problem, never a
crash, a wrong result or a write into out (docs/SPEC.md section 6)."""
import numpy as np
import pytest

import proxyattn as pa
from reference import qkv

SENTINEL = 7.0


@pytest.fixture
def inputs():
    return qkv(0, 200, 4, 2, 16)


def rejects(match, fn, *args, **kwargs):
    with pytest.raises(pa.Error, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize("fn", ["dense", "prefill"])
def test_strides_and_dtypes(inputs, fn):
    q, k, v = inputs
    call = getattr(pa, fn)
    rejects(r"strides = \[-64, 16, 1\], expected non-negative strides", call, q[::-1], k[::-1],
            v[::-1])
    rejects(r"strides\[2\] = -1, expected 1", call, q[:, :, ::-1], k[:, :, ::-1], v[:, :, ::-1])
    for dtype in (np.float64, np.int32, np.int8, np.complex64):
        rejects(r"q.dtype = \w+, expected float32, bfloat16 or float16", call, q.astype(dtype),
                k.astype(dtype), v.astype(dtype))
    out = np.full(q.shape, SENTINEL, np.float64)
    rejects(r"out.dtype = float64", call, q, k, v, out=out)
    out = np.full(q.shape, SENTINEL, np.float32)
    out.setflags(write=False)
    rejects(r"read-only", call, q, k, v, out=out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("cu, match", [
    ([0.0, 200.0], "expected a 1-D integer sequence"),
    (np.array([0, 200], np.float32), "expected a 1-D integer sequence"),
    (np.array([[0, 200]], np.int32), "expected a 1-D integer sequence"),
    ("0,200", "expected a 1-D integer sequence"),
    ([0, -5, 200], r"must lie in \[0, 2\^31\)"),
    ([0, 2**40], r"must lie in \[0, 2\^31\)"),
    ([0, 100, 50, 200], r"expected >= cu_seqlens\[1\] = 100"),
    ([0, 201], "expected total_tokens = 200"),
])
def test_bad_cu_seqlens(inputs, cu, match):
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, np.float32)
    rejects(match, pa.prefill, q, k, v, cu_seqlens=cu, out=out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("field, value, match", [
    ("gamma", float("nan"), "gamma"),
    ("gamma", float("inf"), "gamma"),
    ("gamma", 1.0000001, "1.0000001"),
    ("block_size", 64.5, "expected an integer"),
    ("block_size", True, "block_size"),
    ("min_budget_tokens", 2**70, "min_budget_tokens"),
    ("forced_density", 0.0, "forced_density"),
    ("stride", -4, "stride"),
])
def test_bad_config_values(inputs, field, value, match):
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, np.float32)
    rejects(match, pa.prefill, q, k, v, out=out, **{field: value})
    assert np.all(out == SENTINEL)


def test_not_arrays(inputs):
    q, k, v = inputs
    rejects("NoneType", pa.dense, None, k, v)
    rejects("list", pa.dense, q.tolist(), k, v)
    rejects("float32", pa.dense, np.float32(1.0), k, v)


def test_empty_sequence_is_valid(inputs):
    q, k, v = inputs
    out = pa.dense(q[:0], k[:0], v[:0])
    assert out.shape == (0, 4, 16)


def test_empty_operands_with_zero_strides_are_valid(inputs):
    # NumPy 2 exports zero-size arrays with zero strides; an empty operand has no layout to check.
    q, k, v = inputs
    zero = lambda a: np.lib.stride_tricks.as_strided(a[:0], strides=(0, 0, 0))
    out = np.lib.stride_tricks.as_strided(np.empty((0, 4, 16), np.float32), strides=(0, 0, 0))
    assert pa.dense(zero(q), zero(k), zero(v), out=out) is not None
    assert pa.prefill(zero(q), zero(k), zero(v), config=pa.Config(block_size=64)).shape == (0, 4, 16)
