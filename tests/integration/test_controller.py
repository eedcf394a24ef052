"""The controller with several agents and simulators, over a real etcd, in one process."""

from __future__ import annotations

import json

import threading
import time

import pytest

from tests.helpers import wait_until
from tests.integration.controller_harness import running_fleet
from tfleet import schema
from tfleet.sim.fixtures import make_model


@pytest.fixture
def fleet(store, prefix, etcd_server, sim_factory, tmp_path):
    yield from running_fleet(store, prefix, etcd_server.client_url, sim_factory, tmp_path)


def intent(models_dir, name, versions, replicas=2, **extra) -> dict:
    return {"base_path": str(models_dir / name), "model_version_policy": {"specific": {"versions": versions}}, "replicas": replicas, **extra}


def test_replicas_placed_and_available(fleet, models_dir) -> None:
    for host in ("h1", "h2", "h3"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2))
    hosts = fleet.wait_ready("m", 1, 2)
    assert len(hosts) == 2 and len(fleet.replica_hosts("m")) == 2
    status = wait_until(lambda: (s := fleet.model_status("m")) and s.ready_replicas.get("1") == 2 and s, 15, message="modelstatus shows 2 ready")
    assert status.wanted_replicas == 2 and status.rollout.phase == "stable"


def test_host_selector_and_unplaceable_reason(fleet, models_dir) -> None:
    fleet.add("a1", labels={"zone": "a"})
    fleet.add("b1", labels={"zone": "b"})
    make_model(models_dir, "m", [1])
    make_model(models_dir, "big", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=1, host_selector={"zone": "b"}))
    fleet.declare("big", intent(models_dir, "big", [1], replicas=1, memory_mb=100_000))
    fleet.wait_ready("m", 1, 1)
    assert fleet.replica_hosts("m") == {"b1"}
    status = wait_until(lambda: (s := fleet.model_status("big")) and s.reasons and s, 15, message="reason for big")
    assert any("100000" in r for r in status.reasons), status.reasons


def test_invalid_intent_reported_and_old_one_kept(fleet, models_dir) -> None:
    for host in ("h1", "h2"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2))
    fleet.wait_ready("m", 1, 2)
    fleet.declare("m", '{"base_path": "/x", "replicas": "many"}')
    status = wait_until(lambda: (s := fleet.model_status("m")) and s.error and s, 15, message="intent error reported")
    assert "replicas" in status.error and "last valid intent keeps being served" in status.error
    assert len(fleet.available_hosts("m", 1)) == 2  # nothing deleted


def test_after_a_restart_the_last_valid_intent_comes_from_the_history(fleet, models_dir) -> None:
    """The new controller never saw the valid intent: it reads the newest history entries
    (recorded by the first controller's history recorder) instead of unloading the model."""
    for host in ("h1", "h2"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    first = fleet.start_controller("c1")
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2))
    fleet.wait_ready("m", 1, 2)
    broken = fleet.declare("m", '{"base_path": "/x", "replicas": "many"}')
    wait_until(
        lambda: (kv := fleet.store.get(fleet.keyspace.history_cursor())) and json.loads(kv.value)["revision"] >= broken,
        15,
        message="the invalid intent was not recorded",
    )
    first.stop()
    second = fleet.start_controller("c2")
    passes = second.controller.metrics.reconcile_total.labels("ok")
    wait_until(lambda: passes._value.get() >= 2, 15, message="the restarted controller made no pass")
    status = fleet.model_status("m")
    assert status is not None and "last valid intent keeps being served" in status.error
    assert len(fleet.available_hosts("m", 1)) == 2 and fleet.replica_hosts("m") == {"h1", "h2"}


def test_deleted_intent_removes_assignments(fleet, models_dir) -> None:
    fleet.add("h1")
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=1))
    fleet.wait_ready("m", 1, 1)
    fleet.store.delete(fleet.keyspace.model("m"))
    wait_until(lambda: not fleet.replica_hosts("m") and fleet.model_status("m") is None, 15, message="assignments and modelstatus removed")


def test_operator_assignments_without_intent_are_left_alone(fleet, models_dir) -> None:
    fleet.add("h1")
    make_model(models_dir, "handmade", [1])
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.assign("h1", "handmade", {"base_path": str(models_dir / "handmade")})
    fleet.declare("m", intent(models_dir, "m", [1], replicas=1))
    fleet.wait_ready("m", 1, 1)
    fleet.wait_available("h1", "handmade", {1})
    assert fleet.replica_hosts("handmade") == {"h1"}


