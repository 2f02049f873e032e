"""RULER-style long-context tasks: one generator for evaluation prompts (text) and training samples (token ids).

Every task instance is built from its own seed (numpy PCG64 through np.random.default_rng(seed)), so a
record can be regenerated from (task, target_length, seed, haystack file, tokenizer). Evaluation seeds are
>= EVAL_SEED_BASE; training seeds are below it, and training haystacks come from other text (eval/README.md).

A prompt is a list of pieces joined by single spaces. Pieces are either runs of haystack sentences or
short template strings (needles, instructions, the question). With the project's sentencepiece model
(whitespace-split BPE, whitespace collapsed), tokenizing the joined prompt gives exactly the concatenation
of the pieces' tokens, so lengths counted here are the lengths an evaluator sees (checked by the tests).
Other tokenizers (byte-level BPE through transformers' AutoTokenizer) count a joined text differently
from its pieces: fit() builds to the target length, encodes the final prompt and rebuilds the
instance smaller until prompt tokens + max_new_tokens <= target length.

Tokenizers are small adapters: encode(text) -> ids (no BOS), encode_batch(texts), decode(ids) -> text,
bos_id (int or None: whether prompts start with BOS), eos_id, and token_mode (True when joined text
tokenizes exactly to the concatenated pieces, so token ids can be sliced from the haystack).

Only numpy is needed; sentencepiece and transformers are optional (without a tokenizer, lengths are
counted in whitespace words). This file is the one definition of the tasks; eval/tasks.py re-exports it.
"""
import os
import re

import numpy as np

EVAL_SEED_BASE = 1_000_000_000

TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "vt", "cwe")
# Tokens the evaluator generates greedily for each task (the prompt is at most length - this).
MAX_NEW_TOKENS = {"niah_single": 16, "niah_multikey": 16, "niah_multivalue": 48, "vt": 32, "cwe": 64}

NIAH_PREFIX = ("Some special magic numbers are hidden within the following text. "
               "Make sure to memorize it. I will quiz you about the numbers afterwards.")
NIAH_NEEDLE = "One of the special magic numbers for {key} is: {value}."
NIAH_Q_ONE = ("What is the special magic number for {key} mentioned in the provided text? "
              "The special magic number for {key} mentioned in the provided text is")
NIAH_Q_ALL = ("What are all the special magic numbers for {key} mentioned in the provided text? "
              "The special magic numbers for {key} mentioned in the provided text are")
VT_PREFIX = ("Memorize and track the chain(s) of variable assignment hidden in the following text.")
VT_Q = ("Question: Find all variables that are assigned the value {value} in the text above. "
        "Answer: According to the chain(s) of variable assignment in the text above, "
        "{n} variables are assigned the value {value}, they are:")
CWE_PREFIX = ("Below is a numbered list of words. In these words, some appear more often than others. "
              "Memorize the ones that appear most often.")
CWE_Q = ("Question: What are the 10 most common words in the above list? "
         "Answer: The top 10 words that appear most often in the list are:")

NIAH_MULTIKEY_NEEDLES = 4      # 1 queried key + 3 distractor keys
NIAH_MULTIVALUE_VALUES = 4
VT_HOPS = 4                    # 5 variables per chain
VT_CHAINS = 2                  # 1 queried chain + 1 distractor chain
CWE_NUM_COMMON = 10
CWE_FREQ_UNCOMMON = 3

_HERE = os.path.dirname(os.path.abspath(__file__))
WORDS_FILE = os.path.join(_HERE, "words.txt")


def load_words(path=WORDS_FILE):
    with open(path, encoding="utf-8") as f:
        return [w.strip() for w in f if w.strip()]


# ----------------------------------------------------------------------------------------- tokenizers
class SpmTokenizer:
    """The project's sentencepiece model. encode() adds no BOS; prompts start with BOS (id 1)."""
    token_mode = True

    def __init__(self, path):
        import sentencepiece as spm
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()

    def encode(self, s):
        return self.sp.encode(s)

    def encode_batch(self, strs):
        return self.sp.encode(list(strs))

    def decode(self, ids):
        return self.sp.decode([int(i) for i in ids])


class WordTokenizer:
    """Fallback without sentencepiece: one 'token' per whitespace word (ids are meaningless)."""
    bos_id, eos_id = 1, 2
    token_mode = False

    def encode(self, s):
        return [3] * len(s.split())

    def encode_batch(self, strs):
        return [self.encode(s) for s in strs]

    def decode(self, ids):
        raise NotImplementedError


