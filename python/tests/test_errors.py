"""Every argument error raises proxyattn.Error (a ValueError) with the library's message, and
nothing is written to out (docs/SPEC.md section 6)."""
import numpy as np
import pytest

import proxyattn as pa
from reference import qkv

SPARSE = dict(block_size=64, min_budget_tokens=64, gamma=0.6)
SENTINEL = 7.0


@pytest.fixture
def inputs():
    return qkv(0, 200, 4, 2, 16)


def raises(match, fn, *args, **kwargs):
    with pytest.raises(pa.Error, match=match) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(info.value)
    return info.value


def test_error_is_a_value_error():
    assert issubclass(pa.Error, ValueError)


@pytest.mark.parametrize("fn", ["dense", "prefill"])
def test_operand_errors_leave_out_untouched(inputs, fn):
    q, k, v = inputs
    call = getattr(pa, fn)
    cases = [
        ("num_qo_heads = 3, expected a multiple of num_kv_heads = 2", (q[:, :3], k, v), {}),
        (r"q.rank = 2, expected 3", (q[:, 0], k, v), {}),
        (r"k.shape = \[150, 2, 16\], expected tokens = q.shape\[0\] = 200", (q, k[:150], v), {}),
        (r"v.shape = \[200, 1, 16\], expected k.shape", (q, k, v[:, :1]), {}),
        (r"k.dtype = bf16, expected q.dtype = fp32", (q, pa.as_bf16(k), v), {}),
        (r"q.strides\[2\] = 2, expected 1", (q[:, :, ::2], k[:, :, ::2], v[:, :, ::2]), {}),
        ("head_dim = 12 on cpu, expected a multiple of 8", (q[:, :, :12], k[:, :, :12],
                                                          v[:, :, :12]), {}),
        (r"cu_seqlens\[2\] = 50, expected >= cu_seqlens\[1\] = 100", (q, k, v),
         dict(cu_seqlens=[0, 100, 50, 200])),
        (r"cu_seqlens\[2\] = 199, expected total_tokens = 200", (q, k, v),
         dict(cu_seqlens=[0, 100, 199])),
        (r"cu_seqlens\[0\] = 5, expected 0", (q, k, v), dict(cu_seqlens=[5, 200])),
        ("cu_seqlens.size = 1, expected batch \\+ 1 >= 2", (q, k, v), dict(cu_seqlens=[0])),
        (r"lse.shape = \[4, 199\], expected \[4, 200\]", (q, k, v),
         dict(lse=np.zeros((4, 199), np.float32))),
        ("lse.dtype = fp16, expected fp32", (q, k, v), dict(lse=np.zeros((4, 200), np.float16))),
    ]
    for match, args, kwargs in cases:
        out = np.full(q.shape, SENTINEL, dtype=np.float32)
        if args[0].shape[1] != q.shape[1] or args[0].shape[2] != q.shape[2]:
            out = np.full(args[0].shape, SENTINEL, dtype=np.float32)
        if args[0].ndim != 3:
            out = None
        kw = dict(kwargs)
        if fn == "prefill":
            kw.update(SPARSE)
        raises(match, call, *args, out=out, **kw)
        if out is not None:
            assert np.all(out == SENTINEL), match


def test_out_errors(inputs):
    q, k, v = inputs
    raises(r"out.shape = \[200, 4, 8\], expected q.shape = \[200, 4, 16\]", pa.dense, q, k, v,
           out=np.zeros((200, 4, 8), np.float32))
    raises("out.dtype = fp16, expected q.dtype = fp32", pa.dense, q, k, v,
           out=np.zeros(q.shape, np.float16))
    ro = np.zeros(q.shape, np.float32)
    ro.flags.writeable = False
    raises("out is a read-only numpy array", pa.dense, q, k, v, out=ro)


