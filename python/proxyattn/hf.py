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

Settings, later ones winning: docs/SPEC.md defaults < register(**kwargs) < the model config's
`proxyattn` entry (a dict or a proxyattn.Config) < its per-layer overrides. Besides the Config
fields, an entry may hold `dense_layers` (layer indices that run SDPA) and `layers`, a dict from
layer index (int or str, as JSON stores it) to overrides, or a list indexed by layer; a layer's
overrides may say {"dense": True}. The softmax scale is always the model's own `scaling`. Resolved
settings are cached per attention module; call clear_cache() after editing an entry in place
(assigning a new dict needs nothing).

Tensor parallelism (`from_pretrained(..., tp_plan="auto")`, or `distributed_config=
DistributedConfig(tp_size=N)` where transformers replaced that keyword, launched with torchrun):
each rank's attention sees its own num_heads / TP query heads and num_kv_heads / TP KV heads, and
the settings are resolved from those local counts. num_proxy_heads g stays the model-wide value:
each rank runs g / TP proxies, so g must be a multiple of TP (else a proxy group would cross ranks)
and the KV heads must split evenly; otherwise the first prefill raises proxyattn.Error. Ranks don't
communicate for attention. `record_density()` collects plan statistics; its summary() reduces them
over the ranks (an all_reduce on every rank). shard_settings() is the per-rank resolution itself.
"""
import collections
import warnings
import weakref
from typing import Any, Callable, NamedTuple

from .config import FIELDS, Config, config_text, resolve_config

__all__ = ["register", "attention_forward", "layer_settings", "clear_cache", "shard_settings",
           "tp_degree", "TPShard", "record_density", "DensityRecord", "summarize_density",
           "tp_pretrained_kwargs", "set_attention"]

EXTRA_KEYS = ("layers", "dense_layers", "dense")

_defaults = {}  # registered name -> register() kwargs
_cache = {}  # (name, id(module)) -> _Resolved
_warned = set()
_cu_cache = {}
_sdpa = None


class _Resolved(NamedTuple):
    """One attention module's resolved settings, as _settings caches them."""
    module: Callable  # weak reference to the module
    entry: Any  # the config entry they were resolved from (held: identity is the cache key)
    dense: bool
    config: Config  # per rank under TP
    args: tuple  # the op's config arguments


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


def _settings(name, module, num_qo_heads=None, num_kv_heads=None):
    model_config = getattr(module, "config", None)
    entry = getattr(model_config, "proxyattn", None)
    cached = _cache.get((name, id(module)))
    # ids are reused once an object dies: the entry must be the very module (a weak reference) and
    # the very config entry (held) that the settings were resolved for.
    if cached is not None and cached.module() is module and cached.entry is entry:
        return cached.dense, cached.config, cached.args
    dense, config = layer_settings(getattr(module, "layer_idx", None), _defaults.get(name), entry)
    config = _local_config(module, config, num_qo_heads, num_kv_heads)  # per rank under TP
    args = (config_text(config.key()),)  # torch_ops.config_args(config)
    _cache[(name, id(module))] = _Resolved(_ref(module), entry, dense, config, args)
    return dense, config, args


def _ref(obj):
    """A weak reference to obj, or a callable returning it where obj takes none."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


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
    -> (out [B, S, H, D], None). Under tensor parallelism H and Hkv are this rank's heads."""

    def sdpa(reason=None):
        if reason is not None:
            _warn_once(reason)
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                     is_causal=is_causal, **kwargs)

    batch, num_qo_heads, q_len, head_dim = query.shape
    kv_len = key.shape[2]
    if q_len == 1 or q_len != kv_len:
        return sdpa()  # decode or chunked prefill: dense, by design
    dense, config, args = _settings(_name, module, num_qo_heads, key.shape[1])
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
        args = (config_text(config.replace(scale=float(scaling)).key()),)
    q, k, v, cu, index = _pack(query, key, value, valid)
    return _unpack(_run_prefill(module, q, k, v, cu, args, config, scaling), index, batch,
                   q_len), None


def _pack(query, key, value, valid):
    """query [B, H, S, D], key/value [B, Hkv, S, D] and valid [B, S] (None: nothing padded) ->
    q [T, H, D], k, v [T, Hkv, D] of the valid tokens, each row one sequence of a varlen batch;
    cu_seqlens (an int32 CPU tensor, None for a single unpadded row); and the index of the valid
    tokens in the padded layout (None when nothing is padded)."""
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(batch * seq, heads, dim)
    k = key.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    v = value.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    if valid is None or bool(valid.all()):
        return q, k, v, (None if batch == 1 else _cu_seqlens(batch, seq)), None
    import torch
    index = valid.reshape(-1).nonzero().squeeze(1)  # [packed tokens]
    lengths = valid.sum(dim=1).to(device="cpu", dtype=torch.int32)
    cu = torch.zeros(batch + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, dim=0)
    pick = (lambda t: t.index_select(0, index).contiguous())
    return pick(q), pick(k), pick(v), cu, index


