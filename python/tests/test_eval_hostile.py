"""Hostile command lines for `python -m proxyattn.eval`: every bad argument or input file ends with
exit status 2, one line on stderr naming the argument, its value and what was expected, and no
file written; a failure while running exits 1 and an interrupt 130, both without a traceback and
keeping the cells finished so far; outputs are replaced atomically.

    PYTHONPATH=<installed proxyattn> python3 -m pytest -q python/tests/test_eval_hostile.py

Needs neither torch, transformers nor a GPU: the checks run before any model loads, and a fake
runner stands in for the model where a whole run is exercised. Cases that build prompts use the
project's sentencepiece tokenizer (skipped without sentencepiece).
"""
import gzip
import json
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from proxyattn.eval import cli
from proxyattn.eval import report
from proxyattn.eval import tasks as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPM = os.path.join(ROOT, "models", "pa-tiny-8k", "tokenizer.model")
HAS_MATPLOTLIB = cli._installed("matplotlib")


def synthetic_text(n_docs=120):
    words = T.load_words()
    docs = []
    for d in range(n_docs):
        sents = [" ".join(words[(d * 31 + s * 7 + i) % len(words)] for i in range(12)).capitalize()
                 + "." for s in range(6)]
        docs.append(" ".join(sents))
    return "\n".join(docs) + "\n"


@pytest.fixture
def env(tmp_path):
    """A model folder (config.json only: nothing here loads weights), a haystack, an output folder
    and the arguments of a valid command."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "vocab_size": 8192}))
    hay = tmp_path / "hay.txt"
    hay.write_text(synthetic_text())
    out = tmp_path / "out"
    out.mkdir()
    args = ["--model", str(model), "--haystack", str(hay), "--device", "cpu", "--lengths", "1024",
            "--n", "2", "--tasks", "niah_single", "--no-progress", "--json", str(out / "r.json"),
            "--outputs", str(out / "o.jsonl")]
    if HAS_MATPLOTLIB:
        args += ["--png", str(out / "r.png")]
    return types.SimpleNamespace(tmp=tmp_path, model=model, hay=hay, out=out, args=args)


def with_spm(args):
    pytest.importorskip("sentencepiece")
    if not os.path.exists(SPM):
        pytest.skip("no models/pa-tiny-8k/tokenizer.model")
    return args + ["--tokenizer", SPM]


def call(capsys, args):
    rc = cli.main(args)
    err = capsys.readouterr().err
    return rc, err


def usage_error(capsys, env, args, *needles, notes=False):
    """rc 2, one stderr line holding every needle, no traceback, nothing in the output folder.
    notes: the progress notes printed before the model loads may come first."""
    rc, err = call(capsys, args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    if notes:
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("python -m proxyattn.eval: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert os.listdir(env.out) == []
    return lines[0]


def replace(args, flag, *values):
    """args with flag's values replaced (or added)."""
    out = list(args)
    if flag in out:
        i = out.index(flag)
        del out[i:i + 2]
    return out + [flag, *values]


# --- arguments: checked before the tokenizer, the haystack and the model ---------------------

@pytest.mark.parametrize("value, needles", [
    ("", ["--lengths = ''", "expected a comma list"]),
    ("0", ["--lengths item '0'", "expected an integer in [1, "]),
    ("-5", ["--lengths item '-5'", "expected a positive integer"]),
    ("1.5", ["--lengths item '1.5'", "expected a positive integer"]),
    ("8k", ["--lengths item '8k'"]),
    ("1024,", ["--lengths item ''"]),
    ("1024,1024", ["--lengths: 1024 given twice"]),
    ("99999999999999", ["--lengths item '99999999999999'", "expected an integer in"]),
    ("8192", ["--lengths item 8192 exceeds the model's max_position_embeddings = 4096"]),
])
def test_bad_lengths(capsys, env, value, needles):
    usage_error(capsys, env, replace(env.args, "--lengths", value), *needles)


