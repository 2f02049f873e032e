"""The array-agnostic face: numpy arrays (CPU) and torch tensors (CPU, CUDA), zero copy.

Operands follow docs/SPEC.md section 1: q [tokens, num_qo_heads, head_dim], k and v [tokens,
num_kv_heads, head_dim], packed sequences given by host cu_seqlens [batch + 1] (None = one
sequence), out like q, lse [num_qo_heads, tokens] float32. Outputs are returned in the inputs'
array type; omitted outputs and workspaces are allocated. CUDA work runs on `stream` (an int
handle or a torch.cuda.Stream), by default torch's current stream.
"""
import collections

import numpy as np

from . import _arrays as A
from . import _core
from .config import Config, resolve_config

__all__ = ["Plan", "PlanStats", "workspace_size", "plan", "attend", "prefill", "dense",
           "is_supported", "allocate_workspace"]

PlanStats = collections.namedtuple("PlanStats", "budgets density seq_density density_weighted")
PlanStats.__doc__ = """Plan statistics (docs/SPEC.md section 4): budgets [batch, heads] in blocks,
density [batch, heads], seq_density [batch] (mean over heads) and density_weighted (the realized
density: mean over (sequence, head) weighted by causal blocks)."""


def _torch_ops():
    from . import torch_ops  # noqa: PLC0415 (only with torch)
    return torch_ops


def _bf16(*arrays):
    return any(A.is_bf16_numpy(a) for a in arrays)


