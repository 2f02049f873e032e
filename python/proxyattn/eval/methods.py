"""Method specs, presets and the knob arithmetic of matched-density baselines. numpy only (Config
field names are checked against proxyattn.config when it is importable).

A spec is `kind` or `kind:key=value,key=value,...`:

    dense                                    SDPA
    proxyattn:gamma=0.9,stride=4             ProxyAttn through proxyattn.hf, any Config field
    proxyattn:last_block_selection=proxy,density=0.3
    sink_local:density=0.3                   first `sink` blocks + a window of recent blocks per row
    sink_local:window=40,sink=1,block_size=64
    topk:density=match:proxyattn:gamma=0.9   every head keeps the same k blocks per row, ranked by
    topk:k=32                                ProxyAttn's proxy block scores (docs/SPEC.md stage 6)

`density=X` picks the method's knob (gamma, window or k) so that its mean density on the cell is
X; `density=match:SPEC` (always the last entry: the rest of the string is SPEC) takes the density
that SPEC measured on the same cell. Density follows docs/SPEC.md section 4: selected causal blocks
over nb * (nb + 1) / 2, the mean over heads and layers of a prompt, then over the cell's prompts.

topk is ProxyAttn with min_budget_tokens = max_budget_tokens = k * block_size: stage 5's clamp gives
every head the budget k, and stage 6 cuts each row's proxy ranking (sink and diagonal first) at
c[m] = max(min(k, m + 1), forced blocks). The last query block follows last_block_selection like
ProxyAttn's (the default `exact` ranks it by each head's own last-block attention).
"""
import math
import re

import numpy as np

KINDS = ("dense", "proxyattn", "sink_local", "topk")
KNOB = {"proxyattn": "gamma", "sink_local": "window", "topk": "k"}
SINK_LOCAL_KEYS = ("window", "sink", "block_size")
# Config fields a top-k spec may not set: its budget is k blocks whatever gamma says.
TOPK_FIXED = ("gamma", "min_budget_tokens", "max_budget_tokens", "forced_density")
DENSITY_TOL = 0.01


def _config_fields():
    try:
        from ..config import FIELDS
        return FIELDS
    except Exception:  # noqa: BLE001 (no compiled proxyattn: names are checked when a model runs)
        return None


def parse_value(text):
    """'true'/'false' -> bool, 'none' -> None, integers, numbers, else the string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_assignments(text):
    """'a=1,b=x' -> {"a": 1, "b": "x"}."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        if key.strip() in out:
            raise ValueError(f"{key.strip()} given twice")
        out[key.strip()] = parse_value(val)
    return out


class Method:
    """A parsed method spec: kind, params (explicit knobs and Config fields), density (a target) or
    match (the spec whose measured density is the target)."""

    def __init__(self, spec, kind, params, density=None, match=None):
        self.spec, self.kind, self.params = spec, kind, dict(params)
        self.density, self.match = density, match

    def __repr__(self):
        return f"Method({self.spec!r})"

    @property
    def family(self):
        """The spec without its density knob (gamma, window, k, density): a plot series."""
        knob = KNOB.get(self.kind)
        rest = [f"{k}={_fmt(v)}" for k, v in self.params.items() if k != knob]
        return self.kind + (":" + ",".join(rest) if rest else "")


