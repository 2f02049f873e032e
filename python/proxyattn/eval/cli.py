"""python -m proxyattn.eval: needle accuracy of ProxyAttn, dense attention and matched-density
baselines on any transformers causal LM (python/README.md, "Accuracy evaluation").

    python -m proxyattn.eval --model meta-llama/Llama-3.1-8B --lengths 8192,16384,32768 --n 100 \
        --preset study --json fidelity.json --png fidelity.png

Every method of a cell (task, length) sees the same prompts: the i-th prompt has seed
tasks.eval_seed(task, length, i + seed_offset).

Every argument, input file and method is checked, and every prompt is built, before the model
loads. Exit status: 0 on success; 2 for bad arguments or input files (one line on stderr, nothing
written); 1 for a failure while running (a missing dependency, a model that does not load, an
error during decoding); 130 on an interrupt. Output files are written atomically, the JSON and the
per-prompt outputs after every finished cell, so an interrupted or failed run keeps its finished
cells.
"""
import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import re
import signal
import sys
import time

import numpy as np

from . import DEFAULT_HAYSTACK
from . import methods as M
from . import report
from . import stats
from . import tasks as T

PROG = "python -m proxyattn.eval"
DEFAULT_TASKS = "niah_single,niah_multikey,niah_multivalue"
SEEDS_PER_CELL = 100_000  # tasks.eval_seed's room per (task, length): seed offset + n stays below
MAX_LENGTH = (1 << 31) - 1  # tokens of one sequence (docs/SPEC.md section 6)
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class UsageError(Exception):
    """Bad arguments or input files: exit status 2, nothing written."""


