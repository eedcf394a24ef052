"""The committed modules in tfleet/tfs/pb/ must be exactly what proto/generate.py emits.

Someone who edits a .proto but forgets to regenerate (or regenerates with another
grpcio-tools version than the one pinned in pyproject.toml) would otherwise ship stale
classes: the wire-conformance tests would then check the old code, not the new .proto.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_modules_are_up_to_date():
    # Run the script exactly as developers and `make proto-check` do, in its own process so
    # that the in-process protoc run leaves nothing behind in the test session. sys.executable
    # is the venv's interpreter, whose pinned grpcio-tools defines the expected output.
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "proto" / "generate.py"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"proto/generate.py --check exited {result.returncode}; run `make proto`\n{result.stdout}{result.stderr}"
