"""`tfleet ... -h` in a fresh process prints the usage and exits 0, as a user runs it.

tests/unit/test_cli_help.py checks --help on the whole tree in-process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("path", [("get", "models"), ("rollout", "start"), ("alerts", "render"), ("dev", "ps"), ("agent",)], ids=" ".join)
def test_short_help_in_a_fresh_process(path: tuple[str, ...]) -> None:
    # -h comes from the root's context settings; click caches each command's help option
    # on first use, so in one test process a command first invoked as its own root (unit
    # tests of alerts, routes) would lack it: a fresh process is what a user runs.
    result = subprocess.run([sys.executable, "-m", "tfleet", *path, "-h"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout and not result.stderr
