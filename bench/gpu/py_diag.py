"""bench/gpu/py_diag.py: isolates a crash of the Python module on the GPU machine. Each step runs
in its own process (a segfault ends only that step); prints versions and what each step did.
    PYTHONPATH=<site> python3 bench/gpu/py_diag.py
"""
import subprocess
import sys

STEPS = {
    "versions": "import sys, numpy, pybind11; print(sys.version.split()[0], 'numpy', numpy.__version__, "
                "'pybind11', pybind11.__version__)",
    "import": "import proxyattn as pa; print('cuda', pa.cuda_available())",
    "numpy_dense_ok": "import numpy as np, proxyattn as pa; q = np.ones((200, 4, 16), np.float32); "
                      "k = np.ones((200, 2, 16), np.float32); print(pa.dense(q, k, k).shape)",
    "numpy_error": "import numpy as np, proxyattn as pa\n"
                   "q = np.ones((200, 3, 16), np.float32); k = np.ones((200, 2, 16), np.float32)\n"
                   "try:\n    pa.dense(q, k, k)\nexcept pa.Error as e:\n    print('raised:', e)",
    "core_error_no_arrays": "import proxyattn as pa\ntry:\n    pa.Config(gamma=2.0).validate()\n"
                            "except Exception as e:\n    print('raised:', type(e).__name__, e)",
    "torch_first_numpy_error": "import torch, numpy as np, proxyattn as pa\n"
                               "q = np.ones((200, 3, 16), np.float32); k = np.ones((200, 2, 16), np.float32)\n"
                               "try:\n    pa.dense(q, k, k)\nexcept pa.Error as e:\n    print('raised:', e)",
}

for name, code in STEPS.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True,
                       text=True, timeout=120)
    tail = (r.stdout + r.stderr).strip().splitlines()[-6:]
    print(f"== {name}: rc {r.returncode}")
    for line in tail:
        print("   ", line[:300])
