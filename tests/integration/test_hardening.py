"""No value in etcd stops a daemon or vanishes (issue: adversarial operator against real daemons).

Real etcd, real controllers and agents (in-process, see the harnesses), the TF Serving
simulator. Each test pins one numbered failure of the issue:

1. a pass that raises anything unexpected no longer kills the agent's or the controller's loop;
5. garbage put into the leader key (which detaches it from its lease) is rewritten under the
   leader's lease, and a leader key bound to no lease at all is removed by a standby;
6. bad values under hostctl/, schedules/, versions/, status/, hosts/, models/ (also invalid
   names) are listed in <prefix>/problems and counted by tfleet_controller_problems.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import wait_until
from tests.integration.controller_harness import ControlledFleet, running_fleet
from tfleet import schema
from tfleet.schema import FleetProblems, LeaderRecord
from tfleet.sim.fixtures import make_model


@pytest.fixture
def fleet(store, prefix, etcd_server, sim_factory, tmp_path):
    yield from running_fleet(store, prefix, etcd_server.client_url, sim_factory, tmp_path)


def problems(fleet: ControlledFleet) -> FleetProblems | None:
    kv = fleet.store.get(fleet.keyspace.problems())
    return schema.parse(FleetProblems, kv.value, kv.key) if kv else None


def problem_keys(fleet: ControlledFleet) -> set[str]:
    document = problems(fleet)
    return {p.key for p in document.problems} if document else set()


class Flaky:
    """Wraps a pass: raises an unexpected error the first `times` calls, then runs it."""

    def __init__(self, real, times: int) -> None:
        self.real, self.times, self.calls = real, times, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            raise RuntimeError(f"injected failure {self.calls}")
        return self.real(*args, **kwargs)


# -- 1: loops survive ------------------------------------------------------------------------


def test_controller_loop_survives_a_pass_that_raises(fleet, models_dir) -> None:
    fleet.add("h1")
    make_model(models_dir, "m", [1])
    running = fleet.start_controller()
    controller = running.controller
    wait_until(lambda: running.is_leader, 20, message="c1 leads")
    controller.reconciler.reconcile = Flaky(controller.reconciler.reconcile, times=2)
    fleet.declare("m", {"base_path": str(models_dir / "m"), "model_version_policy": {"specific": {"versions": [1]}}})
    fleet.wait_ready("m", 1, 1, timeout=40)  # served once the pass works again
    assert running.thread.is_alive()
    registry = controller.metrics.registry
    assert registry.get_sample_value("tfleet_controller_pass_errors_total") == 2
    wait_until(lambda: registry.get_sample_value("tfleet_controller_pass_failing") == 0, 10, message="the failing gauge clears")


def test_agent_loop_survives_a_pass_that_raises(fleet, models_dir) -> None:
    agent = fleet.add("h1")
    make_model(models_dir, "m", [1])
    wait_until(lambda: agent.agent.reconciler.completed > 0, 20, message="first pass")
    agent.agent.reconciler.reconcile = Flaky(agent.agent.reconciler.reconcile, times=2)
    revision = fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1}, revision, timeout=40)
    assert agent.thread.is_alive()
    assert agent.counter("tfleet_agent_pass_errors_total") == 2
    wait_until(lambda: agent.counter("tfleet_agent_pass_failing") == 0, 10, message="the failing gauge clears after a good pass")


# -- 6: every bad value is visible with etcdctl ------------------------------------------------


def test_bad_values_of_every_section_are_listed_in_the_problems_key(fleet, models_dir) -> None:
    running = fleet.start_controller()
    wait_until(lambda: running.is_leader, 20, message="c1 leads")
    ks = fleet.keyspace
    bad = {
        ks.hostctl("h1"): b'{"cordoned": "yes"}',
        ks.schedule("m", "s1"): b'{"at": "tomorrow", "action": "promote"}',
        ks.version("m", 3): b'{"model": "m"}',
        ks.status("h1", "m"): b'{"assignment_revision": 1, "versions": {"\xc2\xb2": {"state": "END"}}, "updated_at": "2026-01-01T00:00:00Z"}',
        ks.host("h9"): b"not json",
        ks.model("m"): b'{"base_path": "\\ud800"}',
        ks.models_prefix() + "bad name": b'{"base_path": "/m"}',
        ks.versions_prefix("m") + "\xb2": b"{}",
    }
    for key, value in bad.items():
        fleet.store.put(key, value)
    wait_until(lambda: problem_keys(fleet) >= set(bad), 20, message=f"every bad value listed; have {problem_keys(fleet)}")
    document = problems(fleet)
    assert document is not None and document.total == len(bad)
    assert {p.section for p in document.problems} == {"hostctl", "schedules", "versions", "status", "hosts", "models"}
    assert all(p.error for p in document.problems)
    cordon = next(p for p in document.problems if p.key == ks.hostctl("h1"))
    assert "cordoned" in cordon.error
    gauge = running.controller.metrics.registry.get_sample_value
    assert gauge("tfleet_controller_problems", {"section": "versions"}) == 2
    # fixed or deleted: gone from the list
    fleet.store.put(ks.hostctl("h1"), b'{"cordoned": true}')
    wait_until(lambda: ks.hostctl("h1") not in problem_keys(fleet), 20, message="fixed value leaves the list")
    assert problems(fleet).total == len(bad) - 1


# -- 5: the leader key ---------------------------------------------------------------------------


def test_leader_key_overwritten_by_hand_is_rewritten_under_the_leaders_lease(fleet) -> None:
    running = fleet.start_controller()
    wait_until(lambda: running.is_leader, 20, message="c1 leads")
    key = fleet.keyspace.leader()
    lease = running.controller.election.lease_id
    fleet.store.put(key, b"xyz")  # like `etcdctl put /tfleet/leader xyz`: no lease any more

    def repaired():
        kv = fleet.store.get(key)
        return kv is not None and kv.lease == lease and schema.parse(LeaderRecord, kv.value, key).id == "c1"

    wait_until(repaired, 15, message="the leader key is back under c1's lease")
    assert running.is_leader
    # so it still goes with the leader: a successor can lead
    running.stop()
    second = fleet.start_controller("c2")
    wait_until(lambda: second.is_leader, 20, message="c2 leads after c1")


def test_leader_key_bound_to_no_lease_is_reported_then_removed_by_a_standby(fleet) -> None:
    key = fleet.keyspace.leader()
    fleet.store.put(key, json.dumps({"id": "ghost", "since": "2026-01-01T00:00:00Z", "version": "0"}).encode())
    running = fleet.start_controller()
    wait_until(lambda: fleet.keyspace.leader() in problem_keys(fleet), 20, message="the orphaned leader key is reported")
    assert "no lease" in problems(fleet).problems[0].error
    wait_until(lambda: running.is_leader, 30, message="c1 leads once the orphaned key is gone")
    kv = fleet.store.get(key)
    assert kv is not None and kv.lease != 0
    wait_until(lambda: key not in problem_keys(fleet), 20, message="the problem is gone once a leader holds the key")


def test_dashboard_state_thread_survives_an_unexpected_error(store, prefix) -> None:
    import urllib.request

    from tfleet import logs
    from tfleet.controller.dashboard import Dashboard
    from tfleet.keyspace import Keyspace

    ks = Keyspace(prefix.rstrip("/"))
    dashboard = Dashboard(store, ks, "127.0.0.1", 0, controller_id="c9", log=logs.get("dashboard"))
    dashboard._publish = Flaky(dashboard._publish, times=1)  # the state thread's first publish raises
    dashboard.start()
    try:

        def hosts() -> list[dict]:
            with urllib.request.urlopen(dashboard.url + "api/state", timeout=5) as response:
                return json.loads(response.read())["hosts"]

        store.put(ks.hostctl("h1"), json.dumps({"cordoned": True}).encode())
        wait_until(lambda: [h["cordoned"] for h in hosts()] == [True], 20, message="the state thread went on after the error")
        assert dashboard._publish.calls > 1
    finally:
        dashboard.stop()


def test_values_near_etcds_request_limit_do_not_stop_the_control_plane(fleet, models_dir) -> None:
    """Three etcdctl puts of 1.4 MiB each made the prefix larger than gRPC's default 4 MiB
    message limit: every read of the whole prefix failed and the controller stopped acting."""
    fleet.add("h1")
    make_model(models_dir, "m", [1])
    running = fleet.start_controller()
    wait_until(lambda: running.is_leader, 20, message="c1 leads")
    big = json.dumps({"base_path": "/m", "description": "x" * 1_400_000}).encode()
    for index in range(3):
        fleet.store.put(fleet.keyspace.hostctl(f"big-{index}"), big)  # invalid: description is no HostControl field
        fleet.store.put(fleet.keyspace.assignment("h1", f"big-{index}"), big)  # invalid: an unknown field
    fleet.declare("m", {"base_path": str(models_dir / "m"), "model_version_policy": {"specific": {"versions": [1]}}})
    fleet.wait_ready("m", 1, 1, timeout=40)
    wait_until(lambda: {fleet.keyspace.hostctl(f"big-{i}") for i in range(3)} <= problem_keys(fleet), 20, message="big values listed")
    fleet.wait_status("h1", "big-0", lambda s: s.error is not None, timeout=20, what="to report the big assignment")


# -- a host record overwritten by hand -----------------------------------------------------------


def test_an_invalid_host_record_keeps_the_host_and_its_replicas_until_the_key_is_deleted(fleet, models_dir) -> None:
    """Found by the daemon fuzzer: garbage in hosts/h1 made the controller count h1 as gone and
    delete its assignments at once (no make-before-break), so TF Serving unloaded a good model.
    While the key exists the controller keeps h1's last valid record; a deleted key (the
    agent's lease gone) still means the host is gone."""
    agent = fleet.add("h1")
    make_model(models_dir, "good", [1])
    running = fleet.start_controller()
    wait_until(lambda: running.is_leader, 20, message="c1 leads")
    fleet.declare("good", {"base_path": str(models_dir / "good"), "model_version_policy": {"specific": {"versions": [1]}}})
    fleet.wait_ready("good", 1, 1, timeout=40)
    ks, sim = fleet.keyspace, fleet.sims["h1"]
    placed = fleet.store.get(ks.assignment("h1", "good"))
    assert placed is not None

    def rewritten() -> int | None:
        kv = fleet.store.get(ks.host("h1"))
        valid = kv is not None and kv.lease == agent.agent.lease.lease_id and kv.value.startswith(b"{") and b'"grpc_address"' in kv.value
        return kv.mod_revision if valid else None

    for n in range(16):  # plain puts (detached from the lease) and puts keeping the agent's lease
        fleet.store.put(ks.host("h1"), b"not json" if n % 2 else b'{"host": "h1"}', lease=agent.agent.lease.lease_id if n % 4 < 2 else None)
        wait_until(lambda: rewritten() is not None, 20, message="the agent writes its host record back")
        kv = fleet.store.get(ks.assignment("h1", "good"))
        assert kv is not None and kv.create_revision == placed.create_revision, f"assignment deleted after {n + 1} bad host records"
    last = rewritten()
    wait_until(
        lambda: running.controller.reconciler.last_snapshot is not None and running.controller.reconciler.last_snapshot.revision >= last,
        20,
        message="the controller planned from the last record",
    )
    assert sim.manager.serving("good", 1) is not None and sim.load_count("good", 1) == 1
    kv = fleet.store.get(ks.assignment("h1", "good"))
    assert kv is not None and kv.create_revision == placed.create_revision
    assert running.controller.metrics.registry.get_sample_value("tfleet_controller_pass_errors_total") == 0
    # the key deleted (the agent stops and revokes its lease): h1 is gone, its assignment too
    agent.stop()
    wait_until(lambda: fleet.store.get(ks.assignment("h1", "good")) is None, 30, message="h1's assignment deleted once its key is gone")
