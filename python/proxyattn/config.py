"""Config: SPEC.md section 2's knobs, with its defaults, as a plain dataclass.

Plain Python so torch.compile can read it and it pickles; `to_core()` builds the C++ Config (cached).
Optional fields use None for "off/auto": max_budget_tokens None = unbounded, dense_below_tokens
None = max(2 * block_size, min_budget_tokens), forced_density None = off, scale None =
1/sqrt(head_dim).
"""
import dataclasses
import functools
from typing import Optional

from . import _core

__all__ = ["Config", "resolve_config"]


@dataclasses.dataclass
class Config:
    block_size: int = 128  # b: square tile of mask and kernel, 64 or 128
    stride: int = 4  # s: the proxy keeps positions t % s == 0; must divide block_size
    gamma: float = 0.95  # attention mass each head's budget covers, 0 < gamma <= 1
    num_proxy_heads: int = 1  # g: must divide num_kv_heads
    min_budget_tokens: int = 2048  # lower clamp of every budget, rounded up to blocks
    max_budget_tokens: Optional[int] = None  # upper clamp; None = unbounded
    dense_below_tokens: Optional[int] = None  # sequences this short run dense; None = auto
    keep_sink: bool = True  # always select key block 0
    keep_diagonal: bool = True  # always select the diagonal block
    last_block_selection: str = "exact"  # "exact" (default) or "proxy" (the paper's rule)
    forced_density: Optional[float] = None  # benchmarks only: (0, 1]; None = off
    scale: Optional[float] = None  # softmax scale; None = 1/sqrt(head_dim)

    def key(self):
        """A hashable tuple of the C++ field values (None mapped to the C++ sentinels)."""
        return (
            int(self.block_size),
            int(self.stride),
            float(self.gamma),
            int(self.num_proxy_heads),
            int(self.min_budget_tokens),
            -1 if self.max_budget_tokens is None else int(self.max_budget_tokens),
            -1 if self.dense_below_tokens is None else int(self.dense_below_tokens),
            bool(self.keep_sink),
            bool(self.keep_diagonal),
            str(self.last_block_selection),
            0.0 if self.forced_density is None else float(self.forced_density),
            0.0 if self.scale is None else float(self.scale),
        )

    def to_core(self):
        """The C++ proxyattn::Config (raises proxyattn.Error on a bad last_block_selection)."""
        return _core_config(self.key())

    def validate(self):
        """Raises proxyattn.Error naming the first field out of range (SPEC.md section 6)."""
        self.to_core().validate()
        return self

    def dense_below(self):
        """Sequences of at most this many tokens run dense attention."""
        return self.to_core().dense_below()

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(Config))


@functools.lru_cache(maxsize=256)
def _core_config(key):
    return _core.Config(*key)


def resolve_config(config=None, **overrides):
    """Config from None, a Config, a dict or a C++ Config, with keyword overrides.

    Unknown field names raise proxyattn.Error naming them.
    """
    if config is None:
        base = {}
    elif isinstance(config, Config):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    elif isinstance(config, _core.Config):
        base = {name: getattr(config, name) for name in FIELDS}
        base["max_budget_tokens"] = None if base["max_budget_tokens"] < 0 else base["max_budget_tokens"]
        base["dense_below_tokens"] = None if base["dense_below_tokens"] < 0 else base["dense_below_tokens"]
        base["forced_density"] = base["forced_density"] or None
        base["scale"] = base["scale"] or None
    else:
        raise _core.Error(f"proxyattn: config is a {type(config).__name__}, expected a "
                          "proxyattn.Config, a dict or None")
    base.update({k: v for k, v in overrides.items()})
    unknown = sorted(set(base) - set(FIELDS))
    if unknown:
        raise _core.Error(f"proxyattn: unknown config field(s) {', '.join(unknown)}, expected "
                          f"some of {', '.join(FIELDS)}")
    return Config(**base)
