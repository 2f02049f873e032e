"""A small Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention) in plain PyTorch.

Module and parameter names mirror Hugging Face's LlamaForCausalLM, so the state dict saves as an HF
checkpoint unchanged, and HF checkpoints of this shape load back (see load_hf / save_hf).
RoPE is HF's default (non-interleaved, rotate_half). Query head h reads KV head h // (n_heads // n_kv_heads).
"""
import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


@dataclass
class Config:
    vocab_size: int = 8192
    dim: int = 256
    n_layers: int = 8
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 64
    ffn_dim: int = 704
    rope_theta: float = 50000.0
    norm_eps: float = 1e-5
    max_seq_len: int = 8192
    tie_embeddings: bool = True
    bos_id: int = 1
    eos_id: int = 2

    def hf_config(self):
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_seq_len,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "tie_word_embeddings": self.tie_embeddings,
            "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_id,
            "initializer_range": 0.02,
            "use_cache": True,
            "torch_dtype": "bfloat16",
            "dtype": "bfloat16",
        }

    @classmethod
    def from_hf(cls, d):
        theta = d.get("rope_theta") or (d.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        return cls(vocab_size=d["vocab_size"], dim=d["hidden_size"], n_layers=d["num_hidden_layers"],
                   n_heads=d["num_attention_heads"], n_kv_heads=d["num_key_value_heads"],
                   head_dim=d.get("head_dim", d["hidden_size"] // d["num_attention_heads"]),
                   ffn_dim=d["intermediate_size"], rope_theta=float(theta), norm_eps=d["rms_norm_eps"],
                   max_seq_len=d["max_position_embeddings"], tie_embeddings=d.get("tie_word_embeddings", False),
                   bos_id=d.get("bos_token_id", 1), eos_id=d.get("eos_token_id", 2))

    def n_params(self):
        per_layer = (self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
                     + 3 * self.dim * self.ffn_dim + 2 * self.dim)
        emb = self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return self.n_layers * per_layer + emb + self.dim


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rope_cos_sin(pos, head_dim, theta, dtype):
    """pos: [..., T] integer positions -> cos, sin [..., T, head_dim] (HF default rope)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    f = pos.to(torch.float32)[..., None] * inv
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def attention(q, k, v, causal, mask=None):
    """q [B,H,T,D], k/v [B,H,S,D] (already repeated for GQA)."""
    if _HAS_SDPA:
        if mask is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    elif causal:
        T, S = q.shape[-2], k.shape[-2]
        cm = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        s = s.masked_fill(~cm, float("-inf"))
    return (s.softmax(-1) @ v.float()).to(q.dtype)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None, capture=None):
        c = self.c
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B or 1, 1, T, D]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if capture is not None and layer in capture["layers"]:
            capture[layer] = (q.detach(), k.detach(), v.detach())
        causal = True
        if cache is not None:
            k, v = cache.update(layer, k, v)
            causal = cache.causal_now
        r = c.n_heads // c.n_kv_heads
        if r > 1:
            k = k.repeat_interleave(r, dim=1)
            v = v.repeat_interleave(r, dim=1)
        y = attention(q, k, v, causal, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, c.n_heads * c.head_dim))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.up_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.down_proj = nn.Linear(c.ffn_dim, c.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)

    def forward(self, x, cos, sin, **kw):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, **kw)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.n_layers)])
        self.norm = RMSNorm(c.dim, c.norm_eps)


class KVCache:
    """Preallocated per-layer K/V [B, Hkv, S, D]. Prefill writes [0, T); decode writes column `pos`."""

    def __init__(self, c, B, S, device, dtype):
        self.k = [torch.zeros(B, c.n_kv_heads, S, c.head_dim, device=device, dtype=dtype) for _ in range(c.n_layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.pos = 0
        self.causal_now = True

    def update(self, layer, k, v):
        T = k.shape[2]
        self.k[layer][:, :, self.pos:self.pos + T] = k
        self.v[layer][:, :, self.pos:self.pos + T] = v
        return self.k[layer][:, :, :self.pos + T], self.v[layer][:, :, :self.pos + T]


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Body(c)
        if not c.tie_embeddings:
            self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.apply(self._init)
        for n, p in self.named_parameters():  # scaled init of residual outputs
            if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.c.tie_embeddings else self.lm_head.weight

    def hidden(self, idx, pos=None, cache=None, mask=None, capture=None):
        """Final-norm hidden states [B, T, dim]. pos: [B, T] or [T] rope positions (default 0..T-1)."""
        B, T = idx.shape
        x = self.model.embed_tokens(idx)
        if pos is None:
            pos = torch.arange(T, device=idx.device)[None]
        cos, sin = rope_cos_sin(pos, self.c.head_dim, self.c.rope_theta, x.dtype)
        for i, blk in enumerate(self.model.layers):
            x = blk(x, cos, sin, cache=cache, layer=i, mask=mask, capture=capture)
        if cache is not None:
            cache.pos += T
        return self.model.norm(x)

    def logits(self, h):
        return F.linear(h, self.head_weight())

    def forward(self, idx, **kw):
        return self.logits(self.hidden(idx, **kw))


# ------------------------------------------------------------------------------------------- files
def save_hf(model, out_dir, dtype=torch.bfloat16, extra_meta=None):
    from st import save_file
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().to(dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": "pt"}
    if extra_meta:
        meta.update({k: str(v) for k, v in extra_meta.items()})
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata=meta)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.c.hf_config(), f, indent=2)


def load_hf(model_dir, device="cpu", dtype=torch.float32):
    from st import load_file
    with open(os.path.join(model_dir, "config.json")) as f:
        c = Config.from_hf(json.load(f))
    m = Llama(c)
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    if c.tie_embeddings:
        sd.pop("lm_head.weight", None)
    m.load_state_dict(sd, strict=True)
    return m.to(device=device, dtype=dtype).eval()


def config_dict(c):
    return asdict(c)