def _unpack(out, index, batch, seq):
    """out [T, H, D] of _pack's tokens -> [B, S, H, D], zeros at the padded positions."""
    heads, dim = out.shape[1], out.shape[2]
    if index is None:
        return out.view(batch, seq, heads, dim)
    full = out.new_zeros(batch * seq, heads, dim)
    full.index_copy_(0, index, out)
    return full.view(batch, seq, heads, dim)


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


# --- Tensor parallelism --------------------------------------------------------------------------
# Head-sharded tensor parallelism (transformers' tp_plan="auto" or DistributedConfig(tp_size=N),
# launched with torchrun): the q/k/v projections are split by columns, so rank r of TP holds query
# heads [r*H/TP, (r+1)*H/TP) and KV heads [r*Hkv/TP, (r+1)*Hkv/TP), and the attention function sees
# those local heads only. Proxy group j holds KV heads [j*Hkv/g, (j+1)*Hkv/g) (docs/SPEC.md section
# 3, stage 1), so when TP divides g every group lies on one rank: rank r runs g/TP proxies over its
# own heads and its plan is exactly the matching slice of the 1-rank plan, with no communication.

TPShard = collections.namedtuple(
    "TPShard", "world_size rank num_qo_heads num_kv_heads num_proxy_heads qo_heads kv_heads "
    "proxy_heads")
TPShard.__doc__ = """What one tensor-parallel rank holds: its local head counts and the global
index ranges [start, stop) of its query heads, KV heads and proxy groups."""


def _error(message):
    from ._core import Error
    return Error(f"proxyattn: {message}")


def tp_pretrained_kwargs(tp_size):
    """from_pretrained keywords for tensor parallelism over tp_size ranks: distributed_config=
    DistributedConfig(tp_size=N) where transformers has it, else tp_plan="auto" (4.5x, early
    5.x)."""
    import inspect
    config_cls = None
    try:
        from transformers import DistributedConfig as config_cls
    except ImportError:
        try:
            from transformers.distributed import DistributedConfig as config_cls
        except ImportError:
            pass
    if config_cls is not None:
        try:
            params = inspect.signature(config_cls).parameters
        except (TypeError, ValueError):
            params = {}
        if "tp_size" in params:
            return {"distributed_config": config_cls(tp_size=tp_size)}
    return {"tp_plan": "auto"}


