"""proxyattn.eval.tasks with tokenizers other than the project's: a whitespace tokenizer whose
joined text costs more tokens than its pieces (so prompts must be trimmed to fit), with and
without BOS, and the project's sentencepiece model (exact: fit() == build())."""
import glob
import os

import numpy as np
import pytest

from proxyattn.eval import tasks as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class JoinTokenizer:
    """One id per word, plus one more per 4 spaces of the text: joining pieces with spaces adds
    tokens that the pieces' own counts miss (as byte-level BPE merges differ across joins)."""
    token_mode = False
    eos_id = 2

    def __init__(self, bos_id=1):
        self.bos_id = bos_id

    def encode(self, s):
        return [10 + len(w) for w in s.split()] + [7] * (s.count(" ") // 4)

    def encode_batch(self, strs):
        return [self.encode(s) for s in strs]

    def decode(self, ids):
        raise NotImplementedError


def synthetic_text(n_docs=300, seed=0):
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


@pytest.mark.parametrize("bos", [1, None])
@pytest.mark.parametrize("task", T.TASKS)
def test_fit_never_exceeds(task, bos):
    tok = JoinTokenizer(bos)
    hay = T.Haystack.from_text(synthetic_text(), tok)
    words = T.load_words()
    trimmed = 0
    for length in (1024, 4096):
        for i in range(4):
            seed = T.eval_seed(task, length, i)
            built = T.build(task, seed, length, hay, tok, words)
            over = len(T.prompt_ids(built, hay, tok)) + T.MAX_NEW_TOKENS[task] > length
            inst, ids = T.fit(task, seed, length, hay, tok, words)
            trimmed += over
            assert len(ids) + T.MAX_NEW_TOKENS[task] <= length
            assert ids == T.prompt_ids(inst, hay, tok)
            assert inst["length"] == len(ids) and inst["target_length"] == length
            assert (ids[0] == bos) if bos is not None else (ids[0] != 1)
            if task != "cwe":
                assert len(ids) >= 0.8 * length - T.MAX_NEW_TOKENS[task]
            text = T.to_text(inst, hay)
            assert all(T.answer_found(a, text) for a in inst["answers"])
            assert T.fit(task, seed, length, hay, tok, words)[1] == ids  # deterministic
    assert trimmed > 0  # the joins really cost tokens here


def test_hf_adapter_bos_detection():
    class Fake:
        bos_token_id, eos_token_id, name_or_path = 128000, 128001, "fake"

        def __call__(self, s, add_special_tokens=True):
            if isinstance(s, list):
                return {"input_ids": [self(x, add_special_tokens)["input_ids"] for x in s]}
            ids = [ord(c) for c in s]
            return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}

        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids if i < 128000)

    tok = T.HFTokenizer(Fake())
    assert tok.bos_id == 128000 and tok.eos_id == 128001
    assert tok.encode("ab") == [97, 98]
    assert tok.encode_batch(["a", "bc"]) == [[97], [98, 99]]
    assert tok.decode([128000, 104, 105]) == "hi"

    class NoBos(Fake):
        def __call__(self, s, add_special_tokens=True):
            return Fake.__call__(self, s, False)

    assert T.HFTokenizer(NoBos()).bos_id is None


def test_spm_fit_is_build():
    pytest.importorskip("sentencepiece")
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "*", "tokenizer.model")))
    if not paths:
        pytest.skip("no models/*/tokenizer.model")
    tok = T.SpmTokenizer(paths[0])
    hay = T.Haystack.from_text(synthetic_text(), tok)
    words = T.load_words()
    for task in T.TASKS:
        seed = T.eval_seed(task, 2048, 5)
        inst = T.build(task, seed, 2048, hay, tok, words)
        fitted, ids = T.fit(task, seed, 2048, hay, tok, words)
        assert ids == T.to_ids(inst, hay, tok).tolist() == T.prompt_ids(inst, hay, tok)
        assert T.record(fitted, hay) == T.record(inst, hay)
        assert ids == [tok.bos_id] + tok.encode(T.to_text(inst, hay))


def test_eval_tasks_reexport_is_the_same_module():
    import importlib.util
    path = os.path.join(ROOT, "eval", "tasks.py")
    if not os.path.exists(path):
        pytest.skip("no eval/ folder (installed package)")
    spec = importlib.util.spec_from_file_location("eval_tasks_shim", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.NIAH_NEEDLE == T.NIAH_NEEDLE and mod.TASKS == T.TASKS
    assert mod.eval_seed("vt", 4096, 3) == T.eval_seed("vt", 4096, 3)
    assert mod.load_words() == T.load_words()
