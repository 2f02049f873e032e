"""proxyattn: ProxyAttn sparse attention for long-context prefill (arXiv 2509.24745).

numpy arrays (CPU) and torch tensors (CPU, CUDA) go in zero copy through DLPack; outputs come back
in the inputs' array type:

    import proxyattn
    out = proxyattn.prefill(q, k, v, gamma=0.9, min_budget_tokens=1024)   # [tokens, heads, dim]
    out, plan = proxyattn.prefill(q, k, v, return_plan=True)
    plan.stats().density_weighted
    ref = proxyattn.dense(q, k, v)

With torch installed, torch.ops.proxyattn.{prefill,dense} are registered (proxyattn.torch_ops),
and proxyattn.hf.register() adds attn_implementation="proxyattn" to transformers.
Every argument error raises proxyattn.Error (a ValueError) with the library's message.
"""
import importlib.util
import os

from . import _core
from ._arrays import BF16Array, as_bf16, bf16_to_float32
from ._core import Error, __version__
from .api import (Plan, PlanStats, allocate_workspace, attend, dense, is_supported, plan, prefill,
                  workspace_size)
from .config import Config

__all__ = ["Error", "Config", "Plan", "PlanStats", "workspace_size", "allocate_workspace", "plan",
           "attend", "prefill", "dense", "is_supported", "cuda_available", "with_cuda",
           "BF16Array", "as_bf16", "bf16_to_float32", "__version__"]

with_cuda = _core.with_cuda  # whether this build compiled the CUDA backend


def cuda_available():
    """Whether this build has the CUDA backend and sees a device."""
    return _core.cuda_available()


# The torch face registers torch.ops.proxyattn.* at import when torch is installed, so
# torch.compile finds the ops. PROXYATTN_NO_TORCH=1 skips it.
# A torch that fails to import leaves the numpy face working.
def _load_torch_face():
    if os.environ.get("PROXYATTN_NO_TORCH", "0") not in ("", "0"):
        return None
    try:
        if importlib.util.find_spec("torch") is None:
            return None
        from . import torch_ops  # sets proxyattn.torch_ops
    except (ImportError, OSError, ValueError):
        return None
    return torch_ops


_load_torch_face()
