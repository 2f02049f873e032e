"""Checks of the shipped model folder and the Q/K/V dumps, with numpy only (no torch)."""
import glob
import json
import os
import struct

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = sorted(glob.glob(os.path.join(ROOT, "models", "*", "config.json")))
DUMPS = sorted(glob.glob(os.path.join(ROOT, "data", "qkv", "*.safetensors")))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        assert e["dtype"] == "BF16", (path, name)
        u = np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16
        out[name] = u.view(np.float32).reshape(e["shape"])
        assert b - a == 2 * int(np.prod(e["shape"]))
    assert max(e["data_offsets"][1] for e in header.values()) == len(data)
    return out, meta


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