def set_attention(model, name):
    """Switches a loaded transformers model to the attention implementation `name`."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name


def tp_degree(num_heads, num_kv_heads, local_heads, local_kv_heads):
    """The tensor-parallel degree implied by an attention call's local head counts (1 when the
    call sees every head). Plain Python.

    Raises proxyattn.Error when the local counts are not an even split of the model's heads, e.g.
    KV heads that don't divide over the ranks.
    """
    num_heads, num_kv_heads = int(num_heads), int(num_kv_heads)
    local_heads, local_kv_heads = int(local_heads), int(local_kv_heads)
    if local_heads == num_heads and local_kv_heads == num_kv_heads:
        return 1
    if local_heads < 1 or num_heads % local_heads != 0:
        raise _error(f"this rank holds {local_heads} of the model's {num_heads} query heads, "
                     "not an even split over tensor-parallel ranks")
    tp = num_heads // local_heads
    if num_kv_heads % tp != 0 or local_kv_heads * tp != num_kv_heads:
        raise _error(f"KV heads don't split evenly over {tp} tensor-parallel ranks: this rank "
                     f"holds {local_kv_heads} of the model's {num_kv_heads} KV heads and "
                     f"{local_heads} of its {num_heads} query heads; expected "
                     f"{num_kv_heads / tp:g}")
    return tp


def shard_settings(num_heads, num_kv_heads, num_proxy_heads, world_size, rank=0):
    """Per-rank settings under head-sharded tensor parallelism -> TPShard. Plain Python.

    num_heads, num_kv_heads: the model's (global) query and KV heads; num_proxy_heads: the global
    g of the settings; world_size: the tensor-parallel degree TP; rank: this rank in the TP group.
    Each rank holds num_heads/TP query heads, num_kv_heads/TP KV heads and runs g/TP proxies.
    Raises proxyattn.Error naming the value when heads or KV heads don't split evenly, or when g is
    not a multiple of TP (a proxy group would cross ranks).
    """
    values = dict(num_heads=num_heads, num_kv_heads=num_kv_heads, num_proxy_heads=num_proxy_heads,
                  world_size=world_size)
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise _error(f"{name} = {value!r}, expected a positive integer")
    heads, kv, g, tp = (int(v) for v in values.values())
    if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < tp:
        raise _error(f"rank = {rank!r}, expected 0 <= rank < world_size = {tp}")
    rank = int(rank)
    if heads % kv != 0:
        raise _error(f"num_heads = {heads} is not a multiple of num_kv_heads = {kv}")
    if kv % g != 0:
        raise _error(f"config.num_proxy_heads = {g} does not divide the model's {kv} KV heads")
    if heads % tp != 0:
        raise _error(f"the model's {heads} query heads don't split evenly over {tp} "
                     "tensor-parallel ranks")
    if kv % tp != 0:
        raise _error(f"KV heads don't split evenly: the model's {kv} KV heads over {tp} "
                     "tensor-parallel ranks; each rank must hold whole KV heads (use a "
                     f"tensor-parallel degree dividing {kv})")
    if g % tp != 0:
        per, kl = kv // g, kv // tp
        j = next(j for j in range(g) if (j * per) // kl != ((j + 1) * per - 1) // kl)
        valid = [m for m in range(tp, kv + 1, tp) if kv % m == 0]
        raise _error(f"config.num_proxy_heads = {g} is not a multiple of the tensor-parallel "
                     f"degree {tp}: proxy group {j} (KV heads {j * per}-{(j + 1) * per - 1}) would "
                     f"cross ranks {(j * per) // kl}-{((j + 1) * per - 1) // kl}. Use "
                     f"num_proxy_heads = {' or '.join(str(m) for m in valid)} ({tp} = one proxy "
                     "per rank)")
    hl, kl, gl = heads // tp, kv // tp, g // tp
    return TPShard(tp, rank, hl, kl, gl, (rank * hl, (rank + 1) * hl), (rank * kl, (rank + 1) * kl),
                   (rank * gl, (rank + 1) * gl))


def _distributed_world():
    """torch.distributed's world size (1 when it is not initialized)."""
    import torch
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def _model_heads(module):
    """(num_heads, num_kv_heads) of the module's model config, or None."""
    model_config = getattr(module, "config", None)
    heads = getattr(model_config, "num_attention_heads", None)
    if not isinstance(heads, int):
        return None
    kv = getattr(model_config, "num_key_value_heads", None)
    return heads, kv if isinstance(kv, int) and kv > 0 else heads


def _module_tp(module, num_qo_heads, num_kv_heads):
    """The tensor-parallel degree of this attention call: the model's heads over the local ones,
    considered only when torch.distributed runs more than one process."""
    if num_qo_heads is None or _distributed_world() == 1:
        return 1
    heads = _model_heads(module)
    if heads is None:
        return 1
    return tp_degree(heads[0], heads[1], num_qo_heads, num_kv_heads)


def _local_config(module, config, num_qo_heads, num_kv_heads):
    """config with num_proxy_heads made per-rank (g / TP) under tensor parallelism."""
    tp = _module_tp(module, num_qo_heads, num_kv_heads)
    if tp == 1:
        return config
    heads, kv = _model_heads(module)
    shard = shard_settings(heads, kv, config.num_proxy_heads, tp)
    return config.replace(num_proxy_heads=shard.num_proxy_heads)


# --- Density statistics --------------------------------------------------------------------------

_recorders = []


def place_heads(local, rank, world_size):
    """A [batch, local_heads] table written into rank's slice of a zero [batch, local_heads *
    world_size] table (global head order). Summing every rank's result gives the global table."""
    import numpy as np
    local = np.asarray(local, dtype=np.float64)
    batch, hl = local.shape
    full = np.zeros((batch, hl * int(world_size)), dtype=np.float64)
    full[:, int(rank) * hl:(int(rank) + 1) * hl] = local
    return full


def weighted_density(density, causal_blocks):
    """The realized density (docs/SPEC.md section 4): per-(sequence, head) densities [batch, heads]
    averaged with weights causal_blocks [batch] = nb * (nb + 1) / 2 of each sequence."""
    import numpy as np
    density = np.asarray(density, dtype=np.float64)
    w = np.broadcast_to(np.asarray(causal_blocks, dtype=np.float64)[:, None], density.shape)
    total = float(w.sum())
    return float((density * w).sum() / total) if total > 0 else float("nan")