def _fmt(v):
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def parse_spec(spec):
    """A Method from its spec string; raises ValueError naming what is wrong."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ValueError(f"method {spec!r}: unknown kind {kind!r}, expected one of "
                         f"{', '.join(KINDS)}")
    params, density, match = {}, None, None
    while rest:
        if rest.startswith("density=match:"):
            if density is not None:
                raise ValueError(f"method {spec!r}: density given twice")
            match = rest[len("density=match:"):].strip()
            try:
                ref = parse_spec(match)
            except ValueError as e:
                raise ValueError(f"method {spec!r}, its density=match target: {e}") from None
            if ref.kind == "dense":
                raise ValueError(f"method {spec!r}: matching dense's density (1) means no sparsity")
            break
        item, _, rest = rest.partition(",")
        if not item.strip():
            continue
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"method {spec!r}: expected key=value, got {item!r}")
        if key in params or (key == "density" and density is not None):
            raise ValueError(f"method {spec!r}: {key} given twice")
        if key == "density" and match is not None:
            raise ValueError(f"method {spec!r}: density given twice")
        if key == "density":
            try:
                density = float(val)
            except ValueError:
                raise ValueError(f"method {spec!r}: density = {val!r}, expected a number in "
                                 "(0, 1] or match:SPEC") from None
            if not 0 < density <= 1:
                raise ValueError(f"method {spec!r}: density = {density}, expected 0 < density <= 1")
        else:
            params[key] = parse_value(val)
    if kind == "dense":
        if params or density is not None or match is not None:
            raise ValueError(f"method {spec!r}: dense takes no settings")
        return Method(spec, kind, params)
    targeted = density is not None or match is not None
    if targeted and KNOB[kind] in params:
        raise ValueError(f"method {spec!r}: give {KNOB[kind]} or density, not both")
    if kind == "sink_local":
        bad = sorted(set(params) - set(SINK_LOCAL_KEYS))
        if bad:
            raise ValueError(f"method {spec!r}: unknown setting(s) {', '.join(bad)}, expected "
                             f"{', '.join(SINK_LOCAL_KEYS)}, density")
        if not targeted and "window" not in params:
            raise ValueError(f"method {spec!r}: sink_local needs window=BLOCKS or density=")
        for key in ("sink", "block_size"):
            if key in params and (not _is_int(params[key]) or params[key] < 0):
                raise ValueError(f"method {spec!r}: {key} = {params[key]!r}, expected an integer "
                                 ">= 0")
        if "window" in params:
            w = params["window"]
            if not _is_number(w) or not math.isfinite(w) or w < 1:
                raise ValueError(f"method {spec!r}: window = {w!r}, expected a number of blocks "
                                 ">= 1")
        return Method(spec, kind, params, density, match)
    fields = _config_fields()
    names = [k for k in params if k != "k"] if kind == "topk" else list(params)
    if fields is not None:
        bad = sorted(set(names) - set(fields))
        if bad:
            raise ValueError(f"method {spec!r}: unknown Config field(s) {', '.join(bad)}")
    if kind == "topk":
        bad = sorted(set(params) & set(TOPK_FIXED))
        if bad:
            raise ValueError(f"method {spec!r}: topk sets its budget from k; remove "
                             f"{', '.join(bad)}")
        if not targeted and "k" not in params:
            raise ValueError(f"method {spec!r}: topk needs k=BLOCKS or density=")
        if "k" in params and (not _is_int(params["k"]) or params["k"] < 1):
            raise ValueError(f"method {spec!r}: k = {params['k']!r}, expected an integer >= 1")
    return Method(spec, kind, params, density, match)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _error_text(e):
    """A library error's message without its "proxyattn: " prefix and "[function at file:line]"
    suffix."""
    text = " ".join(str(e).split())
    if text.startswith("proxyattn: "):
        text = text[len("proxyattn: "):]
    return re.sub(r"\s*\[[^\[\]]* at [^\[\]]*:\d+\]$", "", text)


def method_config(method, base):
    """The Config fields a proxyattn or topk method runs with before any density search (topk:
    gamma 1 and the budget clamp at k blocks, k = 1 while k is still to be found); None for dense
    and sink_local."""
    if method.kind == "proxyattn":
        return dict(base, **method.params)
    if method.kind == "topk":
        config = {k: v for k, v in base.items() if k not in TOPK_FIXED}
        config.update({k: v for k, v in method.params.items() if k != "k"})
        return config
    return None


def check_method(method, base, num_kv_heads=None):
    """Raises ValueError naming the method and the first setting out of range: its Config (from
    base, the --defaults fields, and its own settings) against docs/SPEC.md section 2,
    num_proxy_heads against the model's KV heads, sink_local's block size. Needs the compiled
    proxyattn (proxyattn.config)."""
    from ..config import resolve_config
    if method.kind == "dense":
        return
    try:
        if method.kind == "sink_local":
            b = method.params.get("block_size", base.get("block_size"))
            resolve_config({} if b is None else {"block_size": b}).validate()
            return
        config = resolve_config(method_config(method, base))
        if method.kind == "topk":
            b = config.block_size
            k = int(method.params.get("k", 1))
            config = config.replace(gamma=1.0, min_budget_tokens=k * b, max_budget_tokens=k * b)
        config.validate()
    except ValueError as e:
        raise ValueError(f"method {method.spec!r}: {_error_text(e)}") from None
    if num_kv_heads and num_kv_heads % config.num_proxy_heads:
        raise ValueError(f"method {method.spec!r}: num_proxy_heads = {config.num_proxy_heads}, "
                         f"expected a divisor of the model's {num_kv_heads} KV heads")


def identity(method, base, by_spec=None):
    """What a method computes, for finding the same method written two ways: its kind, its
    resolved settings and its density target (a match target by identity). by_spec: spec ->
    Method for resolving match targets."""
    from ..config import resolve_config
    if method.kind == "dense":
        return ("dense",)
    knob = KNOB[method.kind]
    params = {k: v for k, v in method.params.items()
              if not (k == knob and (method.density is not None or method.match is not None))}
    if method.kind == "sink_local":
        b = params.get("block_size", base.get("block_size", resolve_config().block_size))
        settings = (float(params.get("window", 0)), int(params.get("sink", 1)), int(b))
    else:
        config = resolve_config(method_config(Method(method.spec, method.kind, params), base))
        settings = (config.key(), params.get("k"))
    target = method.density
    if method.match is not None:
        ref = (by_spec or {}).get(method.match) or parse_spec(method.match)
        target = ("match", identity(ref, base, by_spec))
    return (method.kind, settings, target)


def run_order(methods):
    """Methods in an order where dense comes first and every match target runs before the methods
    matching it (targets not in the list are added before them). Raises ValueError on a cycle."""
    by_spec = {}
    for m in methods:
        by_spec.setdefault(m.spec, m)
    order, state = [], {}

    def visit(m, chain):
        if state.get(m.spec) == "done":
            return
        if state.get(m.spec) == "active":
            raise ValueError(f"density matches form a cycle: {' -> '.join(chain + [m.spec])}")
        state[m.spec] = "active"
        if m.match is not None:
            ref = by_spec.get(m.match)
            if ref is None:
                ref = by_spec[m.match] = parse_spec(m.match)
            visit(ref, chain + [m.spec])
        state[m.spec] = "done"
        order.append(m)

    dense = by_spec.get("dense") or parse_spec("dense")
    by_spec["dense"] = dense
    visit(dense, [])
    for m in list(by_spec.values()):
        visit(m, [])
    return order


# --- presets --------------------------------------------------------------------------------------

def preset_specs(name, num_kv_heads=None, base=None):
    """The method specs of a preset.

    study: dense; ProxyAttn at gamma 0.80, 0.90, 0.95, 0.99; sink+local, static top-k and the
    paper's last-block rule at the density ProxyAttn gamma 0.90 measured. study_wide: the same,
    plus the three matched to gamma 0.80. ablations: ProxyAttn gamma 0.90 with one knob changed at
    a time (stride 1/2/4/8, num_proxy_heads over the divisors of num_kv_heads, block_size 64/128,
    min_budget_tokens 0/256/1024/4096); settings equal to the base, and strides and block sizes
    that would not divide each other, are left out. base: the
    Config fields every proxyattn/topk method starts from (--defaults).
    """
    gammas = ("0.8", "0.9", "0.95", "0.99")
    ref = "proxyattn:gamma=0.9"

    def matched(r):
        return [f"sink_local:density=match:{r}", f"topk:density=match:{r}",
                f"proxyattn:last_block_selection=proxy,density=match:{r}"]

    if name == "study":
        return ["dense"] + [f"proxyattn:gamma={g}" for g in gammas] + matched(ref)
    if name == "study_wide":
        return preset_specs("study") + matched("proxyattn:gamma=0.8")
    if name == "ablations":
        base = dict(base or {})
        cur = {"stride": base.get("stride", 4), "num_proxy_heads": base.get("num_proxy_heads", 1),
               "block_size": base.get("block_size", 128),
               "min_budget_tokens": base.get("min_budget_tokens", 2048)}
        specs = ["dense", ref]
        values = {"stride": (1, 2, 4, 8),
                  "num_proxy_heads": [g for g in range(1, (num_kv_heads or 1) + 1)
                                      if (num_kv_heads or 1) % g == 0],
                  "block_size": (64, 128), "min_budget_tokens": (0, 256, 1024, 4096)}
        for key, vals in values.items():
            for v in vals:
                if v != cur[key] and not (key == "stride" and cur["block_size"] % v) and \
                        not (key == "block_size" and v % cur["stride"]):
                    specs.append(f"{ref},{key}={v}")
        return specs
    raise ValueError(f"unknown preset {name!r}, expected study, study_wide or ablations")


PRESETS = ("study", "study_wide", "ablations")


# --- analytic densities ---------------------------------------------------------------------------

def num_blocks(tokens, block_size):
    return -(-int(tokens) // int(block_size))


def causal_blocks(nb):
    return nb * (nb + 1) / 2


def sink_local_rows(nb, window, sink=1):
    """Per query block m: (lo[m], count[m]): keys [lo, m] plus the sink blocks [0, min(sink, lo)).

    A fractional window w = W + f gives row m the window W + (floor(f (m+1)) - floor(f m)) blocks
    (at least 1, the diagonal), so the mean window is w and density moves smoothly with it."""
    m = np.arange(nb, dtype=np.int64)
    whole = int(math.floor(window))
    frac = float(window) - whole
    extra = np.floor(frac * (m + 1)).astype(np.int64) - np.floor(frac * m).astype(np.int64)
    width = np.maximum(1, whole + extra)
    lo = np.maximum(0, m - width + 1)
    count = (m - lo + 1) + np.minimum(int(sink), lo)
    return lo, count


def sink_local_mask(nb, window, sink, heads):
    """bool [heads, nb, nb]: the sink blocks and the local window of every row (same for all
    heads, so a group's selections are trivially nested)."""
    lo, _ = sink_local_rows(nb, window, sink)
    n = np.arange(nb)
    m = n[:, None]
    row = ((n[None, :] >= lo[:, None]) | (n[None, :] < int(sink))) & (n[None, :] <= m)
    return np.broadcast_to(row, (heads, nb, nb))


def sink_local_density(tokens, block_size, window, sink=1):
    nb = num_blocks(tokens, block_size)
    return float(sink_local_rows(nb, window, sink)[1].sum() / causal_blocks(nb))


def topk_counts(nb, k, keep_sink=True, keep_diagonal=True):
    """c[m] = max(min(k, m + 1), forced blocks) (docs/SPEC.md stage 6)."""
    m = np.arange(nb, dtype=np.int64)
    forced = np.where(m == 0, int(bool(keep_sink or keep_diagonal)),
                      int(bool(keep_sink)) + int(bool(keep_diagonal)))
    return np.maximum(np.minimum(int(k), m + 1), forced)


def topk_dense_below(block_size, k, dense_below_tokens=None):
    """Sequences of at most this many tokens run dense (the Config default with min budget k*b)."""
    if dense_below_tokens is not None and dense_below_tokens >= 0:
        return int(dense_below_tokens)
    return max(2 * int(block_size), int(k) * int(block_size))


def topk_density(tokens, block_size, k, keep_sink=True, keep_diagonal=True,
                 dense_below_tokens=None):
    if tokens <= topk_dense_below(block_size, k, dense_below_tokens):
        return 1.0
    nb = num_blocks(tokens, block_size)
    return float(topk_counts(nb, k, keep_sink, keep_diagonal).sum() / causal_blocks(nb))


def mean_density(lengths, fn):
    """Mean over prompts (token counts) of fn(tokens); distinct lengths computed once."""
    cache = {}
    total = 0.0
    for n in lengths:
        if n not in cache:
            cache[n] = fn(int(n))
        total += cache[n]
    return total / len(lengths)


def solve_window(lengths, block_size, target, sink=1):
    """(window, density): the window (blocks, fractional) whose mean density over the prompts is
    nearest the target."""
    hi = float(max(num_blocks(n, block_size) for n in lengths))

    def dens(w):
        return mean_density(lengths, lambda n: sink_local_density(n, block_size, w, sink))

    lo_w, hi_w = 1.0, hi
    best = min(((abs(dens(w) - target), w) for w in (lo_w, hi_w)))
    for _ in range(40):
        mid = 0.5 * (lo_w + hi_w)
        d = dens(mid)
        best = min(best, (abs(d - target), mid))
        if d < target:
            lo_w = mid
        else:
            hi_w = mid
    w = round(best[1], 4)
    return w, dens(w)


def solve_topk(lengths, block_size, target, keep_sink=True, keep_diagonal=True,
               dense_below_tokens=None):
    """(k, density): the integer k whose mean density over the prompts is nearest the target."""
    def dens(k):
        return mean_density(lengths, lambda n: topk_density(n, block_size, k, keep_sink,
                                                            keep_diagonal, dense_below_tokens))

    lo, hi = 1, max(num_blocks(n, block_size) for n in lengths)
    while lo < hi:  # smallest k with density >= target
        mid = (lo + hi) // 2
        if dens(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [k for k in (lo - 1, lo) if k >= 1]
    k = min(cands, key=lambda c: (abs(dens(c) - target), c))
    return k, dens(k)
