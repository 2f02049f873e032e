"""The torch face: torch.ops.proxyattn.prefill and torch.ops.proxyattn.dense.

Pure Python over the DLPack core (no C++ file includes torch). Each op is a
torch.library.custom_op with a register_fake, so torch.compile traces through it and CUDA graphs
capture it: torch allocates the output and the workspace (from its caching allocator, on the
current stream), the plan is rebuilt every call since it depends on the data, and nothing else is
allocated. The kernels run on torch's current CUDA stream.

    out = proxyattn.torch_ops.prefill(q, k, v, cu_seqlens=None, config=None, gamma=0.9)
    out, lse = proxyattn.torch_ops.dense(q, k, v, return_lse=True)

q [tokens, num_qo_heads, head_dim]; k, v [tokens, num_kv_heads, head_dim]; cu_seqlens a host
int32 tensor [batch + 1] or None (one sequence). On torch older than 2.4 (no custom_op) the same
functions run eagerly without registering ops.
"""
import functools
from typing import Optional, Tuple

import torch

from . import _arrays as A
from . import _core
from .config import Config, config_text, core_config_from_text, resolve_config

__all__ = ["prefill", "dense", "HAVE_CUSTOM_OP", "config_args"]

HAVE_CUSTOM_OP = hasattr(torch, "library") and hasattr(torch.library, "custom_op")


@functools.lru_cache(maxsize=1024)
def _workspace_bytes(total, heads, kv_heads, head_dim, cu_key, config):
    cu = None if cu_key is None else list(cu_key)
    return _core.workspace_size_for_shape(total, heads, kv_heads, head_dim, cu,
                                          core_config_from_text(config))


def _cu_host(cu_seqlens):
    """cu_seqlens -> (tuple for caching, or None). A CUDA tensor is copied to the host (a sync).
    The rules are the numpy face's (A.host_cu_seqlens): 1-D integers in [0, 2^31), >= 2 entries."""
    if cu_seqlens is None:
        return None
    return tuple(int(x) for x in A.host_cu_seqlens(cu_seqlens))


def _stream(q):
    return torch.cuda.current_stream(q.device).cuda_stream if q.is_cuda else 0


def _prefill_impl(q, k, v, cu_seqlens, config, return_lse):
    cu = _cu_host(cu_seqlens)
    total, heads, head_dim = A.check_rank(q, "q")
    nbytes = _workspace_bytes(total, heads, A.check_rank(k, "k")[1], head_dim, cu, config)
    workspace = A.workspace(q, nbytes)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total) if return_lse else (0,), dtype=torch.float32, device=q.device)
    _core.prefill(A.capsule(q, "q"), A.capsule(k, "k"), A.capsule(v, "v"),
                  None if cu is None else list(cu), core_config_from_text(config),
                  A.capsule(workspace, "workspace"), A.capsule(out, "out"),
                  A.capsule(lse, "lse") if return_lse else None, _stream(q), 0, False)
    return out, lse


def _dense_impl(q, k, v, cu_seqlens, scale, return_lse):
    cu = _cu_host(cu_seqlens)
    total, heads, _ = A.check_rank(q, "q")
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total) if return_lse else (0,), dtype=torch.float32, device=q.device)
    _core.dense(A.capsule(q, "q"), A.capsule(k, "k"), A.capsule(v, "v"),
                None if cu is None else list(cu), A.capsule(out, "out"),
                A.capsule(lse, "lse") if return_lse else None, float(scale), _stream(q), 0, False)
    return out, lse


def _fake_outputs(q, return_lse):
    out = q.new_empty(q.shape)
    lse = q.new_empty((q.shape[1], q.shape[0]) if return_lse else (0,), dtype=torch.float32)
    return out, lse


if HAVE_CUSTOM_OP:

    @torch.library.custom_op("proxyattn::prefill", mutates_args=())
    def _prefill_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    cu_seqlens: Optional[torch.Tensor], config: str,
                    return_lse: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        return _prefill_impl(q, k, v, cu_seqlens, config, return_lse)

    @_prefill_op.register_fake
    def _(q, k, v, cu_seqlens, config, return_lse):
        return _fake_outputs(q, return_lse)

    @torch.library.custom_op("proxyattn::dense", mutates_args=())
    def _dense_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  cu_seqlens: Optional[torch.Tensor], scale: float,
                  return_lse: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        return _dense_impl(q, k, v, cu_seqlens, scale, return_lse)

    @_dense_op.register_fake
    def _(q, k, v, cu_seqlens, scale, return_lse):
        return _fake_outputs(q, return_lse)

    def _run_prefill(q, k, v, cu_seqlens, key, return_lse):
        return torch.ops.proxyattn.prefill(q, k, v, cu_seqlens, *key, return_lse)

    def _run_dense(q, k, v, cu_seqlens, scale, return_lse):
        return torch.ops.proxyattn.dense(q, k, v, cu_seqlens, scale, return_lse)

else:

    def _run_prefill(q, k, v, cu_seqlens, key, return_lse):
        return _prefill_impl(q, k, v, cu_seqlens, *key, return_lse)

    def _run_dense(q, k, v, cu_seqlens, scale, return_lse):
        return _dense_impl(q, k, v, cu_seqlens, scale, return_lse)


def _cu_tensor(cu_seqlens):
    """cu_seqlens as the op takes it: None or an int32 tensor. Lists, tuples and arrays follow the
    numpy face's rules (1-D integers in [0, 2^31), >= 2 entries), never a silent truncation."""
    if cu_seqlens is None or (isinstance(cu_seqlens, torch.Tensor) and
                              cu_seqlens.dtype == torch.int32 and cu_seqlens.dim() == 1):
        return cu_seqlens
    return torch.from_numpy(A.host_cu_seqlens(cu_seqlens))


def config_args(config=None, **config_fields):
    """The op's config arguments, a 1-tuple (config_text(Config.key()),) from a Config, a dict or
    fields (the op takes the fields as one "name=text;..." string, so it follows the field table)."""
    if isinstance(config, tuple):
        return config
    cfg = config if isinstance(config, Config) and not config_fields else \
        resolve_config(config, **config_fields)
    # Checked before it becomes "name=text;..." text: a choice value holding ';' or '=' would
    # otherwise set other fields when the op parses the text back.
    cfg.to_core()
    return (config_text(cfg.key()),)


def prefill(q, k, v, cu_seqlens=None, config=None, *, return_lse=False, **config_fields):
    """torch.ops.proxyattn.prefill with a Config (or dict, or fields) -> out or (out, lse)."""
    key = config_args(config, **config_fields)
    for x, name in ((q, "q"), (k, "k"), (v, "v")):  # before the op (and its fake) index shapes
        A.check_rank(x, name)
    out, lse = _run_prefill(q, k, v, _cu_tensor(cu_seqlens), key, bool(return_lse))
    return (out, lse) if return_lse else out


def dense(q, k, v, cu_seqlens=None, *, scale=None, return_lse=False):
    """torch.ops.proxyattn.dense -> out or (out, lse)."""
    for x, name in ((q, "q"), (k, "k"), (v, "v")):
        A.check_rank(x, name)
    out, lse = _run_dense(q, k, v, _cu_tensor(cu_seqlens), A.scale_of(scale),
                          bool(return_lse))
    return (out, lse) if return_lse else out