def summarize_density(calls):
    """{"density_weighted", "layers": {layer: density}, "heads": {layer: [per head]}, "calls"} from
    records with global head tables (DensityRecord.reduce()). Plain Python and numpy."""
    import numpy as np
    layers, heads, everything = {}, {}, []
    for call in calls:
        layers.setdefault(call["layer"], []).append(call)
    for layer, items in layers.items():
        d = np.concatenate([c["density"] for c in items], axis=0)
        w = np.concatenate([c["causal_blocks"] for c in items])
        everything.append((d, w))
        layers[layer] = weighted_density(d, w)
        heads[layer] = [weighted_density(d[:, h:h + 1], w) for h in range(d.shape[1])]
    if everything:
        num = sum(float((d * w[:, None]).sum()) for d, w in everything)
        den = sum(float(w.sum()) * d.shape[1] for d, w in everything)
        total = num / den if den > 0 else float("nan")
    else:
        total = float("nan")
    return {"density_weighted": total, "layers": layers, "heads": heads, "calls": len(calls)}


class DensityRecord:
    """Plan statistics of the ProxyAttn prefills run while recording (record_density()).

    Each call keeps its layer, its tensor-parallel degree and its local per-(sequence, head)
    densities. reduce() and summary() put every rank's heads together in global head order with
    one all_reduce over the tensor-parallel group: under tensor parallelism call them on every
    rank, after the same forward calls (they are collectives). Without it they communicate nothing.
    """

    def __init__(self):
        self.calls = []

    def add(self, layer_idx, tp, plan):
        import numpy as np
        stats = plan.stats()  # synchronizes on CUDA
        nb = np.asarray(plan.num_blocks, dtype=np.float64)
        density = np.asarray(stats.density, dtype=np.float64).reshape(len(nb), -1)
        self.calls.append({"layer": layer_idx, "tp": int(tp), "density": density,
                           "causal_blocks": nb * (nb + 1) / 2})

    def reduce(self, group=None):
        """The calls with density tables over every rank's heads, [batch, global heads]."""
        import numpy as np
        degrees = {c["tp"] for c in self.calls}
        if not self.calls or degrees == {1}:
            return [dict(c) for c in self.calls]
        if len(degrees) > 1:
            raise _error(f"recorded calls mix tensor-parallel degrees {sorted(degrees)}")
        tp = degrees.pop()
        import torch
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise _error("calls were recorded under tensor parallelism, but torch.distributed is "
                         "not initialized")
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        if world != tp:
            raise _error(f"the calls ran on {tp} tensor-parallel ranks but the group has {world}; "
                         "pass group= (the tensor-parallel process group)")
        device = torch.device("cpu")
        if dist.get_backend(group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        tables = [place_heads(c["density"], rank, tp) for c in self.calls]
        layout = torch.tensor([len(tables), sum(t.size for t in tables)], dtype=torch.int64,
                              device=device)
        low, high = layout.clone(), layout.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=group)
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=group)
        if not (torch.equal(low, layout) and torch.equal(high, layout)):
            raise _error("ranks recorded different calls; record the same forward on every rank")
        flat = torch.from_numpy(np.concatenate([t.ravel() for t in tables])).to(device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat = flat.cpu().numpy()
        out, start = [], 0
        for call, table in zip(self.calls, tables):
            merged = dict(call)
            merged["density"] = flat[start:start + table.size].reshape(table.shape)
            start += table.size
            out.append(merged)
        return out

    def summary(self, group=None):
        """summarize_density(self.reduce(group)): the realized density over every head, per
        layer and per head (global head order)."""
        return summarize_density(self.reduce(group))


class record_density:
    """Context manager recording plan statistics of every ProxyAttn prefill inside it:

        with proxyattn.hf.record_density() as rec:
            model(ids)
        rec.summary()   # {"density_weighted", "layers", "heads", "calls"}; on every TP rank

    Recorded calls run through proxyattn.prefill(..., return_plan=True) (eager, and reading the
    statistics synchronizes), so keep it out of timed and compiled regions.
    """

    def __enter__(self):
        self.record = DensityRecord()
        _recorders.append(self.record)
        return self.record

    def __exit__(self, *exc):
        _recorders.remove(self.record)
        return False


def _run_prefill(module, q, k, v, cu, args, config, scaling):
    """out of ProxyAttn prefill: the custom op, or the plan-returning path while recording."""
    from . import torch_ops
    if not _recorders:
        return torch_ops._run_prefill(q, k, v, cu, args, False)[0]
    from .api import prefill
    cfg = config if scaling is None else config.replace(scale=float(scaling))
    cu_list = None if cu is None else [int(x) for x in cu.tolist()]
    out, plan = prefill(q, k, v, cu_list, cfg, return_plan=True)
    tp = _module_tp(module, q.shape[1], k.shape[1])
    for record in _recorders:
        record.add(getattr(module, "layer_idx", None), tp, plan)
    return out
