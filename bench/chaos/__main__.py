"""python -m bench.chaos (see bench/chaos/__init__.py)."""

import sys

from bench.chaos.cli import main

sys.exit(main())