@pytest.mark.parametrize("flag, value, needles", [
    ("--n", "0", ["--n = 0, expected an integer >= 1"]),
    ("--n", "-3", ["--n = -3, expected an integer >= 1"]),
    ("--n", "2.5", ["argument --n: invalid int value: '2.5'"]),
    ("--seed-offset", "-1", ["--seed-offset = -1"]),
    ("--seed-offset", "99999", ["--seed-offset + --n = 100001, expected at most 100000"]),
    ("--tasks", "", ["--tasks = ''", "expected a comma list of niah_single"]),
    ("--tasks", "niah", ["--tasks: unknown 'niah', expected some of niah_single"]),
    ("--tasks", "vt,vt", ["--tasks: 'vt' given twice"]),
    ("--tasks", "vt,,cwe", ["--tasks = 'vt,,cwe' has an empty item"]),
    ("--batch-tokens", "0", ["--batch-tokens = 0, expected an integer >= 1"]),
    ("--batch-tokens", "-1", ["--batch-tokens = -1"]),
    ("--calib-prompts", "0", ["--calib-prompts = 0, expected an integer >= 1"]),
    ("--recall-prompts", "-1", ["--recall-prompts = -1, expected an integer >= 0"]),
    ("--max-docs", "0", ["--max-docs = 0, expected an integer >= 1"]),
    ("--dtype", "fp8", ["argument --dtype: invalid choice: 'fp8'"]),
    ("--device", "gpu", ["--device = 'gpu', expected cpu, cuda or cuda:N"]),
    ("--device", "cuda:x", ["--device = 'cuda:x'"]),
    ("--preset", "big", ["argument --preset: invalid choice: 'big'"]),
])
def test_bad_numbers_and_names(capsys, env, flag, value, needles):
    usage_error(capsys, env, replace(env.args, flag, value), *needles)


@pytest.mark.parametrize("specs, needles", [
    ([], ["argument --methods: expected at least one argument"]),
    ([""], ["method '': unknown kind ''"]),
    (["flash"], ["method 'flash': unknown kind 'flash', expected one of dense"]),
    (["proxyattn:gama=0.9"], ["unknown Config field(s) gama"]),
    (["proxyattn:gamma"], ["expected key=value, got 'gamma'"]),
    (["proxyattn:gamma=2"], ["'proxyattn:gamma=2'", "config.gamma = 2, expected 0 < gamma <= 1"]),
    (["proxyattn:gamma=nan"], ["'proxyattn:gamma=nan'", "gamma"]),
    (["proxyattn:gamma=high"], ["config.gamma = 'high', expected a number"]),
    (["proxyattn:density=1.5"], ["density = 1.5, expected 0 < density <= 1"]),
    (["proxyattn:density=0"], ["density = 0.0, expected 0 < density <= 1"]),
    (["proxyattn:block_size=96"], ["config.block_size = 96, expected 64 or 128"]),
    (["proxyattn:stride=3"], ["config.stride = 3, expected a positive divisor of block_size"]),
    (["proxyattn:block_size=64,stride=128"], ["config.stride = 128"]),
    (["proxyattn:num_proxy_heads=3"],
     ["num_proxy_heads = 3, expected a divisor of the model's 2 KV heads"]),
    (["proxyattn:min_budget_tokens=-1"], ["min_budget_tokens"]),
    (["proxyattn:gamma=0.9,gamma=0.8"], ["gamma given twice"]),
    (["proxyattn:gamma=0.9,density=0.3"], ["give gamma or density, not both"]),
    (["proxyattn:density=0.3,density=match:proxyattn:gamma=0.9"], ["density given twice"]),
    (["topk:density=match:dense"], ["matching dense's density"]),
    (["topk:density=match:flash"], ["its density=match target", "unknown kind 'flash'"]),
    (["sink_local:window=0.5"], ["window = 0.5, expected a number of blocks >= 1"]),
    (["sink_local:window=inf"], ["window = inf"]),
    (["sink_local:window=true"], ["window = True"]),
    (["sink_local:window=4,sink=1.5"], ["sink = 1.5, expected an integer >= 0"]),
    (["sink_local:window=4,block_size=96"], ["config.block_size = 96, expected 64 or 128"]),
    (["sink_local:window=4,gamma=0.9"], ["unknown setting(s) gamma"]),
    (["sink_local:sink=2"], ["sink_local needs window=BLOCKS or density="]),
    (["topk:k=0"], ["k = 0, expected an integer >= 1"]),
    (["topk:k=2.5"], ["k = 2.5, expected an integer >= 1"]),
    (["topk:k=4,gamma=0.5"], ["topk sets its budget from k; remove gamma"]),
    (["dense:gamma=1"], ["dense takes no settings"]),
    (["proxyattn:gamma=0.9", "proxyattn:gamma=0.90"],
     ["'proxyattn:gamma=0.9' and 'proxyattn:gamma=0.90' are the same method"]),
    (["proxyattn:gamma=0.9,stride=4", "proxyattn:stride=4,gamma=0.9"], ["are the same method"]),
    (["proxyattn:gamma=0.90", "topk:density=match:proxyattn:gamma=0.9"],
     ["are the same method", "density=match target"]),
])
def test_bad_methods(capsys, env, specs, needles):
    usage_error(capsys, env, env.args + ["--methods", *specs], *needles)


