"""`tfleet dev` (the README's first command) as a user meets it.

Two fleets, each on a free port, its own run dir and its own context file:
  * with --restart: it serves the samples, the CLI finds it without flags, the samples show
    alerts and a canary, a killed daemon comes back, Ctrl-C stops it all and removes the data;
  * by default: a second fleet is refused without harming it, a killed controller stays down
    while the fleet heals (the standby leads), and losing etcd ends the command with exit 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tfleet.cli.dev import DEFAULT_RUN_DIR, default_run_dir
from tfleet.etcd_local import etcd_binary, free_port

TTL = 4


@dataclass
class DevFleet:
    proc: subprocess.Popen
    log: Path
    run_dir: Path
    context: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def out(self) -> str:
        return self.log.read_text()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "TFLEET_CONTEXT": str(self.context)}
        env.pop("TFLEET_ETCD_ENDPOINTS", None)
        return env

    def tfleet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "tfleet", *args], capture_output=True, text=True, env=self.env(), timeout=60)
        assert not check or result.returncode == 0, f"tfleet {' '.join(args)} exited {result.returncode}: {result.stderr}"
        return result

    def etcdctl(self, *args: str) -> str:
        env = {**os.environ, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": self.endpoint}
        return subprocess.run([str(etcd_binary("etcdctl")), *args], capture_output=True, text=True, env=env, timeout=30, check=True).stdout

    def pid(self, name: str) -> int:
        return int((self.run_dir / "pids" / f"{name}.pid").read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        return self.proc.wait(60)


def start_dev(tmp_path: Path, name: str, *args: str) -> DevFleet:
    port = free_port()
    fleet = DevFleet(None, tmp_path / f"{name}.out", tmp_path / name, tmp_path / f"{name}-context.json", port)  # type: ignore[arg-type]
    with open(fleet.log, "w") as out:
        fleet.proc = subprocess.Popen(
            [sys.executable, "-m", "tfleet", "dev", "--run-dir", str(fleet.run_dir), "--etcd-port", str(port), "--lease-ttl", str(TTL), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=fleet.env(),
        )
    wait_until(lambda: "Press Ctrl-C" in fleet.out() or fleet.proc.poll() is not None, 120, message=f"tfleet dev {name} printed its guide")
    assert fleet.proc.poll() is None, fleet.out()
    return fleet


@pytest.fixture
def dev_fleet(tmp_path) -> Iterator[DevFleet]:
    fleet = start_dev(tmp_path, "restarting", "--restart")
    try:
        yield fleet
    finally:
        fleet.stop()


def leftovers(run_dir: Path) -> list[str]:
    return subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout.split()


def test_dev_fleet_serves_samples_and_stops_cleanly(dev_fleet: DevFleet) -> None:
    fleet = dev_fleet

    def available(key: str) -> bool:
        out = fleet.etcdctl("get", "--print-value-only", key)
        return bool(out.strip()) and all(v["state"] == "AVAILABLE" for v in json.loads(out)["versions"].values())

    wait_until(lambda: available("/tfleet/status/h1/half_plus_two"), 60, message="hand-made assignment served")
    wait_until(
        lambda: '"ready_replicas":{"1":2}' in fleet.etcdctl("get", "--print-value-only", "/tfleet/modelstatus/resnet_lite"),
        60,
        message="controller placed resnet_lite on 2 hosts",
    )
    assert '"id":"c' in fleet.etcdctl("get", "--print-value-only", "/tfleet/leader")

    # item 4: the CLI finds the fleet through the context file, no flag, no variable
    models = json.loads(fleet.tfleet("get", "models", "-o", "json").stdout)
    assert {"resnet_lite", "sentiment"} <= {m["name"] for m in models}
    # item 9: the samples have alert thresholds and a canary in progress
    rules = fleet.tfleet("alerts", "render").stdout
    assert "groups: []" not in rules and "model: resnet_lite" in rules and "model: sentiment" in rules
    rollout = json.loads(fleet.tfleet("rollout", "status", "sentiment", "-o", "json").stdout)
    assert rollout["phase"] == "canary", rollout

    # --restart: a daemon that dies comes back
    old = fleet.pid("tfs-h3")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: "tfs-h3 restarted" in fleet.out(), 30, message="tfs-h3 restarted")
    assert fleet.pid("tfs-h3") != old and fleet.proc.poll() is None

    assert fleet.stop() == 0
    out = fleet.out()
    assert "stopping the local fleet" in out
    wait_until(lambda: not leftovers(fleet.run_dir), 10, message="no process of the fleet left")
    # item 8: a clean stop keeps the logs only; the context file goes with the fleet
    assert sorted(p.name for p in fleet.run_dir.iterdir() if not p.name.startswith(".")) == ["logs"]
    assert not fleet.context.exists()


def test_second_fleet_never_breaks_the_first_and_a_dead_daemon_stays_down(tmp_path) -> None:
    fleet = start_dev(tmp_path, "first")
    try:
        wait_until(lambda: '"id":"c' in fleet.etcdctl("get", "--print-value-only", "/tfleet/leader"), 30, message="a controller leads")
        # item 5: a second fleet in the same run directory is refused before it touches it
        second = subprocess.run(
            [sys.executable, "-m", "tfleet", "dev", "--run-dir", str(fleet.run_dir), "--etcd-port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=60,
            env={**fleet.env(), "TFLEET_CONTEXT": str(tmp_path / "second.json")},
        )
        assert second.returncode == 1 and "is in use by a running tfleet dev" in second.stderr, second.stderr
        # ... and one on the same port, in its own directory, too
        third = subprocess.run(
            [sys.executable, "-m", "tfleet", "dev", "--run-dir", str(tmp_path / "third"), "--etcd-port", str(fleet.port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**fleet.env(), "TFLEET_CONTEXT": str(tmp_path / "third.json")},
        )
        assert third.returncode == 1 and "--etcd-port" in third.stderr, third.stderr
        assert (fleet.run_dir / "etcd").is_dir() and (fleet.run_dir / "models" / "mnist").is_dir()
        assert fleet.tfleet("get", "hosts").returncode == 0

        # item 6: kill the leader: it is reported and stays down, the standby leads, the fleet runs on
        leader = json.loads(fleet.etcdctl("get", "--print-value-only", "/tfleet/leader"))["id"]
        standby = {"c1": "c2", "c2": "c1"}[leader]
        assert f"killed controller-{leader}" in fleet.tfleet("dev", "kill-leader").stdout
        wait_until(lambda: f"controller-{leader} exited" in fleet.out(), 10, message="the supervisor reported the dead controller")
        wait_until(lambda: f'"id":"{standby}"' in fleet.etcdctl("get", "--print-value-only", "/tfleet/leader"), TTL + 10, message="the standby leads")
        assert fleet.proc.poll() is None
        assert re.search(rf"controller-{leader}\s+\d+\s+down", fleet.tfleet("dev", "ps").stdout)

        # the host-loss drill: h2's agent and TF Serving die, its host key expires, the fleet runs on
        killed = fleet.tfleet("dev", "kill-host", "h2").stdout
        assert "killed agent-h2" in killed and "killed tfs-h2" in killed
        wait_until(
            lambda: "/tfleet/hosts/h2" not in fleet.etcdctl("get", "--prefix", "--keys-only", "/tfleet/hosts/"), TTL + 10, message="h2's host key expired"
        )
        wait_until(lambda: "agent-h2 exited" in fleet.out() and "tfs-h2 exited" in fleet.out(), 10, message="both reported")
        assert fleet.proc.poll() is None

        # losing etcd: the fleet cannot be kept up, so the command ends with exit code 1
        os.kill(fleet.pid("etcd"), signal.SIGKILL)
        assert fleet.proc.wait(60) == 1, fleet.out()
        assert "etcd exited" in fleet.out()
        wait_until(lambda: not leftovers(fleet.run_dir), 10, message="no process of the fleet left")
    finally:
        fleet.stop()


def test_default_run_dir_is_per_port() -> None:
    assert default_run_dir(23790) == DEFAULT_RUN_DIR
    assert default_run_dir(23791) == f"{DEFAULT_RUN_DIR}-23791"