class HFTokenizer:
    """A transformers tokenizer (AutoTokenizer). Prompts start with BOS when the tokenizer adds one
    by itself (Llama-family); encode() never adds special tokens; decode() drops them."""
    token_mode = False

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.path = getattr(tokenizer, "name_or_path", None)
        try:
            tokenizer.model_max_length = 1 << 40  # prompts are long on purpose: no length warning
        except Exception:  # noqa: BLE001 (a read-only attribute is harmless)
            pass
        bos = tokenizer.bos_token_id
        with_special = tokenizer("a")["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        adds_bos = bos is not None and len(with_special) > len(plain) and with_special[0] == bos
        self.bos_id = int(bos) if adds_bos else None
        self.eos_id = tokenizer.eos_token_id

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        from transformers import AutoTokenizer
        return cls(AutoTokenizer.from_pretrained(path, **kwargs))

    def encode(self, s):
        return list(self.tok(s, add_special_tokens=False)["input_ids"])

    def encode_batch(self, strs):
        strs = list(strs)
        out = []
        for i in range(0, len(strs), 4096):
            out.extend(self.tok(strs[i:i + 4096], add_special_tokens=False)["input_ids"])
        return out

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


def make_tokenizer(path=None):
    return SpmTokenizer(path) if path else WordTokenizer()


# ------------------------------------------------------------------------------------------- haystack
_SENT_SPLIT = re.compile(r"(?<=[.!?;])\s+")
_WS = re.compile(r"\s+")


def split_sentences(doc, max_words=48):
    out = []
    for s in _SENT_SPLIT.split(_WS.sub(" ", doc).strip()):
        w = s.split(" ")
        for i in range(0, len(w), max_words):
            piece = " ".join(w[i:i + max_words]).strip()
            if piece:
                out.append(piece)
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls other than whitespace, DEL
_NEWLINE = re.compile(r"\r\n|\r|\n")


def read_sentences(path, max_docs=None, text_only=False):
    """The sentences of a text file, one document per line (gzip when the file starts with gzip's
    magic bytes), the first max_docs lines only when given.

    Raises ValueError naming the file and the problem: not UTF-8, a damaged gzip stream, no text,
    or (text_only=True) a control character such as NUL, the mark of a binary file."""
    import gzip
    import zlib
    sents, lineno = [], 0
    raw = open(path, "rb")
    try:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        for chunk in stream:  # up to and including b"\n"; UTF-8 never has 0x0a inside a character
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not UTF-8 text (line {lineno + 1}, byte "
                                 f"{e.start + 1} of the line)") from None
            # universal newlines, as open(path, "rt") reads: \r\n, \r and \n end a line
            lines = _NEWLINE.split(text)
            if text[-1:] in ("\n", "\r"):
                lines.pop()
            for line in lines:
                if max_docs is not None and lineno >= max_docs:
                    break
                lineno += 1
                if text_only:
                    bad = _CONTROL.search(line)
                    if bad:
                        raise ValueError(f"{path}: line {lineno} holds the control character "
                                         f"{bad.group()!r}, expected text (a binary file?)")
                sents.extend(split_sentences(line))
            if max_docs is not None and lineno >= max_docs:
                break
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: a damaged gzip file after {lineno} lines ({e})") from None
    finally:
        raw.close()
    if not sents:
        raise ValueError(f"{path}: no text in " + (f"its first {max_docs} lines" if max_docs
                                                   is not None else "the file")
                         + ", expected text, one document per line")
    return sents


class Haystack:
    """A stream of sentences (documents in file order, one document per line) with token counts.

    ids[starts[i]:starts[i+1]] are the tokens of sentence i (token mode, spm only)."""

    def __init__(self, sents, tok):
        self.sents = sents
        enc = tok.encode_batch(sents)
        self.ntok = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(sents))
        self.starts = np.zeros(len(sents) + 1, dtype=np.int64)
        np.cumsum(self.ntok, out=self.starts[1:])
        if getattr(tok, "token_mode", False):
            self.ids = np.fromiter((t for e in enc for t in e), dtype=np.int32, count=int(self.starts[-1]))
        else:
            self.ids = None

    @classmethod
    def from_file(cls, path, tok, max_docs=None, text_only=False):
        """The sentences of read_sentences(path, max_docs, text_only), tokenized."""
        return cls(read_sentences(path, max_docs=max_docs, text_only=text_only), tok)

    @classmethod
    def from_text(cls, text, tok):
        sents = []
        for line in text.split("\n"):
            sents.extend(split_sentences(line))
        return cls(sents, tok)

    def window(self, rng, budget):
        """A contiguous run [i, j) of sentences holding at most `budget` tokens, as many as fit."""
        n = len(self.sents)
        if budget <= 0:
            return (0, 0)
        if n == 0:
            raise ValueError("the haystack holds no sentences")
        i = int(rng.integers(0, n))
        # largest j with starts[j] - starts[i] <= budget
        j = int(np.searchsorted(self.starts, self.starts[i] + budget, side="right")) - 1
        if j >= n and self.starts[n] - self.starts[i] < budget and i > 0:
            # ran off the end: start earlier so the window is full
            i = max(0, int(np.searchsorted(self.starts, self.starts[n] - budget, side="left")))
            j = int(np.searchsorted(self.starts, self.starts[i] + budget, side="right")) - 1
        return (i, max(i, min(j, n)))


