#!/usr/bin/env python3
"""Hostile input to the `proxyattn` command line (docs/SPEC.md section 6).

Runs the built binary with bad flags and bad files and checks, for every case: exit code 2, one
printable line on stderr starting with "error: ", nothing on stdout, no file left behind in the
working folder, and an end within a time limit (a hang is a failure). A few cases check that
extreme but valid input works, and that NaN never reads as a clean number.

Usage: tests/cli/hostile.py build/proxyattn     (exit status 0 when every case passes)
"""
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/proxyattn")
TIME_LIMIT = 60  # seconds per case; every case here takes well under one
SMALL = ["--seq-len", "256", "--heads", "2", "--kv-heads", "1", "--head-dim", "64"]
failures = []


def small(given):
    """SMALL without the flags the case gives itself (a repeated flag is an error of its own)."""
    out = []
    for i in range(0, len(SMALL), 2):
        if SMALL[i] not in given:
            out += SMALL[i:i + 2]
    return out

passed = 0


def limit_memory(bytes_):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (bytes_, bytes_))
    return apply


def run(args, cwd, mem=16 << 30):
    try:
        p = subprocess.run([BIN] + args, cwd=cwd, capture_output=True, timeout=TIME_LIMIT,
                           preexec_fn=limit_memory(mem))
    except subprocess.TimeoutExpired:
        return None
    return p


def case(name, check):
    global passed
    work = tempfile.mkdtemp(prefix="proxyattn_hostile_")
    try:
        problem = check(work)
    except Exception as e:  # a bug in the check itself is a failure too
        problem = "check raised %r" % (e,)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problem:
        failures.append("%s: %s" % (name, problem))
        print("FAIL", name, "--", problem)
    else:
        passed += 1


def clean_line(err):
    """None when err is one printable line starting with 'error: ', else the problem."""
    if not err.endswith(b"\n") or err.count(b"\n") != 1:
        return "stderr is not one line: %r" % err[:300]
    line = err[:-1]
    if not line.startswith(b"error: "):
        return "stderr does not start with 'error: ': %r" % err[:300]
    if any(b < 0x20 or b >= 0x7f for b in line):
        return "stderr holds control or non-ASCII bytes: %r" % err[:300]
    if len(line) > 1500:
        return "stderr line of %d bytes" % len(line)
    return None


def reject(args, expect=None, setup=None, mem=16 << 30, stdout_ok=False):
    """The call fails with exit 2, one clean line (holding `expect`), no stdout, no new file."""
    def check(work):
        extra = setup(work) if setup else []
        before = set(os.listdir(work))
        p = run(args + extra, work, mem)
        if p is None:
            return "no end within %d s" % TIME_LIMIT
        if p.returncode != 2:
            return "exit %d (stderr %r)" % (p.returncode, p.stderr[:300])
        problem = clean_line(p.stderr)
        if problem:
            return problem
        if expect and expect.encode() not in p.stderr:
            return "stderr lacks %r: %r" % (expect, p.stderr[:300])
        if p.stdout and not stdout_ok:
            return "stdout is not empty: %r" % p.stdout[:200]
        if b"wrote" in p.stdout:
            return "stdout says 'wrote' on a failed call"
        left = set(os.listdir(work)) - before
        if left:
            return "files left behind: %s" % sorted(left)
        return None
    return check


def accept(args, setup=None, verify=None, mem=16 << 30):
    def check(work):
        extra = setup(work) if setup else []
        p = run(args + extra, work, mem)
        if p is None:
            return "no end within %d s" % TIME_LIMIT
        if p.returncode != 0:
            return "exit %d (stderr %r)" % (p.returncode, p.stderr[:300])
        return verify(p, work) if verify else None
    return check