class RunError(Exception):
    """A failure while running (a missing dependency, a model that does not load): exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv=None):
    ap = _Parser(
        prog=PROG,
        description="Needle accuracy of ProxyAttn against dense attention and matched-density "
                    "baselines, through transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="method specs: dense | proxyattn[:FIELD=V,...] | sink_local:window=W|density=D | "
               "topk:k=K|density=D; density=match:SPEC (last) matches SPEC's measured density. "
               "Presets: " + ", ".join(M.PRESETS) + ". Exit status: 0 done, 2 bad arguments "
               "(nothing written), 1 failed while running, 130 interrupted (finished cells kept).")
    ap.add_argument("--model", required=True, help="a transformers causal LM: folder or hub name")
    ap.add_argument("--tokenizer", default=None,
                    help="a sentencepiece .model file, or a folder/hub name for AutoTokenizer "
                         "(default: the model's: its tokenizer.model when it has no "
                         "tokenizer_config.json, else AutoTokenizer)")
    ap.add_argument("--haystack", default=DEFAULT_HAYSTACK,
                    help="UTF-8 text, one document per line, gzip-compressed or not, holding at "
                         "least as many tokens as the longest length [the shipped held-out "
                         "haystack]")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma list of {', '.join(T.TASKS)}")
    ap.add_argument("--lengths", default="8192,16384,32768",
                    help="comma list of target lengths in tokens (prompt + max_new_tokens), at "
                         "most the model's max_position_embeddings")
    ap.add_argument("--n", type=int, default=100, help="prompts per cell (>= 1)")
    ap.add_argument("--seed-offset", type=int, default=0,
                    help="first prompt index of every cell (prompt i has eval seed i + offset; "
                         f"offset + n <= {SEEDS_PER_CELL})")
    ap.add_argument("--methods", nargs="+", default=None, metavar="SPEC",
                    help="method specs (dense always runs: the paired baseline); with --preset, "
                         "run after the preset's")
    ap.add_argument("--preset", choices=M.PRESETS, default=None,
                    help="study: dense, proxyattn gamma 0.8/0.9/0.95/0.99, sink_local, topk and "
                         "last_block_selection=proxy at gamma 0.9's density; study_wide: also at "
                         "gamma 0.8's; ablations: gamma 0.9 with one knob changed at a time")
    ap.add_argument("--defaults", default=None, metavar="FIELD=V,...",
                    help="Config fields every proxyattn/topk method (and sink_local's block_size) "
                         "starts from [the model config's `proxyattn` entry, else the library "
                         "defaults]")
    ap.add_argument("--batch-tokens", type=int, default=131072,
                    help="padded tokens per prefill batch, at least one prompt per batch "
                         "(1048576 = 32 prompts of 32K)")
    ap.add_argument("--calib-prompts", type=int, default=32,
                    help="prompts of a cell used to choose gamma for density targets (bisection "
                         "on the first 8, then secant steps on all; >= 1)")
    ap.add_argument("--recall-prompts", type=int, default=2,
                    help="prompts per cell and method whose attention recall is measured (0: off)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N")
    ap.add_argument("--json", default=None, metavar="OUT.json")
    ap.add_argument("--png", default=None, metavar="OUT.png")
    ap.add_argument("--outputs", default=None, metavar="OUT.jsonl",
                    help="per-prompt outputs, one JSON line per prompt and method")
    ap.add_argument("--max-docs", type=int, default=None, help="read only this many haystack lines")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


# --- argument checks (no model, no torch) -----------------------------------------------------

def _at_least(flag, value, low, what=""):
    if value < low:
        raise UsageError(f"{flag} = {value}, expected an integer >= {low}{what}")


def parse_list(flag, text, choices):
    """A comma list of names from choices, each once."""
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise UsageError(f"{flag} = {text!r}, expected a comma list of {', '.join(choices)}")
    out = []
    for x in items:
        if not x:
            raise UsageError(f"{flag} = {text!r} has an empty item, expected a comma list of "
                             f"{', '.join(choices)}")
        if x not in choices:
            raise UsageError(f"{flag}: unknown {x!r}, expected some of {', '.join(choices)}")
        if x in out:
            raise UsageError(f"{flag}: {x!r} given twice")
        out.append(x)
    return out


def parse_lengths(text):
    """A comma list of distinct positive integers (tokens)."""
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise UsageError(f"--lengths = {text!r}, expected a comma list of lengths in tokens "
                         "(e.g. 8192,16384)")
    out = []
    for x in items:
        if not re.fullmatch(r"[0-9]+", x):
            raise UsageError(f"--lengths item {x!r}, expected a positive integer (tokens)")
        v = int(x)
        if not 1 <= v <= MAX_LENGTH:
            raise UsageError(f"--lengths item {x!r}, expected an integer in [1, {MAX_LENGTH}]")
        if v in out:
            raise UsageError(f"--lengths: {v} given twice")
        out.append(v)
    return out


def _looks_local(path):
    """A name that can only be a file path, never a hub name (org/name)."""
    return (path.startswith(("/", ".", "~")) or "\\" in path or not _HUB_NAME.fullmatch(path)
            or os.path.isdir(path.split("/")[0]))


def check_output(flag, path):
    """A file the command may create or replace -> its real path."""
    if not path:
        raise UsageError(f"{flag} = '', expected a file path")
    if os.path.isdir(path):
        raise UsageError(f"{flag} = {path!r} is a folder, expected a file path")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} = {path!r} exists and is not a regular file, expected a file "
                         "path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} = {path!r}: no folder {folder!r}, expected a path in an "
                         "existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} = {path!r}: the folder {folder!r} is not writable")
    return os.path.realpath(path)


def model_info(path):
    """What the model's config.json says, read before the model loads: max_positions,
    num_kv_heads, vocab_size (None when unknown: a hub name) and its `proxyattn` entry."""
    info = {"local": False, "config": None, "max_positions": None, "num_kv_heads": None,
            "vocab_size": None, "proxyattn": None}
    if not path:
        raise UsageError("--model = '', expected a model folder or a hub name")
    if not os.path.exists(path):
        if _looks_local(path):
            raise UsageError(f"--model = {path!r}: no such folder, expected a transformers model "
                             "folder or a hub name")
        return info
    if not os.path.isdir(path):
        raise UsageError(f"--model = {path!r} is a file, expected a transformers model folder "
                         "(config.json and weights) or a hub name")
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        raise UsageError(f"--model = {path!r}: no config.json in the folder, expected a "
                         "transformers model folder")
    try:
        with open(cfg, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"--model: {cfg!r} is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--model: {cfg!r} holds a {type(data).__name__}, expected an object")
    text = data.get("text_config") if isinstance(data.get("text_config"), dict) else data

    def count(key):
        v = text.get(key, data.get(key))
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    info.update(local=True, config=cfg, max_positions=count("max_position_embeddings"),
                num_kv_heads=count("num_key_value_heads") or count("num_attention_heads"),
                vocab_size=count("vocab_size"), proxyattn=data.get("proxyattn"))
    return info


def base_fields(args, info=None):
    """The Config fields every proxyattn/topk method starts from: --defaults, else the model
    config's `proxyattn` entry (its Config fields), else none (the library defaults)."""
    from ..config import FIELDS, resolve_config
    if args.defaults is not None:
        source = "--defaults"
        try:
            fields = M.parse_assignments(args.defaults)
        except ValueError as e:
            raise UsageError(f"--defaults = {args.defaults!r}: {e}") from None
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise UsageError(f"--defaults: unknown Config field(s) {', '.join(unknown)}, expected "
                             f"some of {', '.join(FIELDS)}")
    else:
        if info is None:
            info = model_info(args.model)
        entry = info.get("proxyattn")
        source = f"the proxyattn entry of {info.get('config')!r}"
        fields = {k: v for k, v in entry.items() if k in FIELDS} if isinstance(entry, dict) else {}
    try:
        resolve_config(fields).validate()
    except ValueError as e:
        raise UsageError(f"{source}: {M._error_text(e)}") from None
    return fields