def test_preset_with_equivalent_method(capsys, env):
    usage_error(capsys, env, env.args + ["--preset", "study", "--methods", "proxyattn:gamma=0.90"],
                "'proxyattn:gamma=0.9' and 'proxyattn:gamma=0.90' are the same method")


@pytest.mark.parametrize("value, needles", [
    ("gamma", ["--defaults = 'gamma': expected key=value"]),
    ("=3", ["expected key=value, got '=3'"]),
    ("gama=0.9", ["--defaults: unknown Config field(s) gama"]),
    ("gamma=2", ["--defaults: config.gamma = 2"]),
    ("block_size=64,block_size=128", ["block_size given twice"]),
    ("block_size=64,stride=128", ["config.stride = 128"]),
])
def test_bad_defaults(capsys, env, value, needles):
    usage_error(capsys, env, env.args + ["--defaults", value], *needles)


def test_bad_model_config_entry(capsys, env):
    cfg = json.loads((env.model / "config.json").read_text())
    cfg["proxyattn"] = {"gamma": 1.5}
    (env.model / "config.json").write_text(json.dumps(cfg))
    usage_error(capsys, env, env.args, "the proxyattn entry of", "config.gamma = 1.5")


@pytest.mark.parametrize("case", ["missing", "relative", "file", "no_config", "bad_json", "empty"])
def test_bad_model(capsys, env, case):
    if case == "missing":
        path, needle = str(env.tmp / "nothere"), "no such folder"
    elif case == "relative":
        path, needle = "./nothere/model", "no such folder"
    elif case == "file":
        path, needle = str(env.hay), "is a file, expected a transformers model folder"
    elif case == "no_config":
        path, needle = str(env.out.parent / "empty_model"), "no config.json in the folder"
        os.mkdir(path)
    elif case == "bad_json":
        (env.model / "config.json").write_text("{not json")
        path, needle = str(env.model), "is not readable JSON"
    else:
        path, needle = "", "--model = ''"
    usage_error(capsys, env, replace(env.args, "--model", path), needle)


@pytest.mark.parametrize("case", ["missing_model_file", "missing_path", "junk_file", "empty"])
def test_bad_tokenizer(capsys, env, case):
    if case == "missing_model_file":
        usage_error(capsys, env, env.args + ["--tokenizer", str(env.tmp / "t.model")],
                    "--tokenizer = ", "t.model': no such file or folder")
    elif case == "missing_path":
        usage_error(capsys, env, env.args + ["--tokenizer", "./tok/dir"], "no such file or folder")
    elif case == "junk_file":
        pytest.importorskip("sentencepiece")
        junk = env.tmp / "junk.model"
        junk.write_bytes(bytes(range(256)) * 4)
        usage_error(capsys, env, env.args + ["--tokenizer", str(junk)],
                    "is not a sentencepiece model")
    else:
        usage_error(capsys, env, env.args + ["--tokenizer", ""], "--tokenizer = ''")