class Plan:
    """A block-sparse plan (docs/SPEC.md stage 6). It lives in its workspace, which it keeps alive.

    Reading stats or masks synchronizes on CUDA. A plan made by plan()/prefill() describes the
    data it was made from; reusing its workspace for another call overwrites it.
    """

    def __init__(self, core_plan, like=None):
        self._core = core_plan
        self._layout = core_plan.layout
        self._like = like

    # --- layout ---
    @property
    def workspace(self):
        return self._core.workspace

    @property
    def device(self):
        return self._core.device

    @property
    def batch(self):
        return self._layout["batch"]

    @property
    def num_qo_heads(self):
        return self._layout["num_qo_heads"]

    @property
    def num_kv_heads(self):
        return self._layout["num_kv_heads"]

    @property
    def num_proxy_heads(self):
        return self._layout["num_proxy_heads"]

    @property
    def block_size(self):
        return self._layout["block_size"]

    @property
    def cu_seqlens(self):
        return list(self._layout["cu_seqlens"])

    @property
    def num_blocks(self):
        return list(self._layout["num_blocks"])

    @property
    def is_dense(self):
        return list(self._layout["is_dense"])

    @property
    def scale(self):
        return self._core.scale

    # --- statistics ---
    def stats(self):
        """PlanStats(budgets, density, seq_density, density_weighted); synchronizes on CUDA."""
        return PlanStats(*self._core.stats())

    @property
    def budgets(self):
        return self.stats().budgets

    @property
    def density(self):
        return self.stats().density

    @property
    def density_weighted(self):
        return self.stats().density_weighted

    def to_dense(self):
        """Selected blocks: a list with one bool array [num_qo_heads, nb_i, nb_i] per sequence."""
        flat = self._core.to_dense().astype(bool)
        masks, start = [], 0
        for nb in self.num_blocks:
            size = self.num_qo_heads * nb * nb
            masks.append(flat[start:start + size].reshape(self.num_qo_heads, nb, nb))
            start += size
        return masks

    def host_arrays(self):
        """Host copies of the plan's flat arrays (group_order, last_order, counts, budgets,
        density) in the workspace layout of include/proxyattn/plan.h."""
        return self._core.host_arrays()

    def __repr__(self):
        return (f"proxyattn.Plan(device={self.device}, batch={self.batch}, heads="
                f"{self.num_qo_heads}/{self.num_kv_heads}, groups={self.num_proxy_heads}, "
                f"block_size={self.block_size}, num_blocks={self.num_blocks})")

    # --- user-built plans ---
    @classmethod
    def from_block_mask(cls, mask, q, k, cu_seqlens=None, block_size=128, num_proxy_heads=None,
                        scale=None):
        """A plan from the caller's own blocks, for q's shapes and device.

        mask: per sequence, [num_qo_heads, nb_i, nb_i] truthy entries (numpy or torch; entries
        above the diagonal are ignored): a list of them, one array for one sequence, or all of them
        flattened. Within a group and query block (but the last) the heads' selections must be
        nested (docs/SPEC.md stage 6); num_proxy_heads (the groups, default num_kv_heads) must divide
        num_kv_heads. The plan is built on the host and copied to q's device.
        """
        cu = A.host_cu_seqlens(cu_seqlens)
        total, heads, head_dim = A.check_rank(q, "q")
        kv_heads = A.check_rank(k, "k")[1]
        # Config checks the integers (no silent truncation of 1.5 or True).
        core_cfg = Config(block_size=block_size,
                          num_proxy_heads=kv_heads if num_proxy_heads is None else num_proxy_heads,
                          min_budget_tokens=0, dense_below_tokens=0).to_core()
        block_size = int(core_cfg.values()["block_size"])
        groups = int(core_cfg.values()["num_proxy_heads"])
        bounds = [0, total] if cu is None else [int(c) for c in cu]
        blocks = [-(-(b - a) // block_size) for a, b in zip(bounds, bounds[1:])]
        if isinstance(mask, (list, tuple)):
            # One array per sequence, each [num_qo_heads, nb_i, nb_i]: the total alone would let a
            # mask meant for other sequence lengths through, shifted.
            if len(mask) != len(blocks):
                raise _core.Error(f"proxyattn: mask is a list of {len(mask)} arrays, expected one "
                                  f"per sequence ({len(blocks)})")
            parts = [A.to_numpy_bool(m) for m in mask]
            for i, (m, nb) in enumerate(zip(parts, blocks)):
                if m.size != heads * nb * nb:
                    raise _core.Error(f"proxyattn: mask[{i}].shape = {tuple(m.shape)}, expected "
                                      f"[num_qo_heads, nb, nb] = [{heads}, {nb}, {nb}]")
            flat = np.concatenate([m.reshape(-1) for m in parts]) if parts else \
                np.zeros(0, np.uint8)
        else:
            flat = A.to_numpy_bool(mask).reshape(-1)
        flat = np.ascontiguousarray(flat != 0, dtype=np.uint8)
        nbytes = _core.workspace_size_for_shape(total, heads, kv_heads, head_dim, cu, core_cfg)
        host_ws = A.workspace(np.empty(0), nbytes)
        core = _core.plan_from_block_mask(total, heads, kv_heads, head_dim, cu, int(block_size),
                                          groups, flat, A.capsule(host_ws, "workspace"),
                                          A.scale_of(scale))
        core = _core_keep(core, host_ws)
        plan = cls(core, like=q)
        if A.is_torch(q) and q.is_cuda:
            plan = plan.to(q)
        return plan

    def to(self, like):
        """This plan copied onto like's device (a torch CUDA tensor), or self when it is there."""
        if not (A.is_torch(like) and like.is_cuda):
            return self
        if self.device == "cuda":
            return self
        dev = A.workspace(like, self._core.workspace.shape[0])
        core = self._core.copy_into(A.capsule(dev, "workspace"))
        return Plan(_core_keep(core, dev), like=like)


def _core_keep(core, owner):
    """core with its workspace owner attribute pointing at the Python array (the C++ side keeps
    the capsule; the array itself is what Plan.workspace returns)."""
    return _KeepAlive(core, owner)


class _KeepAlive:
    """Forwards to a _core.Plan and holds the workspace array that backs it."""

    __slots__ = ("_plan", "workspace")

    def __init__(self, plan, workspace):
        self._plan = plan
        self.workspace = workspace

    def __getattr__(self, name):
        return getattr(self._plan, name)

    @property
    def core(self):
        return self._plan


def _core_plan(plan):
    if not isinstance(plan, Plan):
        raise _core.Error(f"proxyattn: plan is a {type(plan).__name__}, expected a proxyattn.Plan")
    core = plan._core
    return core.core if isinstance(core, _KeepAlive) else core


def workspace_size(q, k, cu_seqlens=None, config=None, **config_fields):
    """Bytes of workspace that plan() and prefill() need for these shapes and config."""
    cfg = resolve_config(config, **config_fields)
    return _core.workspace_size(A.capsule(q, "q"), A.capsule(k, "k"),
                                A.host_cu_seqlens(cu_seqlens), cfg.to_core())


def allocate_workspace(q, k, cu_seqlens=None, config=None, **config_fields):
    """A 256-byte-aligned uint8 workspace on q's device, of workspace_size() bytes."""
    return A.workspace(q, workspace_size(q, k, cu_seqlens, config, **config_fields))


def _check_workspace(ws, q):
    if ws is None:
        return
    A.check_writable(ws, "workspace")


def plan(q, k, cu_seqlens=None, config=None, workspace=None, *, stream=None, num_threads=0,
         **config_fields):
    """Stages 1-6 (proxy scores, block scores, budgets, selection) into a workspace -> Plan."""
    cfg = resolve_config(config, **config_fields)
    cu = A.host_cu_seqlens(cu_seqlens)
    core_cfg = cfg.to_core()
    if workspace is None:
        workspace = A.workspace(q, _core.workspace_size(A.capsule(q, "q"), A.capsule(k, "k"), cu,
                                                        core_cfg))
    _check_workspace(workspace, q)
    core = _core.plan(A.capsule(q, "q"), A.capsule(k, "k"), cu, core_cfg,
                      A.capsule(workspace, "workspace"), A.stream_of(q, stream),
                      A.num_threads_of(num_threads), _bf16(q, k))
    return Plan(_core_keep(core, workspace), like=q)


def _outputs(q, out, lse, return_lse):
    if (out is None or (lse is None and return_lse)) and not hasattr(q, "shape"):
        raise _core.Error(f"proxyattn: cannot allocate an output like a {type(q).__name__}; "
                          "pass numpy arrays or torch tensors, or out= (and lse=)")
    if out is None:
        out = A.empty(q, tuple(q.shape))
    if lse is None and return_lse:
        tokens, heads, _ = A.check_rank(q, "q")
        lse = A.empty(q, (heads, tokens), float32=True)
    return out, lse


def _result(out, lse, return_lse, plan_obj=None, return_plan=False):
    result = [out]
    if return_lse:
        result.append(lse)
    if return_plan:
        result.append(plan_obj)
    return result[0] if len(result) == 1 else tuple(result)


def attend(q, k, v, plan, out=None, *, lse=None, return_lse=False, stream=None, num_threads=0):
    """Stage 7: block-sparse attention over a plan (computed or from_block_mask) -> out
    (or (out, lse) with return_lse)."""
    core = _core_plan(plan)
    out, lse = _outputs(q, out, lse, return_lse)
    _core.attend(A.capsule(q, "q"), A.capsule(k, "k"), A.capsule(v, "v"), core,
                 A.out_capsule(out, "out"), A.out_capsule(lse, "lse"), A.stream_of(q, stream),
                 A.num_threads_of(num_threads), _bf16(q, k, v))
    return _result(out, lse, return_lse)


def prefill(q, k, v, cu_seqlens=None, config=None, out=None, *, workspace=None, lse=None,
            return_lse=False, return_plan=False, stream=None, num_threads=0, **config_fields):
    """ProxyAttn prefill, plan() then attend() -> out, (out, lse) with return_lse, and the Plan
    last with return_plan. Sequences of at most config.dense_below() tokens run dense.

    Torch tensors with no out/lse/workspace/plan requested go through torch.ops.proxyattn.prefill,
    so torch.compile and CUDA graphs see one op.
    """
    cfg = resolve_config(config, **config_fields)
    A.num_threads_of(num_threads)  # checked on every path (the torch op runs on all threads)
    if (A.is_torch(q) and out is None and lse is None and workspace is None and not return_plan
            and stream is None):
        return _torch_ops().prefill(q, k, v, cu_seqlens, cfg, return_lse=return_lse)
    cu = A.host_cu_seqlens(cu_seqlens)
    core_cfg = cfg.to_core()
    out, lse = _outputs(q, out, lse, return_lse)
    if workspace is None:
        workspace = A.workspace(q, _core.workspace_size(A.capsule(q, "q"), A.capsule(k, "k"), cu,
                                                        core_cfg))
    _check_workspace(workspace, q)
    core = _core.prefill(A.capsule(q, "q"), A.capsule(k, "k"), A.capsule(v, "v"), cu, core_cfg,
                         A.capsule(workspace, "workspace"), A.out_capsule(out, "out"),
                         A.out_capsule(lse, "lse"), A.stream_of(q, stream),
                         A.num_threads_of(num_threads), _bf16(q, k, v))
    plan_obj = Plan(_core_keep(core, workspace), like=q) if return_plan else None
    return _result(out, lse, return_lse, plan_obj, return_plan)


def dense(q, k, v, cu_seqlens=None, out=None, scale=None, *, lse=None, return_lse=False,
          stream=None, num_threads=0):
    """Dense causal attention, the baseline, with the same operands -> out (or (out, lse))."""
    A.num_threads_of(num_threads)
    if A.is_torch(q) and out is None and lse is None and stream is None:
        return _torch_ops().dense(q, k, v, cu_seqlens, scale=scale, return_lse=return_lse)
    cu = A.host_cu_seqlens(cu_seqlens)
    out, lse = _outputs(q, out, lse, return_lse)
    _core.dense(A.capsule(q, "q"), A.capsule(k, "k"), A.capsule(v, "v"), cu,
                A.out_capsule(out, "out"), A.out_capsule(lse, "lse"),
                A.scale_of(scale), A.stream_of(q, stream),
                A.num_threads_of(num_threads), _bf16(q, k, v))
    return _result(out, lse, return_lse)


_DTYPE_NAMES = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16",
                "float16": "fp16", "fp16": "fp16", "half": "fp16"}


def is_supported(dtype, head_dim, device="cpu"):
    """Whether a backend has kernels for this dtype ("fp32", "bf16", "fp16", or a numpy/torch
    dtype), head_dim and device ("cpu" or "cuda", or a torch.device)."""
    if isinstance(dtype, str) or str(dtype).startswith("torch."):
        name = str(dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            return False
    name = _DTYPE_NAMES.get(name, name)
    dev = getattr(device, "type", device)
    if dev not in ("cpu", "cuda"):
        return False
    try:
        return _core.is_supported(name, int(head_dim), dev)
    except (_core.Error, TypeError, ValueError, OverflowError):
        return False