def no_crash(args, setup=None, mem=16 << 30):
    """Exit 0, or exit 2 with one clean line: never a signal, never an abort."""
    def check(work):
        extra = setup(work) if setup else []
        p = run(args + extra, work, mem)
        if p is None:
            return "no end within %d s" % TIME_LIMIT
        if p.returncode == 0:
            return None
        if p.returncode != 2:
            return "exit %d (stderr %r)" % (p.returncode, p.stderr[-300:])
        return clean_line(p.stderr)
    return check


# ---- safetensors files ---------------------------------------------------------------------------

def st_bytes(header, data=b""):
    h = header if isinstance(header, bytes) else header.encode()
    return struct.pack("<Q", len(h)) + h + data


def qkv_header(tokens=128, heads=2, kv=1, dim=64, dtype="F32", names=("q", "k", "v"), extra=None):
    size = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8}[dtype]
    entries, off = {}, 0
    shapes = {names[0]: [tokens, heads, dim], names[1]: [tokens, kv, dim], names[2]: [tokens, kv, dim]}
    for n, s in shapes.items():
        nb = s[0] * s[1] * s[2] * size
        entries[n] = {"dtype": dtype, "shape": s, "data_offsets": [off, off + nb]}
        off += nb
    if extra:
        entries.update(extra)
    return entries, off


def write_file(work, name, content):
    with open(os.path.join(work, name), "wb") as f:
        f.write(content)
    return os.path.join(work, name)


def qkv_file(name="in.safetensors", fill=0.25, nan_at=None, **kw):
    def setup(work):
        entries, size = qkv_header(**kw)
        n = size // 4
        values = [fill * ((i % 7) - 3) for i in range(n)]
        if nan_at is not None:
            values[nan_at] = math.nan
        data = struct.pack("<%df" % n, *values)
        return ["--input", write_file(work, name, st_bytes(json.dumps(entries), data))]
    return setup


def raw_file(content, name="in.safetensors"):
    def setup(work):
        return ["--input", write_file(work, name, content)]
    return setup


