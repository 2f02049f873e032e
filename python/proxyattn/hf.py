"""Hugging Face transformers integration: attn_implementation="proxyattn".

    import proxyattn.hf
    proxyattn.hf.register(gamma=0.9, min_budget_tokens=1024)        # defaults for every model
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="proxyattn",
                                                 dtype=torch.bfloat16, device_map="cuda")
    model.config.proxyattn = {"dense_layers": [0, 1], "layers": {"7": {"gamma": 0.99}}}

Prefill (q_len == kv_len > 1) runs ProxyAttn through torch.ops.proxyattn.prefill; decode and
chunked prefill (q_len == 1 or q_len != kv_len) run SDPA, dense, as the paper does. A padded batch
(left or right padding: a mask that is causal among each row's valid tokens) is unpadded to packed
sequences with cu_seqlens, and the padded positions get zeros. Calls ProxyAttn can't serve (other
masks, dropout, softcap, attention sinks, a dtype or head_dim without kernels, ...) fall back to
SDPA with one warning per reason.

Settings, later ones winning: SPEC.md defaults < register(**kwargs) < the model config's
`proxyattn` entry (a dict or a proxyattn.Config) < its per-layer overrides. Besides the Config
fields, an entry may hold `dense_layers` (layer indices that run SDPA) and `layers`, a dict from
layer index (int or str, as JSON stores it) to overrides, or a list indexed by layer; a layer's
overrides may say {"dense": True}. The softmax scale is always the model's own `scaling`. Resolved
settings are cached per attention module; call clear_cache() after editing an entry in place
(assigning a new dict needs nothing).
"""
import warnings

from .config import FIELDS, Config, resolve_config

__all__ = ["register", "attention_forward", "layer_settings", "clear_cache"]

EXTRA_KEYS = ("layers", "dense_layers", "dense")

_defaults = {}  # registered name -> register() kwargs
_cache = {}  # (name, id(module)) -> (id(config entry), dense, Config, Config.key())
_warned = set()
_cu_cache = {}
_sdpa = None


def _as_dict(entry):
    if entry is None:
        return {}
    if isinstance(entry, Config):
        return entry.to_dict()
    if isinstance(entry, dict):
        return dict(entry)
    to_dict = getattr(entry, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise TypeError(f"proxyattn settings must be a dict or a proxyattn.Config, got "
                    f"{type(entry).__name__}")


def _layer_table(layers):
    if layers is None:
        return {}
    if isinstance(layers, (list, tuple)):
        return {i: dict(v) for i, v in enumerate(layers) if v}
    return {int(i): dict(v) for i, v in dict(layers).items() if v}


def layer_settings(layer_idx, *sources):
    """(dense, Config) for one layer from setting dicts, later sources winning.

    Each source holds Config fields and optionally `dense_layers`, `dense` and `layers`
    (per-layer overrides, which may hold `dense`). Raises proxyattn.Error on unknown fields or
    out-of-range values.
    """
    merged, layers, dense_layers, dense = {}, {}, set(), False
    for source in sources:
        src = _as_dict(source)
        for i, over in _layer_table(src.pop("layers", None)).items():
            layers.setdefault(i, {}).update(over)
        if "dense_layers" in src:
            dense_layers = {int(i) for i in (src.pop("dense_layers") or ())}
        if "dense" in src:
            dense = bool(src.pop("dense"))
        merged.update(src)
    over = dict(layers.get(int(layer_idx), {})) if layer_idx is not None else {}
    dense = bool(over.pop("dense", dense)) or (layer_idx is not None and int(layer_idx) in
                                                 dense_layers)
    merged.update(over)
    config = resolve_config(merged)
    config.validate()
    return dense, config


def clear_cache():
    """Forget resolved per-layer settings (after editing a config entry in place)."""
    _cache.clear()


def _warn_once(reason):
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"proxyattn: falling back to SDPA for {reason}", RuntimeWarning,
                      stacklevel=3)


def _settings(name, module):
    model_config = getattr(module, "config", None)
    entry = getattr(model_config, "proxyattn", None)
    cached = _cache.get((name, id(module)))
    if cached is not None and cached[0] == id(entry):
        return cached[1:]
    dense, config = layer_settings(getattr(module, "layer_idx", None), _defaults.get(name), entry)
    _cache[(name, id(module))] = (id(entry), dense, config, config.key())
    return dense, config, config.key()


def _cu_seqlens(batch, seq_len):
    cu = _cu_cache.get((batch, seq_len))
    if cu is None:
        import torch
        cu = torch.arange(0, (batch + 1) * seq_len, seq_len, dtype=torch.int32)
        _cu_cache[(batch, seq_len)] = cu
    return cu


_PAD_CHECK_ROWS = 1024  # mask rows compared at a time, bounding the check's memory


def _padding_layout(attention_mask, batch, seq_len):
    """valid [batch, seq_len] bool when attention_mask is causal among each row's valid tokens
    (what transformers builds for left or right padding), else None.

    attention_mask: [batch or 1, 1, seq_len, seq_len], bool (True = attend) or additive float
    (0 = attend). A row's valid keys are those its last query attends; every valid query t must
    then attend exactly the valid keys u <= t, and a padded query may attend valid keys only (or
    every key, as some torch versions need for fully masked rows). Anything else, such as two
    documents packed in one row, is not padding.
    """
    import torch
    m = attention_mask
    if m.dim() != 4 or m.shape[0] not in (1, batch) or m.shape[1] != 1 or \
            tuple(m.shape[2:]) != (seq_len, seq_len):
        return None
    keep = (m if m.dtype == torch.bool else m == 0)[:, 0].expand(batch, seq_len, seq_len)
    valid = keep[:, -1, :]
    cols = torch.arange(seq_len, device=m.device)
    for r0 in range(0, seq_len, _PAD_CHECK_ROWS):
        r1 = min(seq_len, r0 + _PAD_CHECK_ROWS)
        want = valid[:, None, :] & (cols[None, None, :] <= cols[r0:r1, None])
        rows = keep[:, r0:r1, :]
        wrong_valid = ((rows != want) & valid[:, r0:r1, None]).any()
        reads_padding = (rows & ~valid[:, None, :]).any(dim=-1) & ~rows.all(dim=-1)
        wrong_padded = (reads_padding & ~valid[:, r0:r1]).any()
        if bool(wrong_valid) or bool(wrong_padded):
            return None
    return valid