def test_dtype_errors(inputs):
    q, k, v = inputs
    raises("q.dtype = float64, expected float32, bfloat16 or float16", pa.dense,
           q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    raises("q.dtype = int32", pa.dense, q.astype(np.int32), k, v)
    raises("q.dtype = fp16 on cpu, expected fp32 or bf16", pa.dense, q.astype(np.float16),
           k.astype(np.float16), v.astype(np.float16))
    raises("uint16", pa.dense, q.view(np.uint16)[:, :, ::2], k, v)  # untagged uint16 is no bf16


def test_non_array_inputs(inputs):
    q, k, v = inputs
    raises("expected an array with __dlpack__", pa.dense, q, k, v, out=[[1.0]])
    raises("cannot allocate an output like a list", pa.dense, q.tolist(), k, v)
    raises("cu_seqlens has dtype float64", pa.dense, q, k, v, cu_seqlens=[0.0, 200.0])
    raises("cu_seqlens values must lie in", pa.dense, q, k, v, cu_seqlens=[0, 2 ** 40])


def test_scale_errors(inputs):
    q, k, v = inputs
    raises("scale = -1, expected 0", pa.dense, q, k, v, scale=-1.0)
    raises("config.scale = -1, expected 0", pa.prefill, q, k, v, scale=-1.0)


@pytest.mark.parametrize("field,value,match", [
    ("gamma", 1.5, "config.gamma = 1.5, expected 0 < gamma <= 1"),
    ("gamma", 0.0, "config.gamma = 0, expected 0 < gamma <= 1"),
    ("block_size", 96, "config.block_size = 96, expected 64 or 128"),
    ("stride", 3, r"config.stride = 3, expected a positive divisor of block_size \(128\)"),
    ("num_proxy_heads", 0,
     r"config.num_proxy_heads \(--proxy-heads\) = '0', expected a positive divisor of num_kv"),
    ("min_budget_tokens", -1,
     r"config.min_budget_tokens \(--min-budget\) = '-1', expected an integer >= 0"),
    ("max_budget_tokens", 1024,
     r"config.max_budget_tokens = 1024, expected > 0 and >= min_budget_tokens \(2048\)"),
    ("dense_below_tokens", -5,
     r"config.dense_below_tokens \(--dense-below\) = '-5', expected an integer >= 0 or auto"),
    ("gamma", "high", "config.gamma = 'high', expected a number"),
    ("block_size", None, "config.block_size = None, expected an integer"),
    ("block_size", 64.5, "config.block_size = 64.5, expected an integer"),
    ("keep_sink", "yes", "config.keep_sink = 'yes', expected true or false"),
    ("max_budget_tokens", "big", r"config.max_budget_tokens = 'big', expected an integer or None"),
    ("forced_density", 2.0, r"config.forced_density = 2, expected 0 \(off\) or in \(0, 1\]"),
    ("last_block_selection", "best",
     r"config.last_block_selection \(--last-block\) = 'best', expected exact or proxy"),
])
def test_config_errors(inputs, field, value, match):
    q, k, v = inputs
    out = np.full(q.shape, SENTINEL, dtype=np.float32)
    raises(match, pa.prefill, q, k, v, out=out, **{field: value})
    assert np.all(out == SENTINEL)
    raises(match, pa.Config(**{field: value}).validate)
    raises(match, pa.workspace_size, q, k, **{field: value})


def test_config_fits_the_problem(inputs):
    q, k, v = inputs
    raises("config.num_proxy_heads = 3, expected a divisor of num_kv_heads = 2", pa.prefill, q,
           k, v, num_proxy_heads=3)
    raises("config.num_proxy_heads = 3, expected a divisor", pa.plan, q, k, num_proxy_heads=3)


def test_unknown_config_fields(inputs):
    q, k, v = inputs
    raises("unknown config field.* gama", pa.prefill, q, k, v, gama=0.9)
    raises("config is a str", pa.prefill, q, k, v, config="fast")


def test_workspace_errors(inputs):
    q, k, v = inputs
    need = pa.workspace_size(q, k, **SPARSE)
    out = np.full(q.shape, SENTINEL, dtype=np.float32)
    small = pa._arrays.workspace(q, 10)
    raises(f"workspace.size = 10, expected at least workspace_size\\(\\) = {need}", pa.prefill, q,
           k, v, out=out, workspace=small, **SPARSE)
    big = pa._arrays.workspace(q, need + 512)
    raises("expected 256-byte alignment", pa.prefill, q, k, v, out=out, workspace=big[1:need + 1],
           **SPARSE)
    raises("workspace.dtype = float32, expected uint8", pa.plan, q, k,
           workspace=np.zeros(need, np.float32), **SPARSE)
    raises("workspace.ndim = 2, expected 1", pa.plan, q, k,
           workspace=np.zeros((need, 1), np.uint8), **SPARSE)
    assert np.all(out == SENTINEL)


def test_attend_with_a_foreign_plan(inputs):
    q, k, v = inputs
    plan = pa.plan(q, k, [0, 100, 200], **SPARSE)
    raises(r"cu_seqlens\[2\] = 200, expected total_tokens = 150", pa.attend, q[:150], k[:150],
           v[:150], plan)
    raises("plan heads = 4/2, expected the tensors' 2/2", pa.attend, q[:, :2], k, v, plan)
    raises("plan is a dict, expected a proxyattn.Plan", pa.attend, q, k, v, {})


def test_block_mask_errors(inputs):
    q, k, v = inputs
    nb = 4
    full = np.tril(np.ones((4, nb, nb), dtype=bool))
    raises(r"mask.size = 60, expected .* = 64", pa.Plan.from_block_mask, full.reshape(-1)[:60], q,
           k, block_size=64)
    bad = full.copy()
    bad[1, 2, 1] = False  # head 1 drops a block head 0 keeps: not nested in group 0 (g = 1)
    bad[0, 2, 0] = False  # ... while head 0 drops another one
    raises("mask of sequence 0, group 0, query block 2 is not nested", pa.Plan.from_block_mask,
           bad, q, k, block_size=64, num_proxy_heads=1)
    raises("config.block_size = 96, expected 64 or 128", pa.Plan.from_block_mask, full, q, k,
           block_size=96)
    raises("expected a divisor of num_kv_heads", pa.Plan.from_block_mask, full, q, k,
           block_size=64, num_proxy_heads=3)