# -------------------------------------------------------------------------------------------- pieces
def _rand_number(rng, digits):
    return str(int(rng.integers(10 ** (digits - 1), 10 ** digits)))


def _rand_key(rng, words):
    a, b = rng.choice(len(words), size=2, replace=False)
    return f"{words[a]}-{words[b]}"


def _rand_var(rng):
    return "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, size=5))


def _tok_len(tok, s):
    return len(tok.encode(s))


def _interleave(rng, hay, win, fixed_head, needles, fixed_tail, ordered=False):
    """Pieces: fixed_head, then the haystack window with the needles at random sentence boundaries,
    then fixed_tail. With ordered=True the needles keep their order in the text."""
    i, j = win
    cuts = np.sort(rng.integers(i, j + 1, size=len(needles)))
    order = list(range(len(needles))) if ordered else list(rng.permutation(len(needles)))
    pieces = list(fixed_head)
    prev = i
    depths = []
    for c, k in zip(cuts, order):
        c = int(c)
        if c > prev:
            pieces.append(("hay", prev, c))
        pieces.append(("txt", needles[k]))
        depths.append(float((hay.starts[c] - hay.starts[i]) / max(1, hay.starts[j] - hay.starts[i])))
        prev = c
    if j > prev:
        pieces.append(("hay", prev, j))
    pieces.extend(fixed_tail)
    return pieces, depths