def method_list(args, num_kv_heads, base):
    """The methods to run, dense and every density=match target first; raises UsageError on a bad
    spec, a setting out of range (num_proxy_heads against num_kv_heads when known) or the same
    method written two ways."""
    specs = []
    try:
        if args.preset:
            specs += M.preset_specs(args.preset, num_kv_heads, base)
        specs += list(args.methods or [])
        if not specs:
            specs = ["dense", "proxyattn:gamma=0.9"]
        seen, out = set(), []
        for s in specs:
            m = M.parse_spec(s)
            if m.spec not in seen:
                seen.add(m.spec)
                out.append(m)
        methods = M.run_order(out)
        by_spec = {m.spec: m for m in methods}
        same = {}
        for m in methods:
            M.check_method(m, base, num_kv_heads)
            key = M.identity(m, base, by_spec)
            if key in same:
                note = "" if {same[key], m.spec} <= seen else (
                    " (a density=match target runs as written, so write it as in the list)")
                raise ValueError(f"{same[key]!r} and {m.spec!r} are the same method{note}, "
                                 "expected each method once")
            same[key] = m.spec
    except ValueError as e:
        raise UsageError(f"--methods: {e}") from None
    return methods


def check_tokenizer_arg(path):
    if path is None:
        return
    if not path:
        raise UsageError("--tokenizer = '', expected a sentencepiece .model file, a tokenizer "
                         "folder or a hub name")
    if not os.path.exists(path) and (path.endswith(".model") or _looks_local(path)):
        raise UsageError(f"--tokenizer = {path!r}: no such file or folder")


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_args(args):
    """Every check that needs neither the tokenizer nor the model -> a dict of parsed values."""
    tasks = parse_list("--tasks", args.tasks, T.TASKS)
    lengths = parse_lengths(args.lengths)
    _at_least("--n", args.n, 1)
    _at_least("--seed-offset", args.seed_offset, 0)
    if args.seed_offset + args.n > SEEDS_PER_CELL:
        raise UsageError(f"--seed-offset + --n = {args.seed_offset + args.n}, expected at most "
                         f"{SEEDS_PER_CELL} (the evaluation seeds of a cell)")
    _at_least("--batch-tokens", args.batch_tokens, 1)
    _at_least("--calib-prompts", args.calib_prompts, 1)
    _at_least("--recall-prompts", args.recall_prompts, 0, " (0: off)")
    if args.max_docs is not None:
        _at_least("--max-docs", args.max_docs, 1)
    if not _DEVICE.fullmatch(args.device):
        raise UsageError(f"--device = {args.device!r}, expected cpu, cuda or cuda:N")
    info = model_info(args.model)
    if info["max_positions"] is not None and max(lengths) > info["max_positions"]:
        raise UsageError(f"--lengths item {max(lengths)} exceeds the model's "
                         f"max_position_embeddings = {info['max_positions']} ({info['config']!r})")
    check_tokenizer_arg(args.tokenizer)
    hay = args.haystack
    if not hay or not os.path.isfile(hay):
        raise UsageError(f"--haystack = {hay!r}: " + ("a folder" if hay and os.path.isdir(hay)
                                                       else "no such file")
                         + ", expected a text file, one document per line (gzip or not)")
    inputs = {os.path.realpath(hay): "--haystack"}
    if args.tokenizer and os.path.isfile(args.tokenizer):
        inputs[os.path.realpath(args.tokenizer)] = "--tokenizer"
    if info["local"]:
        for name in os.listdir(args.model):
            inputs.setdefault(os.path.realpath(os.path.join(args.model, name)), "--model")
    outs = {}
    for flag, path in (("--json", args.json), ("--png", args.png), ("--outputs", args.outputs)):
        if path is None:
            continue
        real = check_output(flag, path)
        other = outs.get(real) or inputs.get(real)
        if other:
            raise UsageError(f"{flag} = {path!r} is also {other}'s file, expected a file of its "
                             "own")
        outs[real] = flag
    if args.png is not None and not _installed("matplotlib"):
        raise UsageError(f"--png = {args.png!r} needs matplotlib, which is not installed")
    base = base_fields(args, info)
    methods = method_list(args, info["num_kv_heads"], base)
    return {"tasks": tasks, "lengths": lengths, "info": info, "base": base, "methods": methods}


