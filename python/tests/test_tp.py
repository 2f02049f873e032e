"""proxyattn.hf under transformers' tensor parallelism: torchrun launches tp_check.py on 2 ranks,
which loads the shipped model (models/pa-tiny-8k) sharded over them and compares logits and the
greedy text with a 1-rank run (tp_check.py's docstring has the checks and the tolerance).

- on CPUs with the gloo backend (CUDA hidden), wherever torch >= 2.5, transformers and
  sentencepiece import;
- on GPUs with NCCL where 2 CUDA devices are visible and proxyattn was built with CUDA;
- g = 1 at TP 2 must raise proxyattn.Error (a proxy group would cross ranks).
Each launch skips with the reason where its requirements are missing.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

import proxyattn as pa

torch = pytest.importorskip("torch", reason="tensor parallelism tests need torch >= 2.5")
if tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) < (2, 5):
    pytest.skip(f"tensor parallelism tests need torch >= 2.5, found {torch.__version__}",
                allow_module_level=True)
pytest.importorskip("transformers", reason="tensor parallelism tests need transformers")
if importlib.util.find_spec("sentencepiece") is None:
    pytest.skip("tensor parallelism tests need sentencepiece (the shipped model's tokenizer)",
                allow_module_level=True)
if not torch.distributed.is_available():
    pytest.skip("this torch was built without torch.distributed", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "tp_check.py")
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "pa-tiny-8k")
if not os.path.exists(os.path.join(SHIPPED, "model.safetensors")):
    pytest.skip("the shipped model is not in models/pa-tiny-8k", allow_module_level=True)


def launch(tmp_path, device, *extra, nproc=2, timeout=1200):
    out = tmp_path / f"tp_check_{device}.json"
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", CHECK, "--device", device, "--json", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    log = f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, log
    with open(out) as f:
        result = json.load(f)
    assert result["passed"], log
    return result


def test_two_ranks_gloo_cpu_match_one_rank(tmp_path):
    r = launch(tmp_path, "cpu")
    assert r["world"] == 2 and r["tp_seen"] == [2] and r["proxies_per_rank"] == [1]
    assert r["rel_err_tp_vs_fp32"] <= r["bound"] and r["text_tp"] == r["text_1rank"]


def test_two_ranks_nccl_gpu_match_one_rank(tmp_path):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        pytest.skip(f"the NCCL run needs 2 CUDA devices, {count} visible")
    if not pa.cuda_available():
        pytest.skip("the NCCL run needs a CUDA build of proxyattn")
    r = launch(tmp_path, "cuda")
    assert r["tp_seen"] == [2] and r["text_tp"] == r["text_1rank"]


def test_proxy_group_across_ranks_raises(tmp_path):
    r = launch(tmp_path, "cpu", "--num-proxy-heads", "1", "--expect-error")
    assert "num_proxy_heads = 1 is not a multiple of the tensor-parallel degree 2" in r["error"]
