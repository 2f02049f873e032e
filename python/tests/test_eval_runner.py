"""proxyattn.eval.runner: recall and the block-mask attention against plain torch, and (with
transformers) the whole command on a tiny random Llama on the CPU: padded batches decode like
single prompts, and every method runs."""
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from proxyattn.eval import methods as M  # noqa: E402
from proxyattn.eval import runner as R  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference_recall(q, k, mask, b, scale):
    """Per-head (sum, rows) in float64, row by row."""
    n, heads, dim = q.shape
    rep = heads // k.shape[1]
    sums, rows = np.zeros(heads), np.zeros(heads)
    qd, kd = q.double().numpy(), k.double().numpy()
    for h in range(heads):
        for t in range(n):
            m = t // b
            if mask[h, m, :m + 1].all():
                continue
            logit = scale * (kd[:t + 1, h // rep] @ qd[t, h])
            p = np.exp(logit - logit.max())
            p /= p.sum()
            keep = np.repeat(mask[h, m], b)[:t + 1]
            sums[h] += p[keep].sum()
            rows[h] += 1
    return sums, rows


def test_recall_rows_matches_reference():
    g = torch.Generator().manual_seed(0)
    n, heads, kv, dim, b = 200, 4, 2, 64, 16
    q = torch.randn(n, heads, dim, generator=g)
    k = torch.randn(n, kv, dim, generator=g)
    nb = M.num_blocks(n, b)
    rng = np.random.default_rng(0)
    mask = rng.random((heads, nb, nb)) < 0.5
    mask[:, np.arange(nb), np.arange(nb)] = True
    mask[1] = np.tril(np.ones((nb, nb), bool))  # head 1 complete: no rows counted
    scale = 1 / math.sqrt(dim)
    old = R.RECALL_LOGITS
    R.RECALL_LOGITS = 4 * n * 2 * b  # force several row chunks
    try:
        sums, rows = R.recall_rows(q, k, mask, b, scale)
    finally:
        R.RECALL_LOGITS = old
    ref_s, ref_r = reference_recall(q, k, mask, b, scale)
    np.testing.assert_allclose(rows, ref_r)
    np.testing.assert_allclose(sums, ref_s, rtol=1e-5)
    assert rows[1] == 0
    assert R.recall_summary({}) == (None, None)
    mean, low = R.recall_summary({(0, h): [sums[h], rows[h]] for h in range(heads)})
    assert mean == pytest.approx(sums.sum() / rows.sum())
    assert low == pytest.approx(min(sums[h] / rows[h] for h in range(heads) if rows[h]))


def test_mask_attention_matches_torch():
    """sink+local through Plan.from_block_mask and proxyattn.attend, on a left-padded batch."""
    pytest.importorskip("proxyattn._core")
    g = torch.Generator().manual_seed(1)
    batch, heads, kv, dim, seq, b = 2, 4, 2, 64, 300, 64
    q = torch.randn(batch, heads, seq, dim, generator=g)
    k = torch.randn(batch, kv, seq, dim, generator=g)
    v = torch.randn(batch, kv, seq, dim, generator=g)
    lengths = [seq, 230]
    valid = torch.zeros(batch, seq, dtype=torch.bool)
    for i, n in enumerate(lengths):
        valid[i, seq - n:] = True
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    keep = causal[None] & valid[:, None, :]
    keep = keep | ~keep.any(-1, keepdim=True)  # padded rows attend everything
    st = R._STATE
    st.mode, st.mask, st.plan_cache = "mask", {"window": 2.5, "sink": 1, "block_size": b}, None
    scale = dim ** -0.5

    class Module:
        layer_idx = 0

    try:
        out, _ = R._forward(Module(), q, k, v, keep[:, None], scaling=scale)
        dens = list(st.batch_density)
    finally:
        st.mode, st.plan_cache = "dense", None
    for i, n in enumerate(lengths):
        nb = M.num_blocks(n, b)
        blocks = M.sink_local_mask(nb, 2.5, 1, heads)[0]
        tok = np.repeat(np.repeat(blocks, b, 0), b, 1)[:n, :n] & np.tril(np.ones((n, n), bool))
        qi, ki, vi = q[i, :, seq - n:], k[i, :, seq - n:], v[i, :, seq - n:]
        ki, vi = ki.repeat_interleave(heads // kv, 0), vi.repeat_interleave(heads // kv, 0)
        s = (qi @ ki.transpose(1, 2)) * scale
        s = s.masked_fill(~torch.as_tensor(tok), float("-inf"))
        ref = (torch.softmax(s, -1) @ vi).transpose(0, 1)
        torch.testing.assert_close(out[i, seq - n:], ref, atol=2e-5, rtol=1e-4)
        assert (out[i, :seq - n] == 0).all()
        assert dens[i] == pytest.approx(M.sink_local_density(n, b, 2.5, 1))


def tiny_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=8192, hidden_size=128, intermediate_size=256,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=64,
                                   max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                                   initializer_range=0.2)  # logits far apart: argmax is stable
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path / "tiny"
    model.save_pretrained(str(path))
    tok = os.path.join(ROOT, "models", "pa-tiny-8k", "tokenizer.model")
    if not os.path.exists(tok):
        pytest.skip("no models/pa-tiny-8k/tokenizer.model")
    return str(path), tok


def test_padded_batch_decodes_like_single_prompts(tmp_path):
    pytest.importorskip("sentencepiece")
    pytest.importorskip("proxyattn._core")
    path, tok_path = tiny_model(tmp_path)
    from proxyattn.eval import tasks as T
    tok = T.SpmTokenizer(tok_path)
    run = R.Runner(path, tok, device="cpu", dtype="fp32", batch_tokens=1 << 20)
    g = np.random.default_rng(0)
    rows = [[1] + [int(x) for x in g.integers(3, 8000, size=n)] for n in (300, 260, 200)]
    for kind, knobs in (("dense", {}),
                        ("sink_local", {"window": 1e6, "sink": 1, "block_size": 64}),
                        ("proxyattn", {"config": {"block_size": 64, "gamma": 1.0,
                                                  "min_budget_tokens": 0}})):
        run.configure(kind, knobs)
        batch, dens = run.generate(rows, 6)
        singles = [run.generate([r], 6)[0][0] for r in rows]
        assert batch == singles, kind
        # gamma 1 may leave out blocks whose mass doesn't change the fp32 sum
        assert all(d > 0.9 for d in dens) and (kind == "proxyattn" or dens == [1.0] * 3)
    run.configure("dense", {})


def test_cli_end_to_end(tmp_path):
    pytest.importorskip("sentencepiece")
    pytest.importorskip("proxyattn._core")
    path, tok_path = tiny_model(tmp_path)
    hay = tmp_path / "hay.txt"
    from test_eval_tasks import synthetic_text
    hay.write_text(synthetic_text())
    from proxyattn.eval import cli
    out = tmp_path / "r.json"
    cli.main(["--model", path, "--tokenizer", tok_path, "--haystack", str(hay), "--device", "cpu",
              "--dtype", "fp32", "--lengths", "1024", "--n", "3", "--tasks", "niah_single",
              "--methods", "proxyattn:gamma=0.9", "sink_local:density=0.5",
              "topk:density=match:proxyattn:gamma=0.9",
              "proxyattn:last_block_selection=proxy,density=0.8",
              "--defaults", "block_size=64,min_budget_tokens=64", "--json", str(out),
              "--outputs", str(tmp_path / "o.jsonl"), "--no-progress", "--recall-prompts", "1"])
    data = json.loads(out.read_text())
    cells = {c["method"]: c for c in data["cells"]}
    assert set(cells) == {"dense", "proxyattn:gamma=0.9", "sink_local:density=0.5",
                          "topk:density=match:proxyattn:gamma=0.9",
                          "proxyattn:last_block_selection=proxy,density=0.8"}
    assert cells["dense"]["density"] == 1.0
    assert abs(cells["sink_local:density=0.5"]["density"] - 0.5) <= 0.01
    ref = cells["proxyattn:gamma=0.9"]["density"]
    assert abs(cells["topk:density=match:proxyattn:gamma=0.9"]["density"] - ref) <= 0.01
    for c in data["cells"]:
        assert c["n"] == 3 and c["length"] == 1024
        if c["method"] != "dense":
            assert 0 < c["recall_mean"] <= 1 + 1e-6 and c["recall_min_head"] <= c["recall_mean"]
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 15