def build(task, seed, target_length, hay, tok, words):
    """One instance. target_length counts prompt tokens including BOS plus MAX_NEW_TOKENS[task].

    Returns dict(task, seed, target_length, pieces, answers, answer_text, depths, length)."""
    rng = np.random.default_rng(seed)
    budget = target_length - MAX_NEW_TOKENS[task] - 1  # prompt tokens without BOS
    depths = []
    if task in ("niah_single", "niah_multikey", "niah_multivalue"):
        if task == "niah_single":
            key = _rand_key(rng, words)
            values = [_rand_number(rng, 7)]
            needles = [NIAH_NEEDLE.format(key=key, value=values[0])]
            q = NIAH_Q_ONE.format(key=key)
        elif task == "niah_multikey":
            keys = set()
            while len(keys) < NIAH_MULTIKEY_NEEDLES:
                keys.add(_rand_key(rng, words))
            keys = sorted(keys)
            rng.shuffle(keys)
            vals = []
            while len(vals) < NIAH_MULTIKEY_NEEDLES:
                v = _rand_number(rng, 7)
                if v not in vals:
                    vals.append(v)
            key, values = keys[0], [vals[0]]
            needles = [NIAH_NEEDLE.format(key=k, value=v) for k, v in zip(keys, vals)]
            q = NIAH_Q_ONE.format(key=key)
        else:
            key = _rand_key(rng, words)
            values = []
            while len(values) < NIAH_MULTIVALUE_VALUES:
                v = _rand_number(rng, 7)
                if v not in values:
                    values.append(v)
            needles = [NIAH_NEEDLE.format(key=key, value=v) for v in values]
            q = NIAH_Q_ALL.format(key=key)
        fixed = _tok_len(tok, NIAH_PREFIX) + sum(_tok_len(tok, s) for s in needles) + _tok_len(tok, q)
        win = hay.window(rng, budget - fixed)
        # multi-value: the answer lists values in text order (needles kept in order)
        pieces, depths = _interleave(rng, hay, win, [("txt", NIAH_PREFIX)], needles, [("txt", q)],
                                     ordered=(task == "niah_multivalue"))
        answers = values
        answer_text = ", ".join(values) + "."
    elif task == "vt":
        chains = []
        seen = set()
        for c in range(VT_CHAINS):
            names = []
            while len(names) < VT_HOPS + 1:
                v = _rand_var(rng)
                if v not in seen:
                    seen.add(v)
                    names.append(v)
            chains.append((names, _rand_number(rng, 5)))
        if chains[1][1] == chains[0][1]:
            chains[1] = (chains[1][0], str((int(chains[0][1]) - 10000 + 1) % 90000 + 10000))
        stmts = []
        for names, val in chains:
            s = [f"VAR {names[0]} = {val}."] + [f"VAR {names[h + 1]} = VAR {names[h]}." for h in range(VT_HOPS)]
            stmts.append(s)
        # interleave the chains' statements, each chain in order
        seq = []
        ptr = [0] * VT_CHAINS
        while any(p < VT_HOPS + 1 for p in ptr):
            live = [c for c in range(VT_CHAINS) if ptr[c] < VT_HOPS + 1]
            c = live[int(rng.integers(0, len(live)))]
            seq.append(stmts[c][ptr[c]])
            ptr[c] += 1
        names, val = chains[0]
        q = VT_Q.format(value=val, n=VT_HOPS + 1)
        fixed = _tok_len(tok, VT_PREFIX) + sum(_tok_len(tok, s) for s in seq) + _tok_len(tok, q)
        win = hay.window(rng, budget - fixed)
        pieces, depths = _interleave(rng, hay, win, [("txt", VT_PREFIX)], seq, [("txt", q)], ordered=True)
        answers = list(names)
        answer_text = " ".join(names) + "."
    elif task == "cwe":
        perm = rng.permutation(len(words))
        common = [words[k] for k in perm[:CWE_NUM_COMMON]]
        pool = [words[k] for k in perm[CWE_NUM_COMMON:]]
        fixed = _tok_len(tok, CWE_PREFIX) + _tok_len(tok, CWE_Q)
        room = budget - fixed
        # ~ tokens per list item "123. word": measure on a sample
        sample = [f"{k + 100}. {w}" for k, w in enumerate(pool[:50])]
        per_item = max(1.0, sum(_tok_len(tok, s) for s in sample) / len(sample))
        n_items = int(room / per_item)
        best = None
        for _ in range(12):  # adjust the list size until it fills the room
            freq_c = int(min(30, max(CWE_FREQ_UNCOMMON + 1, n_items // 25)))
            n_unc = max(0, (n_items - CWE_NUM_COMMON * freq_c) // CWE_FREQ_UNCOMMON)
            n_unc = min(n_unc, len(pool))
            bag = [w for w in common for _ in range(freq_c)] + \
                  [w for w in pool[:n_unc] for _ in range(CWE_FREQ_UNCOMMON)]
            order = rng.permutation(len(bag))
            bag = [bag[k] for k in order]
            items = [f"{k + 1}. {w}" for k, w in enumerate(bag)]
            used = sum(_tok_len(tok, s) for s in items)
            if used <= room and (best is None or used > best[0]):
                best = (used, bag, items)
            if used <= room and room - used < 2 * per_item:
                break
            step = int((room - used) / per_item)
            n_items += step if step != 0 else (1 if used < room else -1)
            n_items = max(n_items, CWE_NUM_COMMON * (CWE_FREQ_UNCOMMON + 1))
        if best is None:
            best = (used, bag, items)
        _, bag, items = best
        pieces = [("txt", CWE_PREFIX), ("txt", " ".join(items)), ("txt", CWE_Q)]
        first = {}
        for w in bag:
            first.setdefault(w, len(first))
        answers = sorted(common, key=lambda w: first[w])
        answer_text = ", ".join(answers) + "."
    else:
        raise ValueError(f"unknown task {task!r}")
    length = 1 + sum(int(hay.starts[p[2]] - hay.starts[p[1]]) if p[0] == "hay" else _tok_len(tok, p[1])
                     for p in pieces)
    return dict(task=task, seed=int(seed), target_length=int(target_length), pieces=pieces,
                answers=answers, answer_text=answer_text, depths=depths, length=int(length))


def to_text(inst, hay):
    out = []
    for p in inst["pieces"]:
        if p[0] == "hay":
            if p[2] > p[1]:
                out.append(" ".join(hay.sents[p[1]:p[2]]))
        else:
            out.append(p[1])
    return " ".join(out)


def to_ids(inst, hay, tok):
    """BOS + prompt token ids (token mode: haystack ids are sliced, templates encoded)."""
    parts = [np.array([tok.bos_id], dtype=np.int32)]
    for p in inst["pieces"]:
        if p[0] == "hay":
            parts.append(hay.ids[hay.starts[p[1]]:hay.starts[p[2]]])
        else:
            parts.append(np.asarray(tok.encode(p[1]), dtype=np.int32))
    return np.concatenate(parts)


def prompt_ids(inst, hay, tok):
    """The evaluator's input: [BOS] (when the tokenizer uses one) + the prompt's token ids. Token
    mode slices the haystack ids (identical to encoding the text, tested); otherwise the joined
    prompt text is encoded."""
    if getattr(tok, "token_mode", False):
        return [int(t) for t in to_ids(inst, hay, tok)]
    head = [] if tok.bos_id is None else [int(tok.bos_id)]
    return head + [int(t) for t in tok.encode(to_text(inst, hay))]


def fit(task, seed, target_length, hay, tok, words, max_rounds=24):
    """build() whose encoded prompt really fits: prompt tokens + MAX_NEW_TOKENS[task] <=
    target_length, as large as the tokenizer allows -> (inst, ids).

    With an exact tokenizer (token_mode) this is build() itself. Otherwise the instance is rebuilt
    from the same seed for a smaller target until the encoded prompt fits (the pieces' token counts
    only estimate the joined text's); the record keeps the cell's target_length and its length is
    the encoded one. Raises ValueError when the prompt cannot fit.
    """
    limit = int(target_length) - MAX_NEW_TOKENS[task]
    shrink = 0
    for _ in range(max_rounds):
        inst = build(task, seed, int(target_length) - shrink, hay, tok, words)
        ids = prompt_ids(inst, hay, tok)
        excess = len(ids) - limit
        if excess <= 0:
            inst["target_length"] = int(target_length)
            inst["length"] = len(ids)
            return inst, ids
        shrink += excess
        if shrink >= target_length:
            break
    new = MAX_NEW_TOKENS[task]
    # the smallest prompt of this seed: instructions, needles and question without haystack
    need = len(prompt_ids(build(task, seed, 0, hay, tok, words), hay, tok)) + new
    if need > target_length:
        raise ValueError(f"length {target_length} is too short for {task}: its instructions, "
                         f"needles and question take {need - new} tokens (seed {seed}) and the "
                         f"answer {new}, expected a length >= {need}")
    raise ValueError(f"{task} prompt (seed {seed}) does not fit in {target_length} tokens with "
                     f"{new} new tokens")


def record(inst, hay):
    """The JSONL record every evaluator reads."""
    return dict(task=inst["task"], length=inst["length"], target_length=inst["target_length"],
                seed=inst["seed"], prompt=to_text(inst, hay), answers=inst["answers"],
                max_new_tokens=MAX_NEW_TOKENS[inst["task"]], depths=inst["depths"])


def eval_seed(task, target_length, index):
    """The seed of the index-th evaluation prompt of a cell (distinct per task, length, index)."""
    t = TASKS.index(task)
    return EVAL_SEED_BASE + t * 100_000_000 + (target_length // 256) * 100_000 + index


# ------------------------------------------------------------------------------------------- scoring
def normalize(s):
    return _WS.sub(" ", s.lower()).strip()


def answer_found(answer, output):
    """The scoring rule (eval/README.md): the normalized answer occurs in the normalized output,
    not preceded or followed by a letter or digit."""
    a, o = normalize(answer), normalize(output)
    return re.search(r"(?<![a-z0-9])" + re.escape(a) + r"(?![a-z0-9])", o) is not None


def score(answers, output):
    """(correct, fraction): correct when every answer is found; fraction of answers found."""
    found = [answer_found(a, output) for a in answers]
    return all(found), sum(found) / len(found)
