"""Config: the knobs of docs/SPEC.md section 2 as a plain dataclass.

The fields are not written here: they come from the library's one table of Config fields
(`_core.config_fields()`, include/proxyattn/config.h), with their names, Python types and the
defaults of the C++ `Config{}`, so a field added in C++ appears here, in the CLI and in the binding
at once. A field with a sentinel word ("none", "auto", "off", "default") is Optional and uses None
for it: max_budget_tokens None = unbounded, dense_below_tokens None = max(2 * block_size,
min_budget_tokens), forced_density None = off, scale None = 1/sqrt(head_dim).

Plain Python so torch.compile can read it and it pickles; values travel to C++ as the text
set_config_field() reads (`key()`), and `to_core()` builds the C++ Config (cached).
"""
import dataclasses
import functools
import operator
from typing import Optional

from . import _core

__all__ = ["Config", "resolve_config", "FIELDS", "config_text", "core_config_from_text"]

_PY_TYPES = {"int": int, "float": float, "bool": bool, "choice": str}
_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "choice": "a string"}
TABLE = tuple(_core.config_fields())  # [{name, flag, type, unset, help}] in declaration order
FIELDS = tuple(f["name"] for f in TABLE)
_BY_NAME = {f["name"]: f for f in TABLE}


def _value_of(field, text):
    """The Python value of a field's C++ text (None for its sentinel word)."""
    if field["unset"] and text == field["unset"]:
        return None
    kind = field["type"]
    if kind == "bool":
        return text == "true"
    return _PY_TYPES[kind](text)


def _text_of(field, value):
    """The text set_config_field() reads for a Python value; raises proxyattn.Error on a value of
    the wrong kind."""
    name, kind, unset = field["name"], field["type"], field["unset"]
    if value is None:
        if unset:
            return unset
        raise _core.Error(f"proxyattn: config.{name} = None, expected {_EXPECTED[kind]}")
    try:
        if kind == "bool":
            if not isinstance(value, (bool, int)) or isinstance(value, float):
                raise TypeError
            return "true" if value else "false"
        if kind in ("int", "float") and (isinstance(value, bool) or
                                         type(value).__name__ == "bool_"):
            raise TypeError  # True is not 1 (stride=True) nor 1.0 (gamma=True)
        if kind == "int":
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return str(operator.index(value))
        if kind == "float":
            return repr(float(value))
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError):
        raise _core.Error(f"proxyattn: config.{name} = {value!r}, expected {_EXPECTED[kind]}"
                          + (f" or None ({unset})" if unset else "")) from None


class _ConfigMethods:
    """The methods of Config (its fields come from the C++ table)."""

    def key(self):
        """A hashable tuple of the fields as C++ text, in table order (None -> sentinel word)."""
        return tuple(_text_of(f, getattr(self, f["name"])) for f in TABLE)

    def to_core(self):
        """The C++ proxyattn::Config (raises proxyattn.Error on a value a field cannot take)."""
        return _core_config(self.key())

    def validate(self):
        """Raises proxyattn.Error naming the first field out of range (docs/SPEC.md section 6)."""
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


def _dataclass_field(field, default_text):
    py_type = _PY_TYPES[field["type"]]
    annotation = Optional[py_type] if field["unset"] else py_type
    default = _value_of(field, default_text)
    return (field["name"], annotation,
            dataclasses.field(default=default, metadata={"help": field["help"],
                                                         "flag": field["flag"]}))


_DEFAULTS = _core.Config().values()
Config = dataclasses.make_dataclass(
    "Config", [_dataclass_field(f, _DEFAULTS[f["name"]]) for f in TABLE],
    bases=(_ConfigMethods,),
    namespace={"__module__": __name__,
               "__doc__": "ProxyAttn configuration; fields and defaults follow the C++ Config.\n\n"
                          + "\n".join(f"    {f['name']}: {f['help']}" for f in TABLE)})


@functools.lru_cache(maxsize=256)
def _core_config(key):
    return _core.make_config(dict(zip(FIELDS, key)))


def config_text(key):
    """One string for a Config.key(): "name=text;..." (the torch op's config argument)."""
    return ";".join(f"{name}={text}" for name, text in zip(FIELDS, key))


@functools.lru_cache(maxsize=256)
def core_config_from_text(text):
    """The C++ Config of a config_text() string."""
    return _core.make_config(dict(item.split("=", 1) for item in text.split(";") if item))


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
        base = {name: _value_of(_BY_NAME[name], text) for name, text in config.values().items()}
    else:
        raise _core.Error(f"proxyattn: config is a {type(config).__name__}, expected a "
                          "proxyattn.Config, a dict or None")
    base.update(overrides)
    unknown = sorted(set(base) - set(FIELDS))
    if unknown:
        raise _core.Error(f"proxyattn: unknown config field(s) {', '.join(unknown)}, expected "
                          f"some of {', '.join(FIELDS)}")
    return Config(**base)
