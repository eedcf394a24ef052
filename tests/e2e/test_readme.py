"""The README's etcdctl commands work exactly as written against `tfleet dev` (its defaults)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import wait_until
from tfleet.cli.dev import DEFAULT_ETCD_PORT, DEFAULT_RUN_DIR, port_free

ROOT = pathlib.Path(__file__).resolve().parents[2]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- readme-block: {name} -->\s*```sh\n(.*?)```", text, re.S)
    assert match, f"README block {name!r} not found"
    return match.group(1)


def run_block(name: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block(name)], cwd=ROOT, capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, f"README block {name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def etcdctl(*args: str) -> str:
    env = {**os.environ, "ETCDCTL_ENDPOINTS": f"http://127.0.0.1:{DEFAULT_ETCD_PORT}"}
    return subprocess.run([str(ROOT / "scripts" / "etcdctl"), *args], capture_output=True, text=True, env=env, timeout=30, check=True).stdout


def test_readme_commands_work_verbatim(tmp_path) -> None:
    if not port_free(DEFAULT_ETCD_PORT):
        pytest.skip(f"port {DEFAULT_ETCD_PORT} is in use (a `make dev` running?): the README commands need tfleet dev's defaults")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("scripts/etcdctl needs the repository's .venv (make test creates it)")
    log = tmp_path / "dev.out"
    # The blocks use no --etcd: `tfleet` finds the fleet through the context file tfleet dev
    # writes (here in tmp_path, not in the user's ~/.config).
    env = {**os.environ, "TFLEET_CONTEXT": str(tmp_path / "context.json")}
    env.pop("TFLEET_ETCD_ENDPOINTS", None)
    with open(log, "w") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tfleet", "dev", "--lease-ttl", "4"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        wait_until(lambda: "Press Ctrl-C" in log.read_text() or dev.poll() is not None, 90, message="tfleet dev is up")
        assert dev.poll() is None, log.read_text()
        assert f"{DEFAULT_RUN_DIR}/models/mnist" in readme_block("declare")

        out = run_block("declare", env)
        # the block itself waits: what it prints after `tfleet wait` is the ready model
        assert "mnist ready: version 2: 2/2 replicas ready" in out
        report = json.loads(etcdctl("get", "/tfleet/modelstatus/mnist", "--print-value-only"))
        assert report["ready_replicas"].get("2") == 2 and report["rollout"]["phase"] == "stable" and report["error"] is None
        routes = wait_until(
            lambda: (raw := etcdctl("get", "/tfleet/routes/mnist", "--print-value-only").strip()) and json.loads(raw), 30, message="routes for the model"
        )
        assert len(routes["labels"]["stable"]) == 2

        run_block("delete", env)
        wait_until(
            lambda: "/mnist" not in etcdctl("get", "--prefix", "/tfleet/assignments/", "--keys-only"), 30, message="every replica unassigned after the delete"
        )
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(60)
