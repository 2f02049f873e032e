"""Checks of the shipped model folder and the Q/K/V dumps, with numpy only (no torch)."""
import glob
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "train"))
import st  # noqa: E402  (train/st.py: the project's safetensors reader)
MODELS = sorted(glob.glob(os.path.join(ROOT, "models", "*", "config.json")))
DUMPS = sorted(glob.glob(os.path.join(ROOT, "data", "qkv", "*.safetensors")))


def read_safetensors(path):
    """The dump's tensors (bf16 widened to float32) and metadata, read by train/st.py (which checks
    every tensor's byte range); the dumps hold bf16 tensors that fill the data exactly."""
    header, _, data = st.read(path)
    assert all(e["dtype"] == "BF16" for e in header.values()), path
    assert max(e["data_offsets"][1] for e in header.values()) == len(data)
    return st.load_numpy(path, with_metadata=True)


@pytest.mark.parametrize("cfg", MODELS)
def test_model_folder(cfg):
    d = os.path.dirname(cfg)
    c = json.load(open(cfg))
    assert c["model_type"] == "llama" and c["architectures"] == ["LlamaForCausalLM"]
    assert c["head_dim"] in (64, 128)
    assert c["num_attention_heads"] % c["num_key_value_heads"] == 0
    assert c["num_attention_heads"] // c["num_key_value_heads"] >= 2
    for f in ("model.safetensors", "tokenizer.model", "README.md"):
        assert os.path.exists(os.path.join(d, f)), f
    assert os.path.getsize(os.path.join(d, "model.safetensors")) <= 16 * 2**20


@pytest.mark.skipif(not DUMPS, reason="no data/qkv dumps")
def test_qkv_dumps():
    assert sum(os.path.getsize(p) for p in DUMPS) <= 4 * 2**20
    for p in DUMPS:
        t, meta = read_safetensors(p)
        assert set(t) == {"q", "k", "v"}
        q, k, v = t["q"], t["k"], t["v"]
        assert q.ndim == k.ndim == v.ndim == 3
        assert q.shape[0] == k.shape[0] == v.shape[0] == int(meta["tokens"])
        assert k.shape == v.shape and q.shape[2] == k.shape[2] == int(meta["head_dim"])
        assert q.shape[1] == int(meta["num_qo_heads"]) and k.shape[1] == int(meta["num_kv_heads"])
        assert q.shape[1] % k.shape[1] == 0
        assert all(np.isfinite(x).all() for x in (q, k, v))
        layer = int(meta["layer"])
        assert os.path.basename(p) == f"{meta['model']}-layer{layer}.safetensors"
