"""Long-context accuracy of ProxyAttn against dense attention and matched-density baselines.

    python -m proxyattn.eval --model PATH_OR_DIR --lengths 8192,16384,32768 --n 100 --preset study

builds RULER-style needle prompts (proxyattn.eval.tasks) with the model's own tokenizer over a
haystack text, runs greedy decoding through transformers for every method on the same prompts, and
reports accuracy with 95% Wilson intervals, paired lost/won counts and McNemar p-values against
dense, realized density and attention recall (python/README.md, "Accuracy evaluation").

Submodules: tasks (the task generator, numpy only), stats (intervals and tests), methods (method
specs, presets, matched-density knobs), report (table, JSON, PNG), runner (torch/transformers,
imported only when a model runs), cli (the command line).
"""
import os

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DEFAULT_HAYSTACK = os.path.join(DATA_DIR, "haystack.txt.gz")
