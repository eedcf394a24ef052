"""`tfleet agent` as a real process: death by SIGKILL, clean SIGTERM, restart, bad settings."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import wait_until
from tests.integration.agent_harness import Fleet
from tfleet.etcd_local import free_port
from tfleet.procs import Daemon
from tfleet.sim.fixtures import make_model
from tfleet.tfs.client import TfsClient

TTL = 4


def agent_daemon(tmp_path: pathlib.Path, etcd_url: str, prefix: str, sim, host: str = "h1") -> Daemon:
    args = [
        "agent",
        "--host",
        host,
        "--etcd",
        etcd_url,
        "--prefix",
        prefix.rstrip("/"),
        "--tfs-grpc",
        sim.grpc_address,
        "--tfs-rest",
        sim.rest_address,
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(free_port()),
        "--lease-ttl",
        str(TTL),
        "--etcd-timeout",
        "0.5",
        "--reload-timeout",
        "3",
        "--status-timeout",
        "1",
        "--resync-interval",
        "1",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    return Daemon(f"agent-{host}", args, tmp_path / f"agent-{host}.log")


def test_sigkill_keys_vanish_within_ttl_and_restart_does_not_reload(tmp_path, etcd_server, store, prefix, sim) -> None:
    fleet = Fleet(store, prefix)
    models = tmp_path / "models"
    make_model(models, "m", [1])
    daemon = agent_daemon(tmp_path, etcd_server.client_url, prefix, sim).start()
    try:
        fleet.assign("h1", "m", {"base_path": str(models / "m")})
        fleet.wait_available("h1", "m", {1}, timeout=30)
        loads_before = sim.load_count("m", 1)

        daemon.kill()
        killed_at = time.monotonic()
        wait_until(
            lambda: store.get(fleet.keyspace.host("h1")) is None and fleet.status("h1", "m") is None,
            TTL + 3,
            message="host and status keys gone after the lease TTL",
        )
        assert time.monotonic() - killed_at <= TTL + 3

        daemon = agent_daemon(tmp_path, etcd_server.client_url, prefix, sim).start()
        fleet.wait_available("h1", "m", {1}, timeout=30)
        assert store.get(fleet.keyspace.host("h1")) is not None
        assert sim.load_count("m", 1) == loads_before, "a restarted agent must not reload a model that is AVAILABLE"
    finally:
        daemon.stop()


def test_sigterm_revokes_lease_at_once_and_leaves_tf_serving_serving(tmp_path, etcd_server, store, prefix, sim) -> None:
    fleet = Fleet(store, prefix)
    models = tmp_path / "models"
    make_model(models, "m", [1])
    daemon = agent_daemon(tmp_path, etcd_server.client_url, prefix, sim).start()
    fleet.assign("h1", "m", {"base_path": str(models / "m")})
    fleet.wait_available("h1", "m", {1}, timeout=30)
    assert daemon.stop(grace=10) == 0, daemon.log_tail()
    assert store.get(fleet.keyspace.host("h1")) is None  # at once, not after the TTL
    assert fleet.status("h1", "m") is None
    client = TfsClient(sim.grpc_address)
    try:
        assert [v.state.value for v in client.get_model_status("m", 2.0) or ()] == ["AVAILABLE"]
    finally:
        client.close()
    lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "reconcile" for line in lines), "one structured line per reconcile outcome"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lease-ttl", "2"], "--lease-ttl 2 is too short"),
        (["--host", "no/slash"], "host name 'no/slash' is not allowed"),
        (["--etcd", "ftp://x:1"], "invalid etcd settings"),
        (["--label", "novalue"], "--label 'novalue' must have the form KEY=VALUE"),
    ],
)
def test_bad_settings_exit_with_one_clear_line(extra: list[str], message: str) -> None:
    base = ["--host", "h1", "--tfs-grpc", "127.0.0.1:1", "--tfs-rest", "127.0.0.1:2", "--http-port", "0"]
    result = subprocess.run([sys.executable, "-m", "tfleet", "agent", *base, *extra], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_env_variables_configure_the_agent() -> None:
    env = {"TFLEET_HOST": "h1", "TFLEET_TFS_GRPC": "127.0.0.1:1", "TFLEET_TFS_REST": "127.0.0.1:2", "TFLEET_HTTP_PORT": "0", "TFLEET_LEASE_TTL": "1"}
    import os

    result = subprocess.run([sys.executable, "-m", "tfleet", "agent"], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert result.returncode == 2 and "--lease-ttl 1 is too short" in result.stderr


def test_sigstopped_tf_serving_is_reported_unresponsive_then_recovers(tmp_path, etcd_server, store, prefix) -> None:
    """The hang of issue 3 for real: `kill -STOP` of a `tfleet tfs-sim` process, then SIGCONT."""
    import urllib.error
    import urllib.request

    fleet = Fleet(store, prefix)
    models = tmp_path / "models"
    make_model(models, "m", [1])
    grpc_port, rest_port, http_port = free_port(), free_port(), free_port()
    tfs = Daemon(
        "tfs-h1", ["tfs-sim", "--grpc-port", str(grpc_port), "--rest-port", str(rest_port), "--file-system-poll-wait-seconds", "0.2"], tmp_path / "tfs.log"
    ).start()
    args = [
        "agent",
        "--host",
        "h1",
        "--etcd",
        etcd_server.client_url,
        "--prefix",
        prefix.rstrip("/"),
        "--tfs-grpc",
        f"127.0.0.1:{grpc_port}",
        "--tfs-rest",
        f"127.0.0.1:{rest_port}",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--lease-ttl",
        str(TTL),
        "--etcd-timeout",
        "0.5",
        "--reload-timeout",
        "3",
        "--status-timeout",
        "0.5",
        "--tfs-probe-interval",
        "0.5",
        "--tfs-unresponsive-after",
        "2",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    agent = Daemon("agent-h1", args, tmp_path / "agent.log").start()

    def readyz() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=3) as reply:
                return reply.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    try:
        fleet.assign("h1", "m", {"base_path": str(models / "m")})
        fleet.wait_available("h1", "m", {1}, timeout=30)
        wait_until(lambda: readyz() == 200, 15, message="agent ready")
        tfs.signal(signal.SIGSTOP)
        try:
            fleet.wait_status(
                "h1",
                "m",
                lambda s: s.versions["1"].state == "UNKNOWN" and "unresponsive" in (s.error or ""),
                timeout=20,
                what="to report TF Serving unresponsive",
            )
            assert readyz() == 503
        finally:
            tfs.signal(signal.SIGCONT)
        fleet.wait_available("h1", "m", {1}, timeout=30)
        wait_until(lambda: readyz() == 200, 15, message="agent ready again")
    finally:
        agent.stop()
        tfs.stop()