@pytest.mark.parametrize("flag", ["--json", "--png", "--outputs"])
def test_bad_output_paths(capsys, env, flag):
    usage_error(capsys, env, replace(env.args, flag, str(env.tmp / "nodir" / "x")),
                f"{flag} = ", "expected a path in an existing folder")
    usage_error(capsys, env, replace(env.args, flag, str(env.out)), "is a folder")
    usage_error(capsys, env, replace(env.args, flag, ""), f"{flag} = '', expected a file path")
    if os.path.exists("/dev/null"):
        usage_error(capsys, env, replace(env.args, flag, "/dev/null"),
                    "exists and is not a regular file")
    usage_error(capsys, env, replace(env.args, flag, str(env.hay)), "is also --haystack's file")
    usage_error(capsys, env, replace(env.args, flag, str(env.model / "config.json")),
                "is also --model's file")


def test_png_without_matplotlib(capsys, env, monkeypatch):
    monkeypatch.setattr(cli, "_installed", lambda name: name != "matplotlib")
    usage_error(capsys, env, replace(env.args, "--png", str(env.out / "r.png")), "--png = ",
                "needs matplotlib")


def test_two_outputs_one_file(capsys, env):
    args = replace(env.args, "--outputs", os.path.join(str(env.out), ".", "r.json"))
    usage_error(capsys, env, args, "--outputs = ", "is also --json's file")


# --- the haystack: read before the tokenizer --------------------------------------------------

