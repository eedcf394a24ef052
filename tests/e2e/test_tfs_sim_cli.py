"""`tfleet tfs-sim` as a process: flags and environment variables, a reload, a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tfleet.sim.fixtures import make_model
from tfleet.tfs.client import TfsClient
from tfleet.tfs.types import ModelConfigSpec, TfsError, TfsUnavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, Path]]:
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "TFLEET_SIM_MAX_LOAD_RETRIES": "1", "TFLEET_SIM_LOAD_RETRY_INTERVAL_SECONDS": "0.05"}
    log = tmp_path / "sim.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfleet",
                "tfs-sim",
                "--grpc-port",
                str(grpc_port),
                "--rest-port",
                str(rest_port),
                "--file-system-poll-wait-seconds",
                "0.05",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        yield process, grpc_port, rest_port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_reload_status_and_sigterm(sim_process, tmp_path: Path) -> None:
    process, grpc_port, rest_port, log = sim_process
    make_model(tmp_path, "m", [1, 2], scale=2.0)
    make_model(tmp_path, "bad", [1], fail_versions=[1])
    with TfsClient(f"127.0.0.1:{grpc_port}") as tfs:
        # Up when it answers NOT_FOUND for a model it does not know.
        wait_until(lambda: tfs.get_model_status("m", timeout=1) is None, 30, ignore=(TfsUnavailable,), message="simulator process answering")
        tfs.reload_config([ModelConfigSpec("m", str(tmp_path / "m"))], timeout=20)
        assert [(s.version, s.state.value) for s in tfs.get_model_status("m", timeout=5) or []] == [(2, "AVAILABLE")]
        both = [ModelConfigSpec("m", str(tmp_path / "m")), ModelConfigSpec("bad", str(tmp_path / "bad"))]
        with pytest.raises(TfsError) as failed:
            tfs.reload_config(both, timeout=20)
        assert failed.value.code == 2, "a new model that ends in END fails the reload with UNKNOWN"
    request = urllib.request.Request(f"http://127.0.0.1:{rest_port}/v1/models/m:predict", data=json.dumps({"instances": [1.5]}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert json.load(reply) == {"predictions": [3.0]}

    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    reloads = [line for line in lines if line["event"] == "reload"]
    assert [r["outcome"] for r in reloads] == ["OK", "UNKNOWN"], "one JSON line per reload outcome"
    attempts = [line for line in lines if line["event"] == "load_attempt_failed"]
    assert len(attempts) == 2, "TFLEET_SIM_MAX_LOAD_RETRIES=1 from the environment: 1 attempt + 1 retry"
