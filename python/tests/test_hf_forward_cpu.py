"""proxyattn.hf.attention_forward on torch CPU tensors, without transformers: the layout
transforms ([B, H, S, D] in, [B, S, H, D] out), batches as packed sequences, and which calls go to
the SDPA fallback (replaced here by a recording stub). Skipped without torch."""
import warnings

import numpy as np
import pytest

import proxyattn as pa
from proxyattn import hf
from reference import attention, rel_error_per_head

torch = pytest.importorskip("torch")


class FakeConfig:
    pass


class FakeAttention(torch.nn.Module):
    def __init__(self, layer_idx=0, **entry):
        super().__init__()
        self.layer_idx = layer_idx
        self.is_causal = True
        self.config = FakeConfig()
        if entry:
            self.config.proxyattn = entry


@pytest.fixture
def stub(monkeypatch):
    calls = []

    def fake_sdpa(module, query, key, value, attention_mask, **kwargs):
        calls.append(dict(q_len=query.shape[2], mask=attention_mask, **kwargs))
        return torch.zeros(query.shape[0], query.shape[2], query.shape[1], query.shape[3]), None

    monkeypatch.setattr(hf, "_sdpa", fake_sdpa)
    monkeypatch.setitem(hf._defaults, "proxyattn", dict(block_size=64, min_budget_tokens=64))
    hf.clear_cache()
    hf._warned.clear()
    return calls