@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("folder", "a folder"),
    ("empty", "no text in the file"),
    ("blank", "no text in the file"),
    ("binary", "not UTF-8 text"),
    ("latin1", "not UTF-8 text (line 2, byte 4 of the line)"),
    ("nul", "line 2 holds the control character '\\x00'"),
    ("truncated_gz", "a damaged gzip file"),
    ("not_gz", "a damaged gzip file"),
])
def test_bad_haystack(capsys, env, case, needle):
    path = env.tmp / f"h_{case}"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "blank":
        path.write_text("\n  \n\t\n")
    elif case == "binary":
        path.write_bytes(bytes(range(128, 256)) * 64)
    elif case == "latin1":
        path.write_bytes("plain words.\ncaf\u00e9 au lait.\n".encode("latin-1"))
    elif case == "nul":
        path.write_bytes(b"plain words.\nmore\x00words.\n")
    elif case == "truncated_gz":
        data = gzip.compress(synthetic_text().encode())
        path.write_bytes(data[:len(data) // 2])
    elif case == "not_gz":
        path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    usage_error(capsys, env, replace(env.args, "--haystack", str(path)), "--haystack", needle)


def test_haystack_reader_matches_text_mode(tmp_path):
    """read_sentences decodes as open(path, "rt") does, gzip or not; max_docs counts lines."""
    text = "One. Two!\r\nthree four\rfive.\n\nsix\n"
    plain = tmp_path / "a.txt"
    plain.write_bytes(text.encode())
    packed = tmp_path / "a.bin"  # gzip found by its magic bytes, not its name
    packed.write_bytes(gzip.compress(text.encode()))
    with open(plain, encoding="utf-8") as f:
        expect = [s for line in f for s in T.split_sentences(line)]
    assert T.read_sentences(str(plain)) == expect == T.read_sentences(str(packed))
    assert T.read_sentences(str(plain), max_docs=1) == ["One.", "Two!"]
    blank_first = tmp_path / "b.txt"
    blank_first.write_text("\nx\n")
    with pytest.raises(ValueError, match="no text in its first 1 lines"):
        T.read_sentences(str(blank_first), max_docs=1)


def test_empty_haystack_window():
    hay = T.Haystack([], T.WordTokenizer())
    rng = np.random.default_rng(0)
    assert hay.window(rng, 0) == (0, 0)
    with pytest.raises(ValueError, match="no sentences"):
        hay.window(rng, 100)


# --- prompts: built with the tokenizer, before the model --------------------------------------

def test_length_too_short_for_the_task(capsys, env):
    args = with_spm(replace(env.args, "--lengths", "60"))
    for task in T.TASKS:
        line = usage_error(capsys, env, replace(args, "--tasks", task), "--lengths: length 60 is "
                           f"too short for {task}", "expected a length >=")
        need = int(line.rsplit(">= ", 1)[1])
        assert need > 60


def test_fit_error_names_the_minimum():
    tok = T.WordTokenizer()
    hay = T.Haystack.from_text(synthetic_text(), tok)
    words = T.load_words()
    for task in T.TASKS:
        with pytest.raises(ValueError, match=f"too short for {task}.*expected a length >= "):
            T.fit(task, T.eval_seed(task, 40, 0), 40, hay, tok, words)


def test_haystack_shorter_than_a_prompt(capsys, env):
    short = env.tmp / "short.txt"
    short.write_text("A few words. Not many more.\n")
    args = with_spm(replace(env.args, "--haystack", str(short)))
    usage_error(capsys, env, args, "holds ", "tokens, fewer than the longest length 1024")
    usage_error(capsys, env, with_spm(env.args + ["--max-docs", "1"]),
                "in its first 1 lines, fewer than the longest length 1024")


def test_tokenizer_larger_than_the_model(capsys, env):
    cfg = json.loads((env.model / "config.json").read_text())
    cfg["vocab_size"] = 100
    (env.model / "config.json").write_text(json.dumps(cfg))
    usage_error(capsys, env, with_spm(env.args), "the model's vocab_size is 100")


def test_cuda_without_a_gpu(capsys, env):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    usage_error(capsys, env, with_spm(replace(env.args, "--device", "cuda")),
                "--device = 'cuda', but torch sees no CUDA GPU")


def test_missing_dependency_is_one_line(capsys, env, monkeypatch):
    """Valid arguments without torch/transformers: exit 1, one line, nothing written."""
    args = with_spm(env.args)
    monkeypatch.setattr(cli, "check_device", lambda name: None)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    rc, err = call(capsys, args)
    assert rc == 1, err
    assert err.strip().splitlines()[-1].startswith("python -m proxyattn.eval: error: ")
    assert "transformers" in err and "Traceback" not in err
    assert os.listdir(env.out) == []


# --- a whole run with a fake runner -------------------------------------------------------------

class FakeRunner:
    """Stands in for runner.Runner: answers every prompt with "1234567", density 0.5 (1 for
    dense); `fail` (an exception, or "SIGTERM" to send that signal) stops the fail_at-th generate
    call."""
    fail, fail_at = None, None

    def __init__(self, model_path, tokenizer, device="cpu", dtype="bf16", batch_tokens=1):
        self.tok, self.batch_tokens, self.calls = tokenizer, batch_tokens, 0
        self.num_kv_heads, self.max_positions, self.vocab_size = 2, 4096, 8192
        self.kind, self.seen = "dense", []
        FakeRunner.last = self

    def configure(self, kind, knobs):
        self.kind = kind

    def batches(self, lengths):
        return [[i] for i in range(len(lengths))]

    def generate(self, rows, max_new):
        self.seen.extend([int(t) for t in r] for r in rows)
        self.calls += 1
        if self.fail is not None and self.calls == self.fail_at:
            if self.fail == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)
            raise self.fail
        d = 1.0 if self.kind == "dense" else 0.5
        return [self.tok.encode("1234567") for _ in rows], [d] * len(rows)

    def densities(self, rows):
        return [0.5] * len(rows)

    def recall(self, rows):
        return 0.9, 0.8


@pytest.fixture
def fake(monkeypatch):
    """The fake runner module cli.load_runner returns; any device passes."""
    mod = types.SimpleNamespace(Runner=FakeRunner, environment=lambda device: {"gpu": None})
    monkeypatch.setattr(cli, "load_runner", lambda: mod)
    monkeypatch.setattr(cli, "check_device", lambda name: None)
    monkeypatch.setattr(FakeRunner, "fail", None)
    return mod


def run_args(env):
    args = replace(with_spm(env.args), "--tasks", "niah_single,vt")
    return args + ["--methods", "proxyattn:gamma=0.9", "sink_local:window=2",
                   "--defaults", "block_size=64,min_budget_tokens=64"]


def test_fake_run_succeeds(capsys, env, fake):
    rc, err = call(capsys, run_args(env))
    assert rc == 0, err
    data = json.loads((env.out / "r.json").read_text())
    assert data["meta"]["complete"] is True
    assert len(data["cells"]) == 2 * 3  # tasks x methods
    lines = (env.out / "o.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 3 * 2
    assert all(json.loads(x)["output"] == "1234567" for x in lines)
    assert sorted(os.listdir(env.out)) == ["o.jsonl", "r.json"] + ["r.png"] * HAS_MATPLOTLIB
    # the runner decodes exactly the prompts the task generator fits, in cell order
    tok = T.SpmTokenizer(SPM)
    hay = T.Haystack.from_file(str(env.hay), tok)
    words = T.load_words()
    expect = [T.fit(task, T.eval_seed(task, 1024, i), 1024, hay, tok, words)[1]
              for task in ("niah_single", "vt") for _ in range(3) for i in range(2)]
    assert FakeRunner.last.seen == expect


@pytest.mark.parametrize("fail, rc, needle", [
    (KeyboardInterrupt(), 130, "interrupted after 2 of 6 cells"),
    ("SIGTERM", 130, "interrupted after 2 of 6 cells"),
    (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), 1,
     "error: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB (2 finished cells kept"),
])
def test_fake_run_stops_keeping_finished_cells(capsys, env, fake, monkeypatch, fail, rc, needle):
    monkeypatch.setattr(FakeRunner, "fail", fail)
    monkeypatch.setattr(FakeRunner, "fail_at", 5)  # 2 prompts per cell: the third cell's first
    got, err = call(capsys, run_args(env))
    assert got == rc, err
    last = err.strip().splitlines()[-1]
    assert needle in last and "Traceback" not in err
    data = json.loads((env.out / "r.json").read_text())
    assert data["meta"]["complete"] is False and len(data["cells"]) == 2
    assert len((env.out / "o.jsonl").read_text().splitlines()) == 2 * 2
    assert sorted(os.listdir(env.out)) == ["o.jsonl", "r.json"]  # no temporary file left


def test_interrupt_before_the_first_cell(capsys, env, monkeypatch):
    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.T, "read_sentences", stop)
    rc, err = call(capsys, env.args)
    assert rc == 130 and err.strip() == ("python -m proxyattn.eval: interrupted before the first "
                                         "cell; nothing written")
    assert os.listdir(env.out) == []


