"""Running the operator CLI in the e2e tests: Cli (in-process through CliRunner, or as a real
`python -m tfleet` process), its fixtures (tf, keys; registered in tests/e2e/conftest.py),
and the helpers the test_cli_*.py files share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tfleet import schema
from tfleet.cli.main import cli
from tfleet.keyspace import Keyspace
from tfleet.schema import HostRecord
from tfleet.store import EtcdStore


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    """Runs `tfleet` commands against one etcd and prefix."""

    etcd_url: str
    prefix: str  # without the trailing "/"

    def args(self, *args: str) -> list[str]:
        return [*args, "--etcd", self.etcd_url, "--prefix", self.prefix, "--etcd-timeout", "1"]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, self.args(*args), input=input, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, f"tfleet {' '.join(args)} exited {result.exit_code}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> object:
        return json.loads(self.ok(*args, "-o", "json"))

    def process(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tfleet", *self.args(*args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
def tf(etcd_server, prefix) -> Cli:
    return Cli(etcd_server.client_url, prefix.rstrip("/"))


@pytest.fixture
def keys(tf) -> Keyspace:
    return Keyspace(tf.prefix)


def error_lines(result: Result | subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return lines


def put_host(store: EtcdStore, keys: Keyspace, name: str, memory_mb: int = 1024, **labels: str) -> None:
    record = HostRecord(
        host=name, grpc_address="127.0.0.1:1", rest_address="127.0.0.1:2", memory_mb=memory_mb, labels=labels, agent_version="test", started_at=schema.utc_now()
    )
    store.put(keys.host(name), schema.encode(record))


MODELS_YAML = """\
name: resnet
spec:
  base_path: /models/resnet
  model_version_policy: {specific: {versions: [3]}}
  version_labels: {stable: 3}
  replicas: 2
  memory_mb: 256
---
kind: Model
name: bert
spec: {base_path: /models/bert, replicas: 1}
---
kind: HostControl
name: h1
spec: {cordoned: true, reason: disk swap}
"""


def one_line_of(text: str) -> str:
    return " ".join(text.split())
