"""Unit tests of the task generators and the scoring rule (numpy + pytest; sentencepiece optional)."""
import collections
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL = os.path.dirname(HERE)
ROOT = os.path.dirname(EVAL)
sys.path.insert(0, EVAL)
import tasks as T  # noqa: E402

LENGTHS = (512, 2048, 8192)


def synthetic_text(n_docs=400, seed=0):
    """Haystack text without any needle vocabulary: sentences of plain words, one document per line."""
    rng = np.random.default_rng(seed)
    words = T.load_words()
    docs = []
    for _ in range(n_docs):
        sents = []
        for _ in range(int(rng.integers(3, 9))):
            w = [words[i] for i in rng.integers(0, len(words), size=int(rng.integers(5, 20)))]
            sents.append(" ".join(w).capitalize() + ".")
        docs.append(" ".join(sents))
    return "\n".join(docs)


def tokenizer_paths():
    return sorted(glob.glob(os.path.join(ROOT, "models", "*", "tokenizer.model")))


def tokenizers():
    toks = [("words", T.WordTokenizer())]
    try:
        import sentencepiece  # noqa: F401
        for p in tokenizer_paths():
            toks.append(("spm:" + os.path.basename(os.path.dirname(p)), T.SpmTokenizer(p)))
    except ImportError:
        pass
    return toks


TOKS = tokenizers()


@pytest.fixture(scope="module", params=[t[0] for t in TOKS])
def env(request):
    tok = dict(TOKS)[request.param]
    hay = T.Haystack.from_text(synthetic_text(), tok)
    return tok, hay, T.load_words()


def test_words_file():
    words = T.load_words()
    assert len(words) == len(set(words)) >= 500
    assert all(re.fullmatch(r"[a-z]{4,8}", w) for w in words)


@pytest.mark.parametrize("task", T.TASKS)
def test_deterministic(env, task):
    tok, hay, words = env
    for L in LENGTHS:
        s = T.eval_seed(task, L, 3)
        a = T.record(T.build(task, s, L, hay, tok, words), hay)
        b = T.record(T.build(task, s, L, hay, tok, words), hay)
        assert a == b
        c = T.record(T.build(task, s + 1, L, hay, tok, words), hay)
        assert c["prompt"] != a["prompt"]


@pytest.mark.parametrize("task", T.TASKS)
def test_answers_in_prompt_and_length(env, task):
    tok, hay, words = env
    for L in LENGTHS:
        for i in range(5):
            inst = T.build(task, T.eval_seed(task, L, i), L, hay, tok, words)
            rec = T.record(inst, hay)
            assert rec["answers"], rec
            for a in rec["answers"]:
                assert T.answer_found(a, rec["prompt"]), (task, L, a)
            assert rec["length"] <= L - T.MAX_NEW_TOKENS[task]
            if not (task == "cwe" and isinstance(tok, T.WordTokenizer)):  # word mode runs out of words
                assert rec["length"] >= 0.85 * L - T.MAX_NEW_TOKENS[task], (task, L, rec["length"])
            assert rec["max_new_tokens"] == T.MAX_NEW_TOKENS[task]
            # the generated answer text the model is trained on holds every answer
            assert T.score(rec["answers"], inst["answer_text"]) == (True, 1.0)


def test_niah_structure(env):
    tok, hay, words = env
    for i in range(20):
        r = T.record(T.build("niah_single", T.eval_seed("niah_single", 2048, i), 2048, hay, tok, words), hay)
        needles = re.findall(r"special magic numbers for ([a-z]+-[a-z]+) is: (\d+)\.", r["prompt"])
        assert len(needles) == 1 and needles[0][1] == r["answers"][0]
        assert r["prompt"].endswith("The special magic number for %s mentioned in the provided text is" % needles[0][0])
        r = T.record(T.build("niah_multikey", T.eval_seed("niah_multikey", 2048, i), 2048, hay, tok, words), hay)
        needles = re.findall(r"special magic numbers for ([a-z]+-[a-z]+) is: (\d+)\.", r["prompt"])
        assert len(needles) == T.NIAH_MULTIKEY_NEEDLES
        keys = [k for k, _ in needles]
        assert len(set(keys)) == len(keys)
        asked = re.search(r"special magic number for ([a-z]+-[a-z]+) mentioned", r["prompt"]).group(1)
        assert dict(needles)[asked] == r["answers"][0]
        assert sum(v == r["answers"][0] for _, v in needles) == 1
        r = T.record(T.build("niah_multivalue", T.eval_seed("niah_multivalue", 2048, i), 2048, hay, tok, words), hay)
        needles = re.findall(r"special magic numbers for ([a-z]+-[a-z]+) is: (\d+)\.", r["prompt"])
        assert [v for _, v in needles] == r["answers"]  # in text order
        assert len({k for k, _ in needles}) == 1


def test_vt_structure(env):
    tok, hay, words = env
    for i in range(20):
        r = T.record(T.build("vt", T.eval_seed("vt", 2048, i), 2048, hay, tok, words), hay)
        val = re.search(r"assigned the value (\d+) in the text", r["prompt"]).group(1)
        assign = dict(re.findall(r"VAR ([A-Z]{5}) = (VAR [A-Z]{5}|\d+)\.", r["prompt"]))
        assert len(assign) == T.VT_CHAINS * (T.VT_HOPS + 1)

        def resolve(v):
            while assign[v].startswith("VAR "):
                v = assign[v][4:]
            return assign[v]
        holders = [v for v in assign if resolve(v) == val]
        assert sorted(holders) == sorted(r["answers"])