# --- tokenizer, haystack, prompts -------------------------------------------------------------

def load_tokenizer(args):
    """The tokenizer adapter (tasks.SpmTokenizer or tasks.HFTokenizer)."""
    path = args.tokenizer
    spm = None
    if path is not None and os.path.isfile(path):
        spm, flag = path, "--tokenizer"
    elif path is None and os.path.isdir(args.model):
        cand = os.path.join(args.model, "tokenizer.model")
        if os.path.isfile(cand) and not os.path.exists(os.path.join(args.model,
                                                                    "tokenizer_config.json")):
            spm, flag = cand, "--model"
    if spm is not None:
        try:
            return T.SpmTokenizer(spm)
        except ImportError:
            raise RunError("sentencepiece is not installed: it reads the tokenizer "
                           f"{spm!r}") from None
        except Exception as e:  # noqa: BLE001 (sentencepiece raises RuntimeError or OSError)
            raise UsageError(f"{flag}: {spm!r} is not a sentencepiece model "
                             f"({_one_line(e)})") from None
    name = path or args.model
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise RunError(f"transformers is not installed: it reads the tokenizer of {name!r} (a "
                       "sentencepiece model can be given as --tokenizer FILE.model)") from None
    try:
        return T.HFTokenizer.from_pretrained(name)
    except Exception as e:  # noqa: BLE001 (transformers raises OSError, ValueError, ...)
        err = UsageError if os.path.exists(name) else RunError
        raise err(f"{'--tokenizer' if path else '--model'} = {name!r}: transformers cannot load "
                  f"a tokenizer from it ({_one_line(e)})") from None


