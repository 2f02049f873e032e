"""proxyattn.hf's settings resolution (no torch or transformers needed): SPEC defaults <
register() kwargs < the model config's `proxyattn` entry < per-layer overrides."""
import pytest

import proxyattn as pa
from proxyattn import hf


def test_defaults():
    dense, cfg = hf.layer_settings(0)
    assert not dense and cfg == pa.Config()


def test_precedence_and_layers():
    registered = {"gamma": 0.9, "min_budget_tokens": 1024, "dense_layers": [0]}
    entry = {"gamma": 0.8, "layers": {"3": {"gamma": 0.99, "stride": 8}, 5: {"dense": True}}}
    assert hf.layer_settings(0, registered, entry)[0] is True
    dense, cfg = hf.layer_settings(1, registered, entry)
    assert not dense and cfg.gamma == 0.8 and cfg.min_budget_tokens == 1024
    dense, cfg = hf.layer_settings(3, registered, entry)
    assert not dense and cfg.gamma == 0.99 and cfg.stride == 8
    assert hf.layer_settings(5, registered, entry)[0] is True
    # a later dense_layers replaces an earlier one
    assert hf.layer_settings(0, registered, {"dense_layers": []})[0] is False


def test_layer_list_and_config_objects():
    entry = {"layers": [None, {"forced_density": 0.1}]}
    assert hf.layer_settings(0, entry)[1].forced_density is None
    assert hf.layer_settings(1, entry)[1].forced_density == 0.1
    dense, cfg = hf.layer_settings(2, pa.Config(block_size=64))
    assert not dense and cfg.block_size == 64


def test_bad_settings_raise():
    with pytest.raises(pa.Error, match="config.gamma = 1.5"):
        hf.layer_settings(0, {"layers": {0: {"gamma": 1.5}}})
    with pytest.raises(pa.Error, match="unknown config field"):
        hf.layer_settings(0, {"gama": 0.9})
    with pytest.raises(TypeError):
        hf.layer_settings(0, "fast")