def test_cwe_structure(env):
    tok, hay, words = env
    for L in (2048, 8192):
        r = T.record(T.build("cwe", T.eval_seed("cwe", L, 1), L, hay, tok, words), hay)
        items = re.findall(r"\d+\. ([a-z]+)", r["prompt"].split("Question:")[0])
        cnt = collections.Counter(items)
        top = [w for w, _ in cnt.most_common(10)]
        assert sorted(top) == sorted(r["answers"])
        assert cnt.most_common(11)[-1][1] < cnt[r["answers"][-1]]


def test_seeds_disjoint_from_training():
    seen = set()
    for task in T.TASKS:
        for L in (1024, 2048, 4096, 8192, 16384, 32768):
            for i in (0, 1, 499, 99999):
                s = T.eval_seed(task, L, i)
                assert s >= T.EVAL_SEED_BASE
                assert s not in seen
                seen.add(s)


def test_scoring_rule():
    assert T.answer_found("1234567", "The number is 1234567.")
    assert T.answer_found("1234567", " 1234567")
    assert not T.answer_found("1234567", "12345678")
    assert not T.answer_found("1234567", "91234567")
    assert T.answer_found("ABCDE", "they are: abcde fghij")
    assert not T.answer_found("ABCDE", "ABCDEF")
    assert T.answer_found("dark  Horse", "a DARK\nhorse")
    assert T.score(["1", "2"], "1, 3") == (False, 0.5)
    assert T.score(["1", "2"], "2 and 1") == (True, 1.0)


def test_spm_token_lengths_exact():
    """With the shipped tokenizer, the length field is the evaluator's token count and token mode
    (used in training) equals tokenizing the prompt text."""
    pytest.importorskip("sentencepiece")
    paths = tokenizer_paths()
    if not paths:
        pytest.skip("no models/*/tokenizer.model")
    tok = T.SpmTokenizer(paths[0])
    hay = T.Haystack.from_text(synthetic_text(), tok)
    words = T.load_words()
    for task in T.TASKS:
        for L in (512, 4096):
            inst = T.build(task, T.eval_seed(task, L, 7), L, hay, tok, words)
            rec = T.record(inst, hay)
            ids = [tok.bos_id] + tok.encode(rec["prompt"])
            assert len(ids) == rec["length"]
            assert ids == T.to_ids(inst, hay, tok).tolist()


def test_generate_cli_deterministic(tmp_path):
    hay = tmp_path / "hay.txt"
    hay.write_text(synthetic_text(200, seed=1))
    outs = []
    for k in range(2):
        out = tmp_path / f"p{k}.jsonl"
        subprocess.run([sys.executable, os.path.join(EVAL, "generate.py"), "--haystack", str(hay), "--lengths",
                        "512,1024", "--n", "3", "--out", str(out)], check=True)
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    recs = [json.loads(x) for x in outs[0].splitlines()]
    assert len(recs) == 2 * len(T.TASKS) * 3
    for r in recs:
        assert set(r) >= {"prompt", "answers", "task", "length", "seed"}
        assert all(T.answer_found(a, r["prompt"]) for a in r["answers"])


# sha256 of the token ids (to_ids) and of the JSON records the generator produced for these seeds
# with models/pa-tiny-8k/tokenizer.model over synthetic_text(), before the generator moved to
# python/proxyattn/eval/tasks.py: training samples and evaluation prompts must stay byte-identical.
GOLDEN_IDS = "a5a419d7b961ebcfcd92ac8f466e7cc130e8cb8f6e6cbc3b369666ae3f4aec5d"
GOLDEN_RECORDS = "7e5f85dedf8b234d16542db5f92c13bc668d457fda22d482d876c60fb2c69c74"


def test_spm_ids_unchanged():
    pytest.importorskip("sentencepiece")
    path = os.path.join(ROOT, "models", "pa-tiny-8k", "tokenizer.model")
    if not os.path.exists(path):
        pytest.skip("no models/pa-tiny-8k/tokenizer.model")
    import hashlib
    tok = T.SpmTokenizer(path)
    hay = T.Haystack.from_text(synthetic_text(), tok)
    words = T.load_words()
    h_ids, h_rec = hashlib.sha256(), hashlib.sha256()
    for task in T.TASKS:
        for L in (512, 4096):
            for seed in (0, 1, 12345, T.eval_seed(task, L, 3)):
                inst = T.build(task, seed, L, hay, tok, words)
                ids = T.to_ids(inst, hay, tok)
                h_ids.update(ids.tobytes())
                h_rec.update(json.dumps(T.record(inst, hay), sort_keys=True).encode())
                fitted, fit_ids = T.fit(task, seed, L, hay, tok, words)  # exact: fit == build
                assert fit_ids == ids.tolist() and T.record(fitted, hay) == T.record(inst, hay)
    assert h_ids.hexdigest() == GOLDEN_IDS
    assert h_rec.hexdigest() == GOLDEN_RECORDS
