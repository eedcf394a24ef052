"""Rollouts that can always be stopped, over a real etcd with agents, simulators and a controller.

* a rollout to a version that has no directory on the hosts aborts by itself (the agents
  report "version N not found": a load failure), within a bound, back to the old version
  and labels, and the model's health says so;
* `rollout.abort` set during each phase of a rolling rollout (adding, labeling, removing)
  leaves the assignments holding only the old version and labels within a bound, and at
  least one replica serves throughout.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import structlog
from click.testing import CliRunner

from tests.helpers import wait_until
from tests.integration.agent_harness import stop_running
from tests.integration.controller_harness import ControlledFleet, add_host, start_controller
from tfleet import schema
from tfleet.cli.main import cli
from tfleet.schema import Assignment
from tfleet.sim.fixtures import make_model

ABORT_BOUND = 30.0  # seconds from the abort to assignments holding only the old version


@pytest.fixture
def fleet(store, prefix, etcd_server, sim_factory, tmp_path) -> Iterator[ControlledFleet]:
    # CliRunner swaps sys.stdout while a command runs: keep the daemons' logs out of it.
    logging_config = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    fleet = ControlledFleet(store, prefix)
    for host in ("h1", "h2"):
        add_host(fleet, host, sim_factory, etcd_server.client_url, prefix, tmp_path)
    controller = start_controller("c1", etcd_server.client_url, prefix)
    fleet.etcd_url = etcd_server.client_url
    yield fleet
    stop_running(controller, *fleet.agents.values())
    structlog.configure(**logging_config)


def tfleet(fleet: ControlledFleet, *args: str) -> str:
    """Run a tfleet command in-process against the fleet's etcd and prefix; its stdout."""
    result = CliRunner().invoke(cli, [*args, "--etcd", fleet.etcd_url, "--prefix", fleet.keyspace.prefix, "--etcd-timeout", "2"], catch_exceptions=False)
    assert result.exit_code == 0, f"tfleet {' '.join(args)} exited {result.exit_code}: {result.stderr}"
    return result.stdout


def intent(models_dir, versions, labels, **extra) -> dict:
    return {"base_path": str(models_dir / "m"), "model_version_policy": {"specific": {"versions": versions}}, "version_labels": labels, "replicas": 2, **extra}


def assigned(fleet: ControlledFleet) -> dict[str, tuple[list[int], dict[str, int]]]:
    out = {}
    for host in sorted(fleet.replica_hosts("m")):
        kv = fleet.store.get(fleet.keyspace.assignment(host, "m"))
        if kv is None:
            continue
        value = schema.parse(Assignment, kv.value, kv.key)
        out[host] = (sorted(value.model_version_policy.specific.versions), dict(value.version_labels))
    return out


def only_old(fleet: ControlledFleet) -> bool:
    held = assigned(fleet)
    return len(held) == 2 and all(v == ([1], {"stable": 1}) for v in held.values())


@contextmanager
def serving_sampler(fleet: ControlledFleet) -> Iterator[list[int]]:
    """How many replicas' TF Serving serve m, sampled every 20 ms."""
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(sum(1 for h in ("h1", "h2") if fleet.sims[h].manager.serving("m") is not None))
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(5)


@contextmanager
def paused_agent(fleet: ControlledFleet, host: str) -> Iterator[None]:
    """The host's agent stops acting (its reconcile pass blocks) but keeps its lease: a hung
    agent, which holds a rolling rollout in ``labeling``."""
    release = threading.Event()
    reconciler = fleet.agents[host].agent.reconciler
    original = reconciler.reconcile

    def blocked(full: bool = False):
        release.wait()
        return original(full)

    reconciler.reconcile = blocked
    try:
        yield
    finally:
        reconciler.reconcile = original
        release.set()


def start_on_version_1(fleet: ControlledFleet, models_dir, **sim) -> None:
    make_model(models_dir, "m", [1], **sim)
    fleet.declare("m", intent(models_dir, [1], {"stable": 1}))
    fleet.wait_ready("m", 1, 2)
    wait_until(lambda: (s := fleet.model_status("m")) and s.rollout.phase == "stable" and s.health == "ok", 20, message="version 1 stable and ok")