def many_tensors(count=400000):
    def setup(work):
        entries, size = qkv_header(tokens=64)
        parts = ['"e%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % i for i in range(count)]
        header = "{" + ",".join(parts) + "," + json.dumps(entries)[1:]
        data = struct.pack("<%df" % (size // 4), *([0.5] * (size // 4)))
        return ["--input", write_file(work, "many.safetensors", st_bytes(header, data))]
    return setup


def nan_json_field(field):
    def verify(p, work):
        line = p.stdout.decode().strip().splitlines()[-1]
        value = json.loads(line).get(field, 0)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return "%s = %r next to a NaN output, expected null/NaN" % (field, value)
        return None
    return verify


def full_density(p, work):
    d = json.loads(p.stdout.decode().strip().splitlines()[-1])["density_weighted"]
    return None if d == 1.0 else "density %r with an unbounded minimum budget, expected 1" % d


def main():
    if not os.access(BIN, os.X_OK):
        print("no binary at", BIN)
        return 2
    big = "9" * 100000
    esc = "\x1b[2J\x1b[31mforged\nerror: line"

    # Crashes: sizes validated before any allocation, any exception a clear exit 2.
    for cmd in ("plan", "check", "bench"):
        case(cmd + " heads 0", reject([cmd, "--seq-len", "64", "--heads", "0", "--kv-heads", "2",
                                        "--head-dim", "64"], "--heads"))
    for args, expect in [
        (["--heads", "-2"], "--heads"), (["--kv-heads", "0"], "--kv-heads"),
        (["--kv-heads", "-1"], "--kv-heads"), (["--heads", "4", "--kv-heads", "3"], "--kv-heads"),
        (["--head-dim", "4"], "head_dim"), (["--head-dim", "0"], "--head-dim"),
        (["--head-dim", "99999999999"], "--head-dim"), (["--seq-len", "99999999999"], "--seq-len"),
        (["--seq-len", "-1"], "--seq-len"), (["--heads", "99999999999999999999"], "--heads"),
        (["--seq-len", "1073741824", "--heads", "65536", "--head-dim", "65536"], None),
        (["--seq-len", "1073741824", "--heads", "64", "--head-dim", "1024"], None),
    ]:
        case("plan " + " ".join(args)[:60], reject(["plan"] + small(args) + args, expect, mem=4 << 30))
    case("threads 100000 under a memory limit",
         no_crash(["plan"] + SMALL + ["--threads", "100000"], mem=1 << 30))

    # Hang: 400k empty tensors in a ~24 MB header parse in linear time.
    case("400k tensors", no_crash(["check"], setup=many_tensors()))

    # Invalid accepted: strict whole-string, range-checked numbers on every flag.
    for flag, value, expect in [
        ("--density", "0", "density"), ("--density", "-1", "density"),
        ("--density", "1.5", "density"), ("--density", "0.5x", "density"),
        ("--gamma", "1.0000001", "1.0000001"), ("--gamma", "0", "gamma"),
        ("--gamma", "nan", "gamma"), ("--gamma", "", "gamma"),
        ("--threads", "-1", "--threads"), ("--threads", "abc", "--threads"),
        ("--threads", "1x", "--threads"), ("--threads", "", "--threads"),
        ("--threads", " 2", "--threads"), ("--threads", "99999999999", "--threads"),
        ("--threads", "2.0", "--threads"), ("--seed", "-1", "--seed"),
        ("--seed", "18446744073709551616", "--seed"), ("--seed", "1x", "--seed"),
        ("--seed", "+1", "--seed"), ("--seed", "0x10", "--seed"),
        ("--seq-len", "1e3", "--seq-len"), ("--heads", "0x10", "--heads"),
        ("--head-dim", "64 ", "--head-dim"), ("--block", "96", "block"),
        ("--block", "64x", "block"), ("--stride", "3", "stride"), ("--stride", "0", "stride"),
        ("--min-budget", "-1", "min_budget"), ("--min-budget", "9223372036854775808", "min_budget"),
        ("--max-budget", "0", "max_budget"), ("--keep-sink", "maybe", "keep_sink"),
        ("--last-block", "diagonal", "last_block"), ("--proxy-heads", "0", "proxy_heads"),
        ("--scale", "nan", "scale"), ("--scale", "-1", "scale"), ("--dtype", "fp8", "--dtype"),
        ("--backend", "tpu", "--backend"), ("--workload", "evil", "--workload"),
    ]:
        case("plan %s %r" % (flag, value), reject(["plan"] + small([flag]) + [flag, value], expect))
    for value in ("1x", "0x3", "", "0,", ",0", "2", "-1", "0, 1", "1,,0", "99999999999"):
        case("show-heads %r" % value,
             reject(["plan"] + SMALL + ["--png", "p.png", "--show-heads", value], "--show-heads"))
    for value in ("0", "-1", "1.5", "x"):
        case("repeats %r" % value, reject(["bench"] + SMALL + ["--repeats", value], "--repeats"))
    case("no subcommand", reject([]))
    case("unknown subcommand", reject(["plot"]))
    case("unknown flag", reject(["plan", "--nope"]))
    case("extra positional", reject(["plan", "extra"]))
    case("flag without value", reject(["plan", "--heads"]))

    # Bad files.
    header_qkv, size = qkv_header()
    good_data = b"\0" * size
    case("input missing", reject(["check", "--input", "missing.safetensors"]))
    case("input is a folder", reject(["check", "--input", "."]))
    case("input empty", reject(["check"], setup=raw_file(b"")))
    case("input 7 bytes", reject(["check"], setup=raw_file(b"\x02\0\0\0\0\0\0")))
    case("header length past the end", reject(["check"], setup=raw_file(b"\xff" * 8 + b"{}")))
    case("NUL and junk after the header",
         reject(["check"], "NUL", setup=raw_file(st_bytes(json.dumps(header_qkv).encode() +
                                                          b"\0junk!!!", good_data))))
    case("trailing junk", reject(["check"], setup=raw_file(st_bytes(json.dumps(header_qkv) + "x",
                                                                      good_data))))
    case("truncated data", reject(["check"], setup=raw_file(st_bytes(json.dumps(header_qkv),
                                                                     good_data[:-1]))))
    case("missing v", reject(["check"], "'v'", setup=qkv_file(names=("q", "k", "w"))))
    case("F64 q/k/v", reject(["check"], "F64", setup=qkv_file(dtype="F64", tokens=16)))
    case("heads not a multiple", reject(["check"], setup=qkv_file(heads=3, kv=2)))
    case("zero tokens", reject(["check"], setup=qkv_file(tokens=0)))
    case("huge name is cut", reject(["check"], setup=raw_file(st_bytes(
        json.dumps({"n" * 1000000: {"dtype": "F99", "shape": [], "data_offsets": [0, 0]}})))))
    case("escape sequences in a name", reject(["check"], setup=raw_file(st_bytes(
        json.dumps({esc: {"dtype": "F99", "shape": [], "data_offsets": [0, 0]}})))))
    bad_cu = dict(header_qkv)
    bad_cu["cu_seqlens"] = {"dtype": "I32", "shape": [3], "data_offsets": [size, size + 12]}
    case("cu_seqlens not monotone", reject(["check"], "cu_seqlens", setup=raw_file(st_bytes(
        json.dumps(bad_cu), good_data + struct.pack("<3i", 0, 100, 50)))))
    case("cu_seqlens short of the tokens", reject(["check"], "cu_seqlens", setup=raw_file(st_bytes(
        json.dumps(bad_cu), good_data + struct.pack("<3i", 0, 50, 100)))))
    case("cu_seqlens not starting at 0", reject(["check"], "cu_seqlens", setup=raw_file(st_bytes(
        json.dumps(bad_cu), good_data + struct.pack("<3i", 1, 50, 128)))))
    case("NaN input with --check-finite",
         reject(["check", "--check-finite"], setup=qkv_file(nan_at=5)))

    # Unclear: messages show why, cut and escaped.
    case("gamma digits", reject(["bench", "--gamma", "1.0000001"], "1.0000001"))
    case("100 kB value is cut", reject(["plan", "--gamma", big]))
    case("100 kB flag is cut", reject(["plan", "--" + "x" * 100000]))
    case("escape sequences in a value", reject(["plan", "--workload", esc]))
    case("escape sequences in a path", reject(["check", "--input", esc]))
    case("escape sequences in --show-heads",
         reject(["plan"] + SMALL + ["--png", "p.png", "--show-heads", esc]))

    # Output files: validated before any writer, written atomically, errors are errors.
    case("png into a missing folder", reject(["plan"] + SMALL + ["--png", "no/p.png"]))
    case("density png into a missing folder",
         reject(["plan"] + SMALL + ["--density-png", "no/d.png"]))
    case("png with a bad head leaves no file",
         reject(["plan"] + SMALL + ["--png", "p.png", "--show-heads", "7"]))
    case("png with bad flags leaves no file",
         reject(["plan"] + SMALL + ["--heads", "0", "--png", "p.png", "--density-png", "d.png"]))
    case("png and density png the same file",
         reject(["plan"] + SMALL + ["--png", "p.png", "--density-png", "p.png"]))
    case("png is a folder", reject(["plan"] + SMALL + ["--png", "."]))
    case("show-heads without png", reject(["plan"] + SMALL + ["--show-heads", "0"]))
    case("png to /dev/full", reject(["plan"] + SMALL + ["--png", "/dev/full"], stdout_ok=True))
    case("density png to /dev/full",
         reject(["plan"] + SMALL + ["--density-png", "/dev/full"], stdout_ok=True))

    # Extreme but valid, and NaN never reported as clean.
    case("min budget INT64_MAX plan", accept(["plan"] + SMALL + ["--min-budget",
                                                                  "9223372036854775807", "--json"],
                                              verify=full_density))
    case("min budget INT64_MAX check", accept(["check"] + SMALL + ["--min-budget",
                                                                    "9223372036854775807"]))
    case("threads 3 and seed 2^64-1", accept(["plan"] + SMALL + ["--threads", "3", "--seed",
                                                                  "18446744073709551615"]))
    case("density 1", accept(["plan"] + SMALL + ["--density", "1"]))
    v_first = 128 * 2 * 64 + 128 * 64  # the first element of v in qkv_file's layout
    case("NaN in v: bench rel_error is not a number",
         accept(["bench", "--json"], setup=qkv_file(nan_at=v_first + 5),
                verify=nan_json_field("rel_error")))
    case("help", accept(["--help"], verify=lambda p, w: None if p.stdout else "no help text"))
    case("version", accept(["--version"]))
    case("png written and nothing else", accept(
        ["plan"] + SMALL + ["--png", "p.png", "--density-png", "d.png"],
        verify=lambda p, w: None if sorted(os.listdir(w)) == ["d.png", "p.png"]
        else "folder holds %s" % sorted(os.listdir(w))))

    # The model commands' numbers go through the same strict parser as the others' (the range in
    # the message, never CLI11's "0.000000 to 1.79e308").
    for args, expect in ((["generate", "--threads", "-3"], "--threads = '-3', expected an integer"),
                         (["generate", "--threads", "99999999999"], "in [0, 2147483647]"),
                         (["generate", "--max-new-tokens", "2e3"], "in [0, 1048576]"),
                         (["eval", "--tasks", "t.jsonl", "--limit", "-1"], "--limit = '-1'"),
                         (["eval", "--tasks", "t.jsonl", "--limit", "1e3"], "--limit = '1e3'"),
                         (["demo", "--repeats", "0"], "--repeats = '0', expected an integer in "
                                                      "[1, 100]"),
                         (["demo", "--repeats", "x"], "--repeats = 'x'")):
        case(" ".join(args), reject(args + ["--model", "."], expect,
                                    setup=lambda w: [] if open(os.path.join(w, "t.jsonl"), "w")
                                    .close() else []))
    # An empty --out is the working folder, never the root ("" + "/demo-blocks.png").
    case("demo --out ''", accept(
        ["demo", "--short", "--repeats", "1", "--out", ""],
        verify=lambda p, w: None if os.listdir(w) == ["demo-blocks.png"]
        else "folder holds %s" % sorted(os.listdir(w))))

    # Past the trained context: the run works and says so once on stderr.
    def short_context_model(work):
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "models", "pa-tiny-8k")
        dst = os.path.join(work, "m")
        os.mkdir(dst)
        for name in ("model.safetensors", "tokenizer.model"):
            os.symlink(os.path.join(src, name), os.path.join(dst, name))
        with open(os.path.join(src, "config.json")) as f:
            cfg = json.load(f)
        cfg["max_position_embeddings"] = 16
        with open(os.path.join(dst, "config.json"), "w") as f:
            json.dump(cfg, f)
        write_file(work, "ids.txt", b"1 100 200 300 400 500 600 700 800 900")
        return ["--model", dst, "--prompt-ids", "ids.txt"]

    def warned_once(p, work):
        lines = [l for l in p.stderr.decode(errors="replace").splitlines() if "warning" in l]
        if len(lines) != 1 or "max_position_embeddings = 16" not in lines[0] \
                or "20 positions" not in lines[0]:
            return "stderr warning lines %r" % lines
        return None
    case("generate past max_position_embeddings warns", accept(
        ["generate", "--max-new-tokens", "10", "--attention", "dense"], setup=short_context_model,
        verify=warned_once))

    print("hostile CLI cases: %d passed, %d failed" % (passed, len(failures)))
    for f in failures:
        print("  FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
