"""The RULER-style task generator, re-exported: its one definition is python/proxyattn/eval/tasks.py
(shared by the training scripts, eval/*.py and `python -m proxyattn.eval`).

Loaded from its file, so neither the compiled proxyattn package nor torch is needed here.
"""
import importlib.util as _util
import os as _os
import sys as _sys

_PATH = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "python",
                      "proxyattn", "eval", "tasks.py")
_NAME = "proxyattn_eval_tasks"
_mod = _sys.modules.get(_NAME)
if _mod is None:
    _spec = _util.spec_from_file_location(_NAME, _PATH)
    _mod = _util.module_from_spec(_spec)
    _sys.modules[_NAME] = _mod
    _spec.loader.exec_module(_mod)

globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
__doc__ = _mod.__doc__ + "\n" + __doc__
__all__ = [k for k in vars(_mod) if not k.startswith("_")]