def test_rollout_to_a_version_with_no_directory_aborts_by_itself(fleet, models_dir) -> None:
    start_on_version_1(fleet, models_dir)
    with serving_sampler(fleet) as samples:
        fleet.declare("m", intent(models_dir, [3], {"stable": 3}))  # no m/3 on any host
        status = wait_until(
            lambda: (s := fleet.model_status("m")) and s.rollout.phase == "backoff" and only_old(fleet) and s,
            ABORT_BOUND,
            message=f"automatic abort back to version 1 (assignments {assigned(fleet)}, report {fleet.model_status('m')})",
        )
    [failure] = status.failures
    assert failure.version == 3 and "version 3 not found" in failure.error
    assert status.rollout.from_versions == [1] and status.rollout.to_versions == [3]
    assert status.health == "failing" and "version 3 failed to load" in status.health_reason
    assert min(samples) >= 1, "a replica stopped serving during the automatic abort"
    # the agents serve version 1 only, with its label, and report no error any more
    for host in ("h1", "h2"):
        fleet.wait_available(host, "m", {1})
        assert fleet.status(host, "m").version_labels == {"stable": 1}


def hold_adding(fleet: ControlledFleet, models_dir) -> None:
    make_model(models_dir, "m", [2], load_seconds=8.0)  # version 2 stays LOADING
    tfleet(fleet, "rollout", "start", "m", "--version", "2")
    wait_until(
        lambda: (
            (s := fleet.model_status("m"))
            and s.rollout.phase == "adding"
            and all(fleet.status(h, "m") and "2" in fleet.status(h, "m").versions for h in ("h1", "h2"))
        ),
        20,
        message="adding, version 2 loading everywhere",
    )


def hold_labeling(fleet: ControlledFleet, models_dir) -> None:
    make_model(models_dir, "m", [2])
    tfleet(fleet, "rollout", "start", "m", "--version", "2")
    wait_until(lambda: (s := fleet.model_status("m")) and s.rollout.phase == "labeling", 20, message="labeling (h2's agent does not act)")


def hold_removing(fleet: ControlledFleet, models_dir) -> None:
    make_model(models_dir, "m", [2])
    tfleet(fleet, "rollout", "start", "m", "--version", "2")
    wait_until(lambda: (s := fleet.model_status("m")) and s.rollout.phase == "removing", 20, message="removing (version 1 unloads slowly)")


@pytest.mark.parametrize("phase", ["adding", "labeling", "removing"])
def test_abort_during_each_phase_of_a_rolling_rollout(fleet, models_dir, phase) -> None:
    # version 1 takes 5 s to unload, which holds the rollout in "removing"
    start_on_version_1(fleet, models_dir, unload_seconds=5.0 if phase == "removing" else 0.0)
    with serving_sampler(fleet) as samples, paused_agent(fleet, "h2") if phase == "labeling" else _nothing():
        {"adding": hold_adding, "labeling": hold_labeling, "removing": hold_removing}[phase](fleet, models_dir)
        if phase == "labeling":
            assert all(labels == {"stable": 2} for _, labels in assigned(fleet).values()), assigned(fleet)
        assert tfleet(fleet, "rollout", "abort", "m").startswith("m: rollout aborted")
        wait_until(lambda: only_old(fleet), ABORT_BOUND, message=f"abort in {phase}: assignments back to version 1 (have {assigned(fleet)})")
        status = wait_until(lambda: (s := fleet.model_status("m")) and s.rollout.phase == "aborting" and s, 10, message="phase aborting")
        assert status.rollout.from_versions == [1] and status.rollout.from_labels == {"stable": 1}
    assert min(samples) >= 1, f"no replica served at some point while aborting in {phase}"
    for host in ("h1", "h2"):
        fleet.wait_available(host, "m", {1}, timeout=30)
    assert only_old(fleet), "the abort holds"


@contextmanager
def _nothing() -> Iterator[None]:
    yield
