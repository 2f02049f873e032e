"""torch CPU tensors through DLPack (zero copy), the torch face, and opcheck where torch has
torch.library.custom_op (>= 2.4). Skipped without torch."""
import numpy as np
import pytest

import proxyattn as pa
from reference import attention, qkv, rel_error_per_head

torch = pytest.importorskip("torch")
from proxyattn import torch_ops  # noqa: E402

SPARSE = dict(block_size=64, min_budget_tokens=64, gamma=0.6)


def as_torch(*arrays, dtype=None):
    out = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return [t.to(dtype) for t in out] if dtype is not None else out


def test_dense_fp32_returns_torch():
    q, k, v = qkv(0, 300, 4, 2, 32)
    tq, tk, tv = as_torch(q, k, v)
    out = pa.dense(tq, tk, tv)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == tq.shape
    assert rel_error_per_head(out.numpy(), attention(q, k, v)[0]) <= 2e-5
    assert np.array_equal(out.numpy(), pa.dense(q, k, v))


def test_prefill_bf16_and_plan():
    q, k, v = qkv(1, 500, 4, 2, 32, peaked=True)
    tq, tk, tv = as_torch(q, k, v, dtype=torch.bfloat16)
    out, plan = pa.prefill(tq, tk, tv, return_plan=True, **SPARSE)
    assert out.dtype == torch.bfloat16 and isinstance(plan.workspace, torch.Tensor)
    assert plan.workspace.data_ptr() % 256 == 0
    qf, kf, vf = (t.float().numpy() for t in (tq, tk, tv))
    ref = attention(qf, kf, vf, block_masks=plan.to_dense(), block_size=64)[0]
    assert rel_error_per_head(out.float().numpy(), ref) <= 1.6e-2
    # the same as numpy's bf16 path, bit for bit
    np_out = pa.prefill(pa.as_bf16(qf), pa.as_bf16(kf), pa.as_bf16(vf), **SPARSE)
    assert np.array_equal(out.view(torch.int16).numpy().view(np.uint16), np_out.view(np.uint16))


def test_views_and_requires_grad():
    q, k, v = qkv(2, 200, 4, 4, 16)
    tq = torch.from_numpy(np.ascontiguousarray(q.transpose(1, 0, 2))).transpose(0, 1)
    assert not tq.is_contiguous()
    tk, tv = as_torch(k, v)
    tk.requires_grad_(True)
    out = torch.zeros(200, 4, 16)
    res = pa.dense(tq, tk, tv, out=out)
    assert res is out
    assert rel_error_per_head(out.numpy(), attention(q, k, v)[0]) <= 2e-5


def test_varlen_cu_seqlens_as_tensor():
    q, k, v = qkv(3, 400, 2, 1, 16)
    cu = torch.tensor([0, 150, 400], dtype=torch.int32)
    out = pa.dense(*as_torch(q, k, v), cu_seqlens=cu)
    assert rel_error_per_head(out.numpy(), attention(q, k, v, [0, 150, 400])[0]) <= 2e-5


def test_torch_face_functions():
    q, k, v = qkv(4, 400, 4, 2, 32, peaked=True)
    tq, tk, tv = as_torch(q, k, v)
    out, lse = torch_ops.prefill(tq, tk, tv, None, pa.Config(**SPARSE), return_lse=True)
    assert lse.shape == (4, 400) and lse.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(pa.prefill(q, k, v, **SPARSE)))
    assert torch.equal(torch_ops.prefill(tq, tk, tv, **SPARSE), out)
    d = torch_ops.dense(tq, tk, tv, [0, 100, 400], scale=0.2)
    assert np.array_equal(d.numpy(), pa.dense(q, k, v, [0, 100, 400], scale=0.2))


def test_errors_through_torch():
    q, k, v = as_torch(*qkv(5, 100, 4, 2, 16))
    with pytest.raises(pa.Error, match="num_qo_heads = 3"):
        pa.dense(q[:, :3], k, v)
    with pytest.raises(pa.Error, match="config.gamma = 2"):
        torch_ops.prefill(q, k, v, gamma=2.0)
    with pytest.raises(pa.Error, match=r"q.dtype = float64"):
        pa.dense(q.double(), k.double(), v.double())


def test_block_mask_from_torch():
    q, k, v = qkv(6, 256, 2, 2, 16)
    mask = torch.tril(torch.ones(2, 4, 4, dtype=torch.bool))
    mask[0, 3, 1] = False
    plan = pa.Plan.from_block_mask(mask, *as_torch(q, k), block_size=64)
    out = pa.attend(*as_torch(q, k, v), plan)
    ref = attention(q, k, v, block_masks=[mask.numpy()], block_size=64)[0]
    assert rel_error_per_head(out.numpy(), ref) <= 2e-5


@pytest.mark.skipif(not torch_ops.HAVE_CUSTOM_OP, reason="torch < 2.4 has no custom_op")
def test_opcheck_cpu():
    q, k, v = as_torch(*qkv(7, 300, 4, 2, 32))
    key = torch_ops.config_args(**SPARSE)  # ("block_size=...;stride=...;...",): the field table
    assert key == (";".join(f"{n}={t}" for n, t in pa.Config(**SPARSE).to_core().values().items()),)
    torch.library.opcheck(torch.ops.proxyattn.prefill.default, (q, k, v, None) + key + (True,))
    cu = torch.tensor([0, 100, 300], dtype=torch.int32)
    torch.library.opcheck(torch.ops.proxyattn.dense.default, (q, k, v, cu, 0.0, False))