def bhsd(batch, heads, kv_heads, seq, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Like a model: projections laid out [B, S, H, D], viewed as [B, H, S, D].
    q = torch.randn(batch, seq, heads, dim, generator=g).transpose(1, 2)
    k = torch.randn(batch, seq, kv_heads, dim, generator=g).transpose(1, 2)
    v = torch.randn(batch, seq, kv_heads, dim, generator=g).transpose(1, 2)
    return q, k, v


def test_prefill_batch_matches_reference(stub):
    q, k, v = bhsd(2, 4, 2, 300, 32)
    module = FakeAttention(gamma=0.7)
    out, weights = hf.attention_forward(module, q, k, v, None, scaling=0.2)
    assert weights is None and out.shape == (2, 300, 4, 32) and not stub
    packed = [x.transpose(1, 2).reshape(600, x.shape[1], 32).numpy() for x in (q, k, v)]
    plan_out, plan = pa.prefill(*[torch.from_numpy(np.ascontiguousarray(x)) for x in packed],
                                [0, 300, 600], block_size=64, min_budget_tokens=64, gamma=0.7,
                                scale=0.2, return_plan=True)
    assert torch.equal(out.reshape(600, 4, 32), plan_out)
    ref = attention(*packed, [0, 300, 600], scale=0.2, block_masks=plan.to_dense(), block_size=64)
    assert rel_error_per_head(out.reshape(600, 4, 32).numpy(), ref[0]) <= 2e-5


def test_decode_and_chunks_go_to_sdpa_silently(stub):
    q, k, v = bhsd(1, 4, 2, 300, 32)
    module = FakeAttention()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.attention_forward(module, q[:, :, -1:], k, v, None)  # decode
        hf.attention_forward(module, q[:, :, -100:], k, v, None)  # chunked prefill
    assert [c["q_len"] for c in stub] == [1, 100]


def test_dense_layers_go_to_sdpa_silently(stub):
    q, k, v = bhsd(1, 4, 2, 300, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf.attention_forward(FakeAttention(1, dense_layers=[1]), q, k, v, None)
        hf.attention_forward(FakeAttention(2, layers={"2": {"dense": True}}), q, k, v, None)
        hf.attention_forward(FakeAttention(3, layers={"2": {"dense": True}}), q, k, v, None)
    assert len(stub) == 2


@pytest.mark.parametrize("case,reason", [
    ("mask", "attention mask"),
    ("softcap", "softcap"),
    ("fp16", "no kernel"),
    ("head_dim", "no kernel"),
    ("non_causal", "non-causal"),
    ("output_attentions", "output_attentions"),
    ("proxy_heads", "num_proxy_heads = 4"),
])
def test_fallbacks_warn_once(stub, case, reason):
    q, k, v = bhsd(1, 4, 2, 300, 32)
    module = FakeAttention()
    kwargs = {}
    mask = None
    if case == "mask":
        mask = torch.ones(1, 1, 300, 300, dtype=torch.bool)
    elif case == "softcap":
        kwargs["softcap"] = 30.0
    elif case == "fp16":
        q, k, v = q.half(), k.half(), v.half()
    elif case == "head_dim":
        q, k, v = bhsd(1, 4, 2, 300, 12)
    elif case == "non_causal":
        module.is_causal = False
    elif case == "output_attentions":
        kwargs["output_attentions"] = True
    elif case == "proxy_heads":
        module = FakeAttention(num_proxy_heads=4)
    with pytest.warns(RuntimeWarning, match=reason):
        hf.attention_forward(module, q, k, v, mask, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time is silent
        hf.attention_forward(module, q, k, v, mask, **kwargs)
    assert len(stub) == 2 and stub[0]["mask"] is mask


def test_settings_follow_a_new_entry(stub):
    q, k, v = bhsd(1, 4, 2, 300, 32)
    module = FakeAttention(dense_layers=[0])
    hf.attention_forward(module, q, k, v, None)
    assert len(stub) == 1
    module.config.proxyattn = {"gamma": 0.5}  # a new dict: picked up without clear_cache()
    hf.attention_forward(module, q, k, v, None)
    assert len(stub) == 1


def padding_mask(valid, additive=False):
    """What transformers builds for a padded batch: [B, 1, S, S], causal among valid keys."""
    seq = valid.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    keep = causal[None] & valid[:, None, :]
    if additive:
        return torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)[:, None]
    return keep[:, None]


@pytest.mark.parametrize("additive", [False, True])
def test_padded_batch_is_unpadded_to_packed_sequences(stub, additive):
    q, k, v = bhsd(3, 4, 2, 300, 32, seed=3)
    valid = torch.ones(3, 300, dtype=torch.bool)
    valid[0, :120] = False  # left padding
    valid[2, 250:] = False  # right padding
    module = FakeAttention(gamma=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # served without a fallback warning
        out, _ = hf.attention_forward(module, q, k, v, padding_mask(valid, additive), scaling=0.2)
    assert not stub and out.shape == (3, 300, 4, 32)
    assert torch.count_nonzero(out[~valid]) == 0  # padded positions get zeros
    # The same as prefill over each row's valid tokens, packed.
    packed = [x.transpose(1, 2)[valid].contiguous() for x in (q, k, v)]
    cu = [0, 180, 480, 730]
    want, plan = pa.prefill(*packed, cu, block_size=64, min_budget_tokens=64, gamma=0.8, scale=0.2,
                            return_plan=True)
    assert torch.equal(out[valid], want)
    ref = attention(*[x.numpy() for x in packed], cu, scale=0.2, block_masks=plan.to_dense(),
                    block_size=64)
    assert rel_error_per_head(out[valid].numpy(), ref[0]) <= 2e-5


def test_unpadded_full_mask_is_the_plain_batch(stub):
    q, k, v = bhsd(2, 4, 2, 200, 32)
    module = FakeAttention()
    with_mask, _ = hf.attention_forward(module, q, k, v,
                                        padding_mask(torch.ones(2, 200, dtype=torch.bool)))
    without, _ = hf.attention_forward(module, q, k, v, None)
    assert not stub and torch.equal(with_mask, without)


def test_packed_sequence_mask_falls_back(stub):
    q, k, v = bhsd(1, 4, 2, 300, 32)
    block = torch.zeros(300, 300, dtype=torch.bool)
    block[:100, :100] = True
    block[100:, 100:] = True  # two documents in one row: not padding
    mask = (block & torch.ones(300, 300, dtype=torch.bool).tril())[None, None]
    with pytest.warns(RuntimeWarning, match="other than causal padding"):
        hf.attention_forward(FakeAttention(), q, k, v, mask)
    assert len(stub) == 1 and stub[0]["mask"] is mask
