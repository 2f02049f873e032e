"""Device tests: torch CUDA tensors against SDPA, the custom ops under torch.compile and CUDA
graphs, and transformers with attn_implementation="proxyattn". Skipped without torch, CUDA or a
CUDA build of proxyattn.

Run on the GPU machine: pip install --no-build-isolation ./python && pytest -q python/tests
"""
import os
import warnings

import numpy as np
import pytest

import proxyattn as pa

torch = pytest.importorskip("torch")
if not torch.cuda.is_available() or not pa.cuda_available():
    pytest.skip("needs a CUDA device and a CUDA build of proxyattn", allow_module_level=True)
import torch.nn.functional as F  # noqa: E402

from proxyattn import torch_ops  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# README: per-head relative error bound against a high-precision reference, per dtype.
TOL = {torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
SPARSE = dict(block_size=128, min_budget_tokens=256, gamma=0.9)


def make_qkv(tokens, heads, kv_heads, dim, dtype, seed=0, peaked=True):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(tokens, heads, dim, device="cuda", generator=g)
    k = torch.randn(tokens, kv_heads, dim, device="cuda", generator=g)
    v = torch.randn(tokens, kv_heads, dim, device="cuda", generator=g)
    if peaked:  # a few strong keys, so that sparse plans keep most of the mass
        hot = torch.randperm(tokens, device="cuda", generator=g)[: max(1, tokens // 64)]
        k[hot] *= 4.0
        q *= 1.5
    return q.to(dtype), k.to(dtype), v.to(dtype)


def sdpa_reference(q, k, v, cu_seqlens=None, block_masks=None, block_size=None, scale=None):
    """fp32 SDPA per sequence, causal, optionally restricted to per-head block masks."""
    tokens, heads, dim = q.shape
    group = heads // k.shape[1]
    cu = [0, tokens] if cu_seqlens is None else [int(x) for x in cu_seqlens]
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for i in range(len(cu) - 1):
        s, e = cu[i], cu[i + 1]
        n = e - s
        if n == 0:
            continue
        qs = q[s:e].float().transpose(0, 1)[None]
        ks = k[s:e].float().repeat_interleave(group, dim=1).transpose(0, 1)[None]
        vs = v[s:e].float().repeat_interleave(group, dim=1).transpose(0, 1)[None]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        if block_masks is not None:
            pos = torch.arange(n, device=q.device) // block_size
            blocks = torch.as_tensor(block_masks[i], device=q.device)
            mask = mask[None] & blocks[:, pos][:, :, pos]
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
        out[s:e] = o[0].transpose(0, 1)
    return out


def assert_same(got, want):
    """Two runs of the same computation: equal up to a kernel's possible nondeterminism (a race or
    a wrong stream would show as large errors)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)


def assert_close(out, ref, dtype):
    assert torch.isfinite(out).all()
    diff = (out.float() - ref).transpose(0, 1).reshape(out.shape[1], -1).norm(dim=1)
    denom = ref.transpose(0, 1).reshape(ref.shape[1], -1).norm(dim=1).clamp_min(1e-30)
    worst = (diff / denom).max().item()
    assert worst <= TOL[dtype], f"relative error {worst:.3e} > {TOL[dtype]:.1e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("heads,kv_heads", [(8, 8), (8, 2)])
def test_dense_matches_sdpa(dtype, dim, heads, kv_heads):
    q, k, v = make_qkv(1000, heads, kv_heads, dim, dtype, peaked=False)
    out = pa.dense(q, k, v)
    assert out.dtype == dtype and out.device == q.device and out.shape == q.shape
    assert_close(out, sdpa_reference(q, k, v), dtype)


def test_dense_varlen_and_lse():
    q, k, v = make_qkv(1200, 4, 2, 128, torch.bfloat16, peaked=False)
    cu = torch.tensor([0, 1, 300, 300, 1200], dtype=torch.int32)
    out, lse = pa.dense(q, k, v, cu, return_lse=True)
    assert_close(out, sdpa_reference(q, k, v, cu), torch.bfloat16)
    # LSE of the first row of sequence 1 is its single logit
    first = (q[1].float() * k[1].float().repeat_interleave(2, dim=0)).sum(-1) / np.sqrt(128)
    torch.testing.assert_close(lse[:, 1], first, atol=2e-2, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block_size", [64, 128])
@pytest.mark.parametrize("last_block", ["exact", "proxy"])
def test_prefill_matches_sdpa_with_the_plans_mask(dtype, block_size, last_block):
    q, k, v = make_qkv(3000, 8, 2, 128, dtype, seed=1)
    cu = [0, 200, 3000]  # a dense-fallback sequence and a sparse one
    cfg = dict(SPARSE, block_size=block_size, last_block_selection=last_block)
    out, plan = pa.prefill(q, k, v, cu, return_plan=True, **cfg)
    assert plan.device == "cuda" and plan.is_dense == [True, False]
    masks = plan.to_dense()
    assert 0.0 < plan.density_weighted < 1.0
    assert_close(out, sdpa_reference(q, k, v, cu, masks, block_size), dtype)
    # the custom op computes the same plan and output
    op_out = torch_ops.prefill(q, k, v, torch.tensor(cu, dtype=torch.int32), **cfg)
    assert_same(op_out, out)


def test_forced_density_one_matches_dense():
    q, k, v = make_qkv(2048, 8, 8, 64, torch.bfloat16)
    out = pa.prefill(q, k, v, forced_density=1.0, **SPARSE)
    assert_close(out, sdpa_reference(q, k, v), torch.bfloat16)
    torch.testing.assert_close(out, pa.dense(q, k, v), atol=1e-2, rtol=1e-2)


def test_plan_stats_on_cuda():
    q, k, v = make_qkv(4096, 4, 1, 128, torch.bfloat16, seed=2)
    plan = pa.plan(q, k, forced_density=0.1, **SPARSE)
    stats = plan.stats()
    assert stats.budgets.shape == (1, 4) and 0.08 < stats.density_weighted < 0.2


def test_from_block_mask_on_cuda():
    q, k, v = make_qkv(1000, 4, 2, 64, torch.bfloat16, seed=3, peaked=False)
    rng = np.random.default_rng(3)
    nb = 8
    masks = np.zeros((4, nb, nb), dtype=bool)
    for kv in range(2):
        sel = np.tril(rng.random((nb, nb)) < 0.4)
        sel[:, 0] = True
        sel[np.arange(nb), np.arange(nb)] = True
        masks[2 * kv:2 * kv + 2] = np.tril(sel)
    plan = pa.Plan.from_block_mask(masks, q, k, block_size=128)
    assert plan.device == "cuda"
    assert np.array_equal(plan.to_dense()[0], masks)
    out = pa.attend(q, k, v, plan)
    assert_close(out, sdpa_reference(q, k, v, None, [masks], 128), torch.bfloat16)


def test_runs_on_the_current_stream():
    q, k, v = make_qkv(2048, 8, 2, 128, torch.bfloat16, seed=4)
    expected = pa.prefill(q, k, v, **SPARSE)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = pa.prefill(q, k, v, **SPARSE)
        explicit = torch.empty_like(q)
        pa.dense(q, k, v, out=explicit, stream=side)
    side.synchronize()
    assert_same(got, expected)
    assert_same(explicit, pa.dense(q, k, v))


def test_errors_on_cuda():
    q, k, v = make_qkv(256, 4, 2, 96, torch.bfloat16)
    with pytest.raises(pa.Error, match="head_dim = 96 on cuda, expected 64 or 128"):
        pa.dense(q, k, v)
    q, k, v = make_qkv(256, 4, 2, 64, torch.float32)
    with pytest.raises(pa.Error, match="q.dtype = fp32 on cuda, expected bf16 or fp16"):
        pa.prefill(q, k, v)
    q, k, v = make_qkv(256, 4, 2, 64, torch.bfloat16)
    with pytest.raises(pa.Error, match="k.device"):
        pa.dense(q, k.cpu(), v)


class Attention(torch.nn.Module):
    """A module calling the op, as a model would."""

    def __init__(self, **config):
        super().__init__()
        self.key = torch_ops.config_args(**config)

    def forward(self, q, k, v):
        return torch_ops.prefill(q, k, v, None, self.key) * 2.0 + 1.0


@pytest.mark.skipif(not torch_ops.HAVE_CUSTOM_OP, reason="torch < 2.4 has no custom_op")
def test_torch_compile_module():
    q, k, v = make_qkv(2048, 8, 2, 128, torch.bfloat16, seed=5)
    module = Attention(**SPARSE)
    eager = module(q, k, v)
    compiled = torch.compile(module, fullgraph=True)
    assert_same(compiled(q, k, v), eager)
    q2, k2, v2 = make_qkv(2048, 8, 2, 128, torch.bfloat16, seed=6)
    assert_same(compiled(q2, k2, v2), module(q2, k2, v2))


@pytest.mark.skipif(not torch_ops.HAVE_CUSTOM_OP, reason="torch < 2.4 has no custom_op")
def test_cuda_graph_capture_and_replay():
    q, k, v = make_qkv(2048, 8, 2, 128, torch.bfloat16, seed=7)
    key = torch_ops.config_args(**SPARSE)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (lazy init) outside the capture
        torch_ops.prefill(q, k, v, None, key)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = torch_ops.prefill(q, k, v, None, key)
    q2, k2, v2 = make_qkv(2048, 8, 2, 128, torch.bfloat16, seed=8)
    q.copy_(q2)
    k.copy_(k2)
    v.copy_(v2)
    graph.replay()
    torch.cuda.synchronize()
    assert_same(out, torch_ops.prefill(q2, k2, v2, None, key))


@pytest.mark.skipif(not torch_ops.HAVE_CUSTOM_OP, reason="torch < 2.4 has no custom_op")
def test_opcheck_cuda():
    q, k, v = make_qkv(600, 4, 2, 64, torch.bfloat16)
    key = torch_ops.config_args(block_size=64, min_budget_tokens=128, gamma=0.9)
    torch.library.opcheck(torch.ops.proxyattn.prefill.default, (q, k, v, None) + key + (True,))
    cu = torch.tensor([0, 100, 600], dtype=torch.int32)
    torch.library.opcheck(torch.ops.proxyattn.dense.default, (q, k, v, cu, 0.0, True))


# --- transformers ---------------------------------------------------------------------------------


def tiny_llama(**overrides):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, head_dim=64,
                                      max_position_embeddings=8192, **overrides)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(device="cuda", dtype=torch.bfloat16).eval()
    return model


def set_attention(model, name):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


@pytest.fixture
def registered():
    import proxyattn.hf as hf
    pytest.importorskip("transformers")
    hf.register(block_size=64, min_budget_tokens=128)
    hf._warned.clear()
    return hf


def test_hf_prefill_matches_sdpa_at_gamma_one(registered):
    model = tiny_llama()
    ids = torch.randint(0, 1000, (2, 1024), device="cuda", generator=torch.Generator(
        device="cuda").manual_seed(0))
    with torch.no_grad():
        set_attention(model, "sdpa")
        ref = model(ids).logits.float()
        set_attention(model, "proxyattn")
        model.config.proxyattn = {"gamma": 1.0}
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            got = model(ids).logits.float()
        assert not [w for w in record if "proxyattn" in str(w.message)]  # served, no fallback
        model.config.proxyattn = {"forced_density": 0.2}
        sparse = model(ids).logits.float()
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < 2e-2, rel
    assert torch.isfinite(sparse).all() and not torch.equal(sparse, got)


def test_hf_dense_layers_and_per_layer_overrides(registered):
    model = tiny_llama()
    ids = torch.randint(0, 1000, (1, 1024), device="cuda")
    with torch.no_grad():
        set_attention(model, "sdpa")
        ref = model(ids).logits.float()
        set_attention(model, "proxyattn")
        model.config.proxyattn = {"dense_layers": [0, 1], "forced_density": 0.05}
        all_dense = model(ids).logits.float()
        model.config.proxyattn = {"forced_density": 0.05, "layers": {"0": {"dense": True}}}
        one_sparse = model(ids).logits.float()
    torch.testing.assert_close(all_dense, ref, atol=0, rtol=0)  # SDPA in both layers
    assert not torch.equal(one_sparse, ref)


def test_hf_padded_batch_is_served(registered):
    # Left padding: proxyattn unpads the batch to packed sequences, with no SDPA fallback; at
    # gamma 1 the valid positions match SDPA's.
    model = tiny_llama()
    ids = torch.randint(0, 1000, (2, 512), device="cuda")
    mask = torch.ones_like(ids)
    mask[0, :100] = 0
    with torch.no_grad():
        set_attention(model, "sdpa")
        ref = model(ids, attention_mask=mask).logits.float()
        set_attention(model, "proxyattn")
        model.config.proxyattn = {"gamma": 1.0}
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            got = model(ids, attention_mask=mask).logits.float()
    assert not [w for w in record if "proxyattn" in str(w.message)]
    keep = mask.bool()
    rel = ((got[keep] - ref[keep]).norm() / ref[keep].norm()).item()
    assert rel < 2e-2, rel


def test_hf_generate_decodes_with_sdpa(registered):
    model = tiny_llama()
    ids = torch.randint(0, 1000, (1, 600), device="cuda")
    with torch.no_grad():
        set_attention(model, "sdpa")
        ref = model.generate(ids, max_new_tokens=8, do_sample=False)
        set_attention(model, "proxyattn")
        model.config.proxyattn = {"gamma": 1.0}
        got = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert got.shape == ref.shape


SHIPPED = os.path.join(ROOT, "models", "pa-tiny-8k")


@pytest.mark.skipif(not os.path.exists(os.path.join(SHIPPED, "config.json")),
                    reason="the shipped model's weights are not in models/pa-tiny-8k yet")
def test_shipped_model_greedy_text_equal(registered):
    transformers = pytest.importorskip("transformers")
    import sys
    sys.path.insert(0, os.path.join(ROOT, "eval"))
    import tasks  # noqa: PLC0415 (eval/tasks.py: the project's sentencepiece tokenizer)

    tok = tasks.SpmTokenizer(os.path.join(SHIPPED, "tokenizer.model"))
    prompts = ["The capital of France is", "Once upon a time, there was a",
               "Question: what is two plus two? Answer:"]
    texts = {}
    for name in ("sdpa", "proxyattn"):
        model = transformers.LlamaForCausalLM.from_pretrained(SHIPPED).to(
            device="cuda", dtype=torch.bfloat16).eval()
        set_attention(model, name)
        outs = []
        for prompt in prompts:
            ids = torch.tensor([[tok.bos_id] + tok.encode(prompt)], device="cuda")
            with torch.no_grad():
                g = model.generate(ids, max_new_tokens=24, do_sample=False,
                                   eos_token_id=tok.eos_id, pad_token_id=tok.eos_id)
            outs.append(tok.decode(g[0, ids.shape[1]:].tolist()))
        texts[name] = outs
    assert texts["proxyattn"] == texts["sdpa"]