class ShortRunner(FakeRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_positions = 512


def test_too_long_for_the_loaded_model(capsys, env, fake):
    """A hub model's limits are known only once it loads: still exit 2 and nothing written."""
    fake.Runner = ShortRunner
    usage_error(capsys, env, run_args(env), "exceeds the model's max_position_embeddings = 512",
                notes=True)


# --- atomic outputs -----------------------------------------------------------------------------

def test_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    report.write_json(str(path), [{"a": 1.0}], {"complete": True})
    before = path.read_text()

    def broken(f):
        f.write("{\"half\": ")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        report.write_atomic(str(path), broken)
    assert path.read_text() == before and os.listdir(tmp_path) == ["r.json"]
    report.write_json(str(path), [{"x": float("nan")}], {})
    assert json.loads(path.read_text())["cells"] == [{"x": None}]
    report.write_lines(str(tmp_path / "o.jsonl"), ["{}", "{}"])
    assert (tmp_path / "o.jsonl").read_text() == "{}\n{}\n"
    mode = os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


# --- the real command line ----------------------------------------------------------------------

def test_module_exit_status_and_one_line(env):
    """`python -m proxyattn.eval` itself: 2 and one line for bad arguments, 0 for --help."""
    run = [sys.executable, "-m", "proxyattn.eval"]
    for bad in (replace(env.args, "--n", "0"), ["--lengths", "8192"], env.args + ["--bogus"]):
        p = subprocess.run(run + bad, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
        assert p.stdout == ""
    assert os.listdir(env.out) == []
    p = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "--lengths" in p.stdout