def read_haystack(args):
    """The haystack's sentences (tasks.read_sentences), text only."""
    try:
        return T.read_sentences(args.haystack, max_docs=args.max_docs, text_only=True)
    except OSError as e:
        raise UsageError(f"--haystack = {args.haystack!r}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"--haystack {e}") from None


def tokenize_haystack(args, sents, tok, tasks, lengths):
    """The tokenized haystack; raises UsageError when it is shorter than the longest length."""
    hay = T.Haystack(sents, tok)
    tokens = int(hay.starts[-1])
    if any(t != "cwe" for t in tasks) and tokens < max(lengths):
        first = f" in its first {args.max_docs} lines" if args.max_docs is not None else ""
        raise UsageError(f"--haystack {args.haystack!r} holds {tokens} tokens{first}, fewer than "
                         f"the longest length {max(lengths)}: its text is never repeated, so "
                         "prompts would come out short; expected a longer haystack")
    return hay


def build_prompts(args, tasks, lengths, hay, tok):
    """{(task, length): [instance] * n}, every prompt built and checked to fit, and the largest
    token id of all prompts. A cell's token ids are rebuilt from its instances when it runs
    (tasks.prompt_ids), so only one cell's ids are held at a time."""
    words = T.load_words()
    cells, top = {}, -1
    for length in lengths:
        for task in tasks:
            insts = []
            for i in range(args.n):
                seed = T.eval_seed(task, length, i + args.seed_offset)
                try:
                    inst, ids = T.fit(task, seed, length, hay, tok, words)
                except ValueError as e:
                    raise UsageError(f"--lengths: {e}") from None
                insts.append(inst)
                top = max(top, max(ids))
            cells[(task, length)] = insts
    return cells, top


def check_vocab(top, vocab_size, where):
    """The prompts' largest token id fits the model's vocabulary (when known)."""
    if vocab_size is not None and top >= vocab_size:
        raise UsageError(f"--tokenizer: prompt token ids reach {top}, but the model's vocab_size "
                         f"is {vocab_size} ({where}): expected the model's own tokenizer")


def check_device(name):
    """torch can use this device (cpu, cuda, cuda:N)."""
    try:
        import torch
    except ImportError:
        raise RunError("torch is not installed: the evaluator runs the model through torch and "
                       "transformers") from None
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else ", built without CUDA"
            raise UsageError(f"--device = {name!r}, but torch sees no CUDA GPU (torch "
                             f"{torch.__version__}{build}); expected --device cpu here")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise UsageError(f"--device = {name!r}, but torch sees {torch.cuda.device_count()} "
                             "CUDA GPU(s)")


def load_runner():
    """proxyattn.eval.runner (torch and transformers from here on)."""
    try:
        import transformers  # noqa: F401
        from . import runner
    except ImportError as e:
        raise RunError(f"the evaluator runs the model through torch and transformers: {e}") \
            from None
    return runner


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(e):
    """An exception as one line: its message without the library's "[function at file:line]"."""
    text = M._error_text(e) if str(e).strip() else ""
    return text or type(e).__name__


class Progress:
    """tqdm on a terminal when importable, else a line on stderr every few seconds (30 s when
    stderr is not a terminal, e.g. a log file)."""

    def __init__(self, total, disable=False):
        self.total, self.done, self.bar, self.disable = total, 0, None, disable
        self.t0 = self.last = time.time()
        self.every = 5 if sys.stderr.isatty() else 30
        if not disable and sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="prompt", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, k, what=""):
        self.done += k
        if self.disable:
            return
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)
            self.bar.update(k)
        elif time.time() - self.last > self.every or self.done == self.total:
            self.last = time.time()
            el = self.last - self.t0
            eta = el / self.done * (self.total - self.done) if self.done else 0
            print(f"[{self.done}/{self.total}] {what} {el:.0f}s elapsed, ~{eta:.0f}s left",
                  file=sys.stderr, flush=True)

    def write(self, line):
        """A line that doesn't break the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def calibrate_gamma(runner, config, rows, target, small=8, iters=14, tol=0.003):
    """gamma whose mean density over rows is nearest the target -> (gamma, density on rows).

    Density grows with gamma. Bisection on the first `small` rows, then up to three secant steps
    on all rows (the slope from the bisection's last bracket), keeping the best gamma seen."""
    def dens(g, sub):
        runner.configure("proxyattn", {"config": dict(config, gamma=g)})
        d = runner.densities(sub)
        return sum(d) / len(d)

    few = rows[:small]
    top = dens(1.0, few)
    if top <= target:
        return 1.0, (top if len(few) == len(rows) else dens(1.0, rows))
    lo, hi = (0.0, None), (1.0, top)  # (gamma, density) below / above the target
    best = (abs(top - target), 1.0, top)
    for _ in range(iters):
        mid = round(0.5 * (lo[0] + hi[0]), 6)
        d = dens(mid, few)
        best = min(best, (abs(d - target), mid, d))
        if best[0] < tol:
            break
        if d < target:
            lo = (mid, d)
        else:
            hi = (mid, d)
    if len(few) == len(rows):
        return best[1], best[2]
    slope = (hi[1] - lo[1]) / (hi[0] - lo[0]) if lo[1] is not None and hi[0] > lo[0] else None
    g = best[1]
    d = dens(g, rows)
    best = (abs(d - target), g, d)
    prev = None
    for _ in range(3):
        if best[0] < tol:
            break
        if prev is not None and prev[0] != g and prev[1] != d:
            slope = (d - prev[1]) / (g - prev[0])
        if not slope or slope <= 0:
            break
        prev = (g, d)
        g = round(min(1.0, max(1e-4, g + (target - d) / slope)), 6)
        if g == prev[0]:
            break
        d = dens(g, rows)
        best = min(best, (abs(d - target), g, d))
    return best[1], best[2]


def resolve(method, target, lengths, base, runner, calib_rows):
    """The method's knobs on this cell: {"config": Config fields} for proxyattn/topk (plus "k"),
    {"window", "sink", "block_size"} for sink_local; target = the density to match or None."""
    from ..config import Config
    defaults = Config().to_dict()
    if method.kind == "dense":
        return {}
    if method.kind == "sink_local":
        b = int(method.params.get("block_size", base.get("block_size", defaults["block_size"])))
        sink = int(method.params.get("sink", 1))
        window = method.params.get("window")
        if target is not None:
            window, _ = M.solve_window(lengths, b, target, sink)
        return {"window": float(window), "sink": sink, "block_size": b}
    config = dict(base)
    if method.kind == "topk":
        for key in M.TOPK_FIXED:
            config.pop(key, None)
        config.update({k: v for k, v in method.params.items() if k != "k"})
        full = dict(defaults, **config)
        b = int(full["block_size"])
        k = method.params.get("k")
        if target is not None:
            k, _ = M.solve_topk(lengths, b, target, full["keep_sink"], full["keep_diagonal"],
                                full["dense_below_tokens"])
        # gamma 1 asks for every block; the clamp to [k, k] blocks sets each budget
        config.update(gamma=1.0, min_budget_tokens=int(k) * b, max_budget_tokens=int(k) * b)
        return {"config": config, "k": int(k)}
    config.update(method.params)
    if target is not None:
        gamma, _ = calibrate_gamma(runner, config, calib_rows, target)
        config["gamma"] = gamma
    return {"config": config}


def knob_summary(kind, knobs):
    if kind in ("proxyattn", "topk"):
        from ..config import resolve_config
        out = resolve_config(knobs["config"]).to_dict()
        if "k" in knobs:
            out["k"] = knobs["k"]
        return out
    return dict(knobs)


def evaluate(args, checked, state):
    """Everything after the argument checks: tokenizer, haystack, prompts, the model, the cells."""
    t_start = time.time()
    tasks, lengths, info, base = (checked[k] for k in ("tasks", "lengths", "info", "base"))
    methods = checked["methods"]
    t0 = time.time()
    sents = read_haystack(args)
    tok = load_tokenizer(args)
    notes = [f"tokenizer: {type(tok).__name__} ({getattr(tok, 'path', None)}), bos={tok.bos_id}"]
    hay = tokenize_haystack(args, sents, tok, tasks, lengths)
    notes.append(f"haystack: {len(hay.sents)} sentences, {int(hay.starts[-1])} tokens "
                 f"({time.time() - t0:.1f}s)")
    t0 = time.time()
    prompts, top_id = build_prompts(args, tasks, lengths, hay, tok)
    notes.append(f"prompts: {len(prompts) * args.n} ({time.time() - t0:.1f}s)")
    check_vocab(top_id, info["vocab_size"], info["config"])
    check_device(args.device)
    print("\n".join(notes), file=sys.stderr)  # arguments and inputs are good: stderr is ours

    R = load_runner()
    try:
        run = R.Runner(args.model, tok, device=args.device, dtype=args.dtype,
                       batch_tokens=args.batch_tokens)
    except Exception as e:  # noqa: BLE001 (transformers and torch raise many kinds)
        raise RunError(f"--model = {args.model!r}: the model does not load "
                       f"({type(e).__name__}: {_one_line(e)})") from None
    limit = getattr(run, "max_positions", None)
    if isinstance(limit, int) and max(lengths) > limit:
        raise UsageError(f"--lengths item {max(lengths)} exceeds the model's "
                         f"max_position_embeddings = {limit}")
    check_vocab(top_id, getattr(run, "vocab_size", None), "the loaded model's config")
    if args.preset == "ablations" or info["num_kv_heads"] != run.num_kv_heads:
        methods = method_list(args, run.num_kv_heads, base)
    print("methods: " + "; ".join(m.spec for m in methods), file=sys.stderr)
    print(f"base config: {base or 'library defaults'}", file=sys.stderr)
    meta = {"model": args.model, "tokenizer": getattr(tok, "path", None),
            "tokenizer_kind": type(tok).__name__, "haystack": args.haystack,
            "haystack_sha256": sha256(args.haystack), "tasks": tasks, "lengths": lengths,
            "n": args.n, "seed_offset": args.seed_offset, "dtype": args.dtype,
            "batch_tokens": args.batch_tokens, "base_config": base,
            "methods": [m.spec for m in methods], "preset": args.preset,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": state["argv"]}
    meta.update(R.environment(args.device))

    state["total"] = len(tasks) * len(lengths) * len(methods)
    total = state["total"] * args.n
    prog = Progress(total, disable=args.no_progress)
    cells, timing, lines = state["cells"], {}, []
    try:
        for length in lengths:
            for task in tasks:
                insts = prompts[(task, length)]
                rows = [np.asarray(T.prompt_ids(inst, hay, tok), dtype=np.int32)
                        for inst in insts]
                plens = [len(r) for r in rows]
                max_new = T.MAX_NEW_TOKENS[task]
                measured, dense_correct = {}, None
                for m in methods:
                    tm = time.time()
                    target = m.density if m.match is None else measured.get(m.match)
                    knobs = resolve(m, target, plens, base, run, rows[:args.calib_prompts])
                    t_calib = time.time() - tm
                    run.configure(m.kind, knobs)
                    outs, dens = [None] * len(rows), [None] * len(rows)
                    for idx in run.batches(plens):
                        gen, d = run.generate([rows[i] for i in idx], max_new)
                        for j, i in enumerate(idx):
                            outs[i], dens[i] = gen[j], d[j]
                        prog.update(len(idx), f"{task} {length} {m.spec}")
                    correct, partial, cell_lines = [], [], []
                    for inst, ids, g, d in zip(insts, rows, outs, dens):
                        text = tok.decode(g)
                        ok, frac = T.score(inst["answers"], text)
                        correct.append(ok)
                        partial.append(frac)
                        if args.outputs:
                            cell_lines.append(json.dumps({
                                "task": task, "length": length, "method": m.spec,
                                "seed": inst["seed"], "prompt_tokens": len(ids),
                                "answers": inst["answers"], "output": text, "correct": ok,
                                "partial": frac, "density": d}))
                    if m.kind == "dense":
                        dense_correct = correct
                    t_run = time.time() - tm - t_calib
                    rec_mean, rec_min = (None, None)
                    if args.recall_prompts > 0 and m.kind != "dense":
                        rec_mean, rec_min = run.recall(rows[:args.recall_prompts])
                    density = sum(dens) / len(dens)
                    measured[m.spec] = density
                    cell = {"task": task, "length": length, "method": m.spec,
                            "family": m.family, "kind": m.kind}
                    cell.update(stats.cell_stats(correct, partial, dense_correct))
                    cell.update(density=density, density_target=target,
                                density_matched=(None if target is None
                                                 else abs(density - target) <= M.DENSITY_TOL),
                                recall_mean=rec_mean, recall_min_head=rec_min,
                                recall_prompts=min(args.recall_prompts, len(rows))
                                if m.kind != "dense" else 0,
                                knobs=knob_summary(m.kind, knobs),
                                prompt_tokens_mean=sum(plens) / len(plens),
                                seconds=round(time.time() - tm, 2),
                                calibration_seconds=round(t_calib, 2))
                    tt = timing.setdefault(m.spec, [0.0, 0.0, 0])
                    tt[0] += t_run
                    tt[1] += time.time() - tm - t_run
                    tt[2] += len(rows)
                    cells.append(cell)
                    lines += cell_lines
                    # complete cells survive an interrupted or failed run
                    if args.outputs:
                        report.write_lines(args.outputs, lines)
                    if args.json:
                        report.write_json(args.json, cells, dict(meta, complete=False))
                    prog.write(report.table([cell]).splitlines()[-1])
    finally:
        prog.close()
    print(report.table(cells))
    print("\ntime per method (decode = prefill + greedy decoding; other = knob search + recall):")
    for spec, (t_run, t_other, n) in timing.items():
        print(f"  {spec:60s} decode {t_run:8.1f} s ({n / max(t_run, 1e-9):7.1f} prompts/s)  "
              f"other {t_other:6.1f} s")
    meta["complete"] = True
    meta["seconds"] = round(time.time() - t_start, 1)
    meta["method_seconds"] = {s: {"decode": round(v[0], 2), "other": round(v[1], 2),
                                  "prompts": v[2]} for s, v in timing.items()}
    if args.json:
        report.write_json(args.json, cells, meta)
    if args.png:
        report.write_png(args.png, cells, title=os.path.basename(args.model.rstrip("/")))
    print(f"total {meta['seconds']} s", file=sys.stderr)
    return 0


def _say(message):
    print(f"{PROG}: " + " ".join(message.splitlines()), file=sys.stderr, flush=True)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops a run as Ctrl-C does: finished cells stay written


def main(argv=None):
    """The command: returns the exit status (0 done, 2 bad arguments, 1 failed while running, 130
    interrupted by SIGINT or SIGTERM), with one line on stderr for any failure."""
    try:
        old, installed = signal.signal(signal.SIGTERM, _terminate), True
    except ValueError:  # not the main thread: leave signals alone
        old, installed = None, False
    try:
        return _main(argv)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if old is None else old)


def _main(argv):
    state = {"argv": sys.argv[1:] if argv is None else list(argv), "cells": [], "total": None,
             "json": None}
    try:
        args = parse_args(argv)
        state["json"] = args.json
        checked = check_args(args)
        return evaluate(args, checked, state)
    except UsageError as e:
        _say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        done = len(state["cells"])
        where = f"; {state['json']!r} holds them" if done and state["json"] else ""
        if state["total"]:
            _say(f"interrupted after {done} of {state['total']} cells{where}")
        else:
            _say("interrupted before the first cell; nothing written")
        return 130
    except RunError as e:
        _say(f"error: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 (a failure while running: one line, not a traceback)
        done = len(state["cells"])
        kept = f" ({done} finished cells kept in {state['json']!r})" if done and state["json"] \
            else ""
        _say(f"error: {type(e).__name__}: {_one_line(e)}{kept}")
        return 1
