"""python -m proxyattn.eval: see proxyattn.eval.cli."""
import sys

from .cli import main

sys.exit(main())