def test_host_loss_reschedules_within_ttl(fleet, models_dir) -> None:
    for host in ("h1", "h2", "h3"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2))
    before = fleet.wait_ready("m", 1, 2)
    victim = sorted(before)[0]
    # stop renewing without revoking: like a dead host, the lease expires after the TTL
    agent = fleet.agents[victim]
    agent.agent.lease.revoke = lambda: None  # keep the keys: die, do not resign
    agent.stop()
    lost_at = time.monotonic()
    wait_until(lambda: fleet.store.get(fleet.keyspace.host(victim)) is None, 10, message="host lease expired")
    expired_at = time.monotonic()
    wait_until(lambda: victim not in fleet.replica_hosts("m") and len(fleet.replica_hosts("m")) == 2, 5, message="replica moved")
    assert time.monotonic() - expired_at <= 1.0 + 1.5, "rescheduled later than about a second after the host vanished"
    assert time.monotonic() - lost_at <= 4 + 1 + 2
    fleet.wait_ready("m", 1, 2)


def test_rolling_rollout_never_drops_to_zero_available(fleet, models_dir) -> None:
    for host in ("h1", "h2"):
        fleet.add(host)
    make_model(models_dir, "m", [1, 2], load_seconds=0.3)
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2, version_labels={"stable": 1}))
    fleet.wait_ready("m", 1, 2)

    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            hosts = fleet.replica_hosts("m")
            serving = sum(1 for h in hosts if fleet.sims[h].manager.serving("m") is not None)
            samples.append(serving)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fleet.declare("m", intent(models_dir, "m", [2], replicas=2, version_labels={"stable": 2}))
        wait_until(
            lambda: (s := fleet.model_status("m")) and s.rollout.phase == "stable" and s.ready_replicas.get("2") == 2 and "1" not in s.ready_replicas,
            40,
            message="rollout to version 2 finished",
        )
    finally:
        stop.set()
        sampler.join(5)
    assert len(samples) > 20
    assert min(samples) >= 1, f"some sample saw no replica serving: {samples}"
    for host in ("h1", "h2"):
        assert fleet.status(host, "m").version_labels == {"stable": 2}


def test_canary_abort_on_load_failure(fleet, models_dir) -> None:
    for host in ("h1", "h2", "h3"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    make_model(models_dir, "m", [2], fail_versions=[2])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=3, version_labels={"stable": 1}))
    fleet.wait_ready("m", 1, 3)
    fleet.declare("m", intent(models_dir, "m", [2], replicas=3, version_labels={"stable": 2}, rollout={"strategy": "canary", "canary_replicas": 1}))
    status = wait_until(lambda: (s := fleet.model_status("m")) and s.failures and s.rollout.phase == "backoff" and s, 30, message="automatic abort recorded")
    (failure,) = status.failures
    assert failure.version == 2 and "simulated load failure" in failure.error
    wait_until(
        lambda: all(fleet.status(h, "m") and set(fleet.status(h, "m").versions) == {"1"} for h in fleet.replica_hosts("m")),
        20,
        message="every replica back on version 1 only",
    )
    assert len(fleet.available_hosts("m", 1)) == 3


def test_drain_moves_replicas_make_before_break(fleet, models_dir) -> None:
    for host in ("h1", "h2", "h3"):
        fleet.add(host)
    make_model(models_dir, "m", [1], load_seconds=0.3)
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2))
    hosts = fleet.wait_ready("m", 1, 2)
    drained = sorted(hosts)[0]
    fleet.store.put(fleet.keyspace.hostctl(drained), b'{"draining": true, "reason": "kernel upgrade"}')
    wait_until(lambda: drained not in fleet.replica_hosts("m"), 30, message="replica moved off the draining host")
    # make-before-break: by the time it left, its replacement was AVAILABLE
    assert len(fleet.available_hosts("m", 1)) >= 1
    fleet.wait_ready("m", 1, 2)
    assert drained not in fleet.replica_hosts("m")