def _unsupported(module, query, key, value, attention_mask, dropout, is_causal, kwargs, config):
    """The reason ProxyAttn can't serve this prefill call, or None. attention_mask is None here
    or was found to be causal padding."""
    from .api import is_supported
    if is_causal is False or (is_causal is None and not getattr(module, "is_causal", True)):
        return "non-causal attention"
    if dropout and getattr(module, "training", False):
        return "attention dropout in training"
    if kwargs.get("output_attentions"):
        return "output_attentions=True"
    for name in ("softcap", "s_aux", "sinks", "sliding_window"):
        if kwargs.get(name) is not None:
            return f"attention with {name}"
    head_dim = query.shape[-1]
    if key.shape[-1] != head_dim or value.shape[-1] != head_dim:
        return "different query, key and value head dims"
    if key.dtype != query.dtype or value.dtype != query.dtype:
        return "mixed dtypes"
    if not is_supported(query.dtype, head_dim, query.device):
        return f"{query.dtype} with head_dim {head_dim} on {query.device.type} (no kernel)"
    num_qo_heads, num_kv_heads = query.shape[1], key.shape[1]
    if num_qo_heads % num_kv_heads != 0:
        return f"{num_qo_heads} query heads over {num_kv_heads} KV heads"
    if num_kv_heads % config.num_proxy_heads != 0:
        return f"num_proxy_heads = {config.num_proxy_heads} not dividing {num_kv_heads} KV heads"
    return None


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      is_causal=None, _name="proxyattn", **kwargs):
    """transformers' attention signature: query [B, H, S, D], key/value [B, Hkv, S_kv, D]
    -> (out [B, S, H, D], None)."""
    from . import torch_ops

    def sdpa(reason=None):
        if reason is not None:
            _warn_once(reason)
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                     is_causal=is_causal, **kwargs)

    batch, num_qo_heads, q_len, head_dim = query.shape
    kv_len = key.shape[2]
    if q_len == 1 or q_len != kv_len:
        return sdpa()  # decode or chunked prefill: dense, by design
    dense, config, args = _settings(_name, module)
    if dense:
        return sdpa()
    valid = None
    if attention_mask is not None:
        valid = _padding_layout(attention_mask, batch, q_len)
        if valid is None:
            return sdpa("calls with an attention mask other than causal padding (packed "
                        "sequences, sliding window or custom)")
    reason = _unsupported(module, query, key, value, None, dropout, is_causal, kwargs, config)
    if reason is not None:
        return sdpa(reason)
    if scaling is not None:
        args = args[:11] + (float(scaling),)
    num_kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(batch * q_len, num_qo_heads, head_dim)
    k = key.transpose(1, 2).reshape(batch * q_len, num_kv_heads, head_dim)
    v = value.transpose(1, 2).reshape(batch * q_len, num_kv_heads, head_dim)
    if valid is None or bool(valid.all()):
        cu = None if batch == 1 else _cu_seqlens(batch, q_len)
        out, _ = torch_ops._run_prefill(q, k, v, cu, args, False)
        return out.view(batch, q_len, num_qo_heads, head_dim), None
    # Padded batch: pack each row's valid tokens (in order) as one sequence of a varlen batch.
    import torch
    index = valid.reshape(-1).nonzero().squeeze(1)  # [packed tokens]
    lengths = valid.sum(dim=1).to(device="cpu", dtype=torch.int32)
    cu = torch.zeros(batch + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, dim=0)
    packed, _ = torch_ops._run_prefill(q.index_select(0, index).contiguous(),
                                       k.index_select(0, index).contiguous(),
                                       v.index_select(0, index).contiguous(), cu, args, False)
    out = q.new_zeros(batch * q_len, num_qo_heads, head_dim)
    out.index_copy_(0, index, packed)
    return out.view(batch, q_len, num_qo_heads, head_dim), None


def register(name="proxyattn", **settings):
    """Adds `name` to transformers' AttentionInterface (and its mask interface, so that padding
    masks reach us: causal padding is unpadded to cu_seqlens, other masks go to SDPA).
    settings: Config fields, `dense_layers` and
    `layers`, the defaults for every model using `name`. Returns name."""
    global _sdpa
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    unknown = sorted(set(settings) - set(FIELDS) - set(EXTRA_KEYS))
    if unknown:
        from ._core import Error
        raise Error(f"proxyattn: unknown setting(s) {', '.join(unknown)}, expected Config fields, "
                    f"dense_layers or layers")
    layer_settings(None, settings)  # validates, and each per-layer override too
    for i in _layer_table(settings.get("layers")):
        layer_settings(i, settings)
    _sdpa = sdpa_attention_forward
    _defaults[name] = dict(settings)
    clear_cache()

    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                is_causal=None, **kwargs):
        return attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                 scaling=scaling, is_causal=is_causal, _name=name, **kwargs)

    forward.__name__ = f"{name}_attention_forward"
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name
