"""Plain numpy float64 attention, the oracle of the Python tests (the C++ double reference is not
exposed to Python): causal, packed varlen, GQA, optionally restricted to a block mask."""
import numpy as np


def attention(q, k, v, cu_seqlens=None, scale=None, block_masks=None, block_size=None):
    """O [tokens, heads, dim] and LSE [heads, tokens] in float64.

    block_masks: per sequence, [heads, nb, nb] bool (as Plan.to_dense() returns); query t attends
    key u <= t of its sequence when block_masks[i][h, t // b, u // b]. A row attending nothing gets
    O = 0 and LSE = -inf.
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    tokens, heads, dim = q.shape
    group = heads // k.shape[1]
    scale = 1.0 / np.sqrt(dim) if scale is None else scale
    cu = [0, tokens] if cu_seqlens is None else list(cu_seqlens)
    out = np.zeros_like(q)
    lse = np.full((heads, tokens), -np.inf)
    for i in range(len(cu) - 1):
        s, e = cu[i], cu[i + 1]
        n = e - s
        if n == 0:
            continue
        allowed = np.tril(np.ones((n, n), dtype=bool))
        for h in range(heads):
            mask = allowed
            if block_masks is not None:
                pos = np.arange(n) // block_size
                mask = allowed & block_masks[i][h][pos[:, None], pos[None, :]]
            logits = scale * q[s:e, h] @ k[s:e, h // group].T
            logits = np.where(mask, logits, -np.inf)
            row_max = logits.max(axis=1, keepdims=True)
            empty = ~np.isfinite(row_max[:, 0])
            row_max[empty] = 0.0
            p = np.exp(logits - row_max)
            total = p.sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                o = (p @ v[s:e, h // group]) / total
                row_lse = np.log(total[:, 0]) + row_max[:, 0]
            o[empty] = 0.0
            row_lse[empty] = -np.inf
            out[s:e, h] = o
            lse[h, s:e] = row_lse
    return out, lse


def rel_error_per_head(x, ref):
    """max over heads of ||x - ref|| / ||ref||, x and ref [tokens, heads, dim]."""
    x = np.asarray(x, dtype=np.float64)
    worst = 0.0
    for h in range(ref.shape[1]):
        denom = np.linalg.norm(ref[:, h])
        if denom > 0:
            worst = max(worst, np.linalg.norm(x[:, h] - ref[:, h]) / denom)
    return worst


def qkv(seed, tokens, heads, kv_heads, dim, dtype=np.float32, peaked=False):
    """Random q, k, v; peaked=True plants a few strong keys so sparse plans matter."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((tokens, heads, dim))
    k = rng.standard_normal((tokens, kv_heads, dim))
    v = rng.standard_normal((tokens, kv_heads, dim))
    if peaked:
        q *= 2.0
        hot = rng.choice(tokens, size=max(1, tokens // 50), replace=False)
        k[hot] *= 4.0
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)