def test_standby_takes_over_and_only_leader_writes(fleet, models_dir) -> None:
    fleet.add("h1")
    make_model(models_dir, "m", [1])
    first = fleet.start_controller("c1")
    wait_until(lambda: first.is_leader, 10, message="c1 leads")
    second = fleet.start_controller("c2")
    fleet.declare("m", intent(models_dir, "m", [1], replicas=1))
    fleet.wait_ready("m", 1, 1)
    assert not second.is_leader
    first.stop()  # clean stop resigns: the standby takes over at once
    wait_until(lambda: second.is_leader, 5, message="c2 took over")
    make_model(models_dir, "n", [1])
    fleet.declare("n", intent(models_dir, "n", [1], replicas=1))
    fleet.wait_ready("n", 1, 1)


def test_restarting_every_controller_mid_rollout_loses_nothing(fleet, models_dir) -> None:
    for host in ("h1", "h2"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    make_model(models_dir, "m", [2], load_seconds=1.0)
    first = fleet.start_controller("c1")
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2, version_labels={"stable": 1}))
    fleet.wait_ready("m", 1, 2)
    fleet.declare("m", intent(models_dir, "m", [2], replicas=2, version_labels={"stable": 2}))
    wait_until(lambda: (s := fleet.model_status("m")) and s.rollout.phase == "adding", 15, message="rollout under way")
    first.stop()  # every controller gone mid-rollout; all state is in etcd
    assert len(fleet.available_hosts("m", 1)) == 2
    fleet.start_controller("c9")  # a brand-new controller with no memory
    wait_until(
        lambda: (s := fleet.model_status("m")) and s.rollout.phase == "stable" and s.ready_replicas.get("2") == 2,
        40,
        message="the new controller finished the rollout",
    )
    assert fleet.replica_hosts("m") == {"h1", "h2"}


def test_routes_follow_what_is_served(fleet, models_dir) -> None:
    from tfleet.schema import RouteTable

    for host in ("h1", "h2"):
        fleet.add(host)
    make_model(models_dir, "m", [1])
    fleet.start_controller()
    fleet.declare("m", intent(models_dir, "m", [1], replicas=2, version_labels={"stable": 1}))
    fleet.wait_ready("m", 1, 2)

    def table():
        kv = fleet.store.get(fleet.keyspace.routes("m"))
        return schema.parse(RouteTable, kv.value, kv.key) if kv else None

    routes = wait_until(lambda: (t := table()) and len(t.labels.get("stable", [])) == 2 and t, 15, message="routes list both replicas")
    assert {e.host for e in routes.versions["1"]} == {"h1", "h2"}
    victim = fleet.agents["h1"]
    victim.stop()  # clean stop revokes its lease: its status keys vanish
    wait_until(lambda: (t := table()) and {e.host for e in t.endpoints} == {"h2"}, 15, message="dead host dropped from routes")


def test_controller_serves_prometheus_service_discovery(fleet) -> None:
    import json as _json
    import urllib.request

    agent = fleet.add("h1")
    controller = fleet.start_controller()
    wait_until(lambda: fleet.store.get(fleet.keyspace.host("h1")) is not None, 10, message="h1 registered")
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.controller.ops.port}/sd/agents", timeout=5) as response:
        groups = _json.loads(response.read())
    assert [g["targets"] for g in groups] == [[f"127.0.0.1:{agent.agent.ops.port}"]]
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.controller.ops.port}/sd/tfserving", timeout=5) as response:
        assert fleet.sims["h1"].rest_address in response.read().decode()


def test_controller_that_stops_leading_drops_its_fleet_gauges(fleet, models_dir) -> None:
    fleet.add("h1")
    make_model(models_dir, "m", [1])
    first = fleet.start_controller("c1")
    fleet.declare("m", intent(models_dir, "m", [1], replicas=1))
    fleet.wait_ready("m", 1, 1)
    registry = first.controller.metrics.registry
    wait_until(lambda: registry.get_sample_value("tfleet_controller_replicas_wanted", {"model": "m"}) == 1, 10, message="leader reports the model")
    second = fleet.start_controller("c2")
    first.controller.election.resign()
    wait_until(lambda: second.is_leader, 10, message="c2 took over")
    wait_until(
        lambda: registry.get_sample_value("tfleet_controller_replicas_wanted", {"model": "m"}) is None,
        10,
        message="the former leader no longer reports the fleet",
    )
    assert registry.get_sample_value("tfleet_controller_is_leader") == 0
