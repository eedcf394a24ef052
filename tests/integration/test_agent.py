"""The agent end to end, in-process, against a real etcd and the TF Serving simulator.

Each test drives etcd the way an operator would (a plain put or delete of an assignment)
and checks both sides: the status key in etcd, and what TF Serving actually serves.
"""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.helpers import wait_until
from tests.integration.agent_harness import Fleet, start_agent, started_agents
from tests.netproxy import TcpProxy
from tfleet.sim.fixtures import make_model
from tfleet.store import EtcdSettings, EtcdStore, StoreUnavailable
from tfleet.tfs.client import TfsClient


@pytest.fixture
def fleet(store: EtcdStore, prefix: str) -> Fleet:
    return Fleet(store, prefix)


@pytest.fixture
def agents(tmp_path, etcd_server, prefix, sim):
    yield from started_agents(tmp_path, etcd_server.client_url, prefix, sim)


@pytest.fixture
def tfs(sim):
    client = TfsClient(sim.grpc_address)
    yield client
    client.close()


def served_states(tfs: TfsClient, model: str) -> dict[int, str]:
    versions = tfs.get_model_status(model, timeout=2.0)
    return {v.version: v.state.value for v in versions or ()}


def specific(models_dir: pathlib.Path, name: str, *versions: int, **extra) -> dict:
    return {"base_path": str(models_dir / name), "model_version_policy": {"specific": {"versions": list(versions)}}, **extra}


def test_assignment_put_becomes_available_in_status(fleet, agents, models_dir, tfs, etcd_server) -> None:
    make_model(models_dir, "resnet", [1, 2])
    agents("h1")
    # exactly what an operator types: etcdctl put
    etcd_server.etcdctl("put", fleet.keyspace.assignment("h1", "resnet"), f'{{"base_path": "{models_dir / "resnet"}"}}')
    revision = fleet.store.get(fleet.keyspace.assignment("h1", "resnet")).mod_revision
    status = fleet.wait_available("h1", "resnet", {2}, revision=revision)
    assert status.version_labels == {}
    assert served_states(tfs, "resnet")[2] == "AVAILABLE"
    host = fleet.store.get(fleet.keyspace.host("h1"))
    assert host is not None and host.lease != 0


def test_new_version_then_label_move(fleet, agents, models_dir, tfs) -> None:
    make_model(models_dir, "m", [1, 2], load_seconds=0.3)
    agents("h1")
    fleet.assign("h1", "m", specific(models_dir, "m", 1, version_labels={"stable": 1}))
    fleet.wait_status("h1", "m", lambda s: s.version_labels == {"stable": 1}, what="to label version 1 stable")

    # add version 2 and move the label in one write: the label follows once 2 is AVAILABLE
    rev = fleet.assign("h1", "m", specific(models_dir, "m", 1, 2, version_labels={"stable": 2}))
    status = fleet.wait_status("h1", "m", lambda s: s.assignment_revision == rev and s.version_labels == {"stable": 2}, what="to move stable to 2")
    assert {v: r.state for v, r in status.versions.items()} == {"1": "AVAILABLE", "2": "AVAILABLE"}

    # drop version 1
    rev = fleet.assign("h1", "m", specific(models_dir, "m", 2, version_labels={"stable": 2}))
    fleet.wait_available("h1", "m", {2}, revision=rev)
    wait_until(lambda: served_states(tfs, "m").get(1) == "END", 10, message="version 1 unloaded from TF Serving")


def test_assignment_deleted_unloads_and_removes_status(fleet, agents, models_dir, tfs) -> None:
    make_model(models_dir, "gone", [1])
    make_model(models_dir, "stays", [1])
    agents("h1")
    fleet.assign("h1", "gone", {"base_path": str(models_dir / "gone")})
    fleet.assign("h1", "stays", {"base_path": str(models_dir / "stays")})
    fleet.wait_available("h1", "gone", {1})
    fleet.wait_available("h1", "stays", {1})
    fleet.unassign("h1", "gone")
    wait_until(lambda: fleet.status("h1", "gone") is None, 10, message="status key of the deleted assignment removed")
    wait_until(lambda: served_states(tfs, "gone").get(1) == "END", 10, message="model unloaded")
    assert served_states(tfs, "stays") == {1: "AVAILABLE"}


@pytest.mark.parametrize(
    "bad_value, expected",
    [
        ('{"base_path": ', "invalid JSON"),
        ('{"base_path": "/x", "model_version_polcy": {}}', "model_version_polcy: unknown field"),
        ('{"base_path": "/x", "model_version_policy": {"latest": {"num_versions": 0}}}', "num_versions"),
    ],
    ids=["invalid-json", "unknown-field", "bad-policy"],
)
def test_invalid_assignment_reported_previous_config_kept(fleet, agents, models_dir, tfs, bad_value, expected) -> None:
    make_model(models_dir, "m", [1])
    make_model(models_dir, "other", [1])
    agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.assign("h1", "other", {"base_path": str(models_dir / "other")})
    fleet.wait_available("h1", "m", {1})

    rev = fleet.assign("h1", "m", bad_value)
    status = fleet.wait_status("h1", "m", lambda s: s.assignment_revision == rev and s.error is not None, what="to report the error")
    assert expected in status.error and "still serving the last valid assignment" in status.error
    assert status.versions["1"].state == "AVAILABLE"
    assert served_states(tfs, "m") == {1: "AVAILABLE"}

    # another model keeps converging while this one is broken
    make_model(models_dir, "other", [2])
    rev_other = fleet.assign("h1", "other", specific(models_dir, "other", 2))
    fleet.wait_available("h1", "other", {2}, revision=rev_other)

    # fixing the value clears the error
    rev = fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1}, revision=rev)


def test_missing_base_path_reported_and_other_reloads_go_through(fleet, agents, models_dir, tfs) -> None:
    make_model(models_dir, "ok1", [1])
    agents("h1")
    fleet.assign("h1", "broken", {"base_path": str(models_dir / "does-not-exist")})
    fleet.assign("h1", "ok1", {"base_path": str(models_dir / "ok1")})
    status = fleet.wait_status("h1", "broken", lambda s: s.error is not None, what="to report the missing base_path")
    assert status.error == f"base_path {models_dir / 'does-not-exist'} does not exist"
    fleet.wait_available("h1", "ok1", {1})
    # TF Serving was never told about it, so later reloads are not stuck behind it
    make_model(models_dir, "ok2", [1])
    fleet.assign("h1", "ok2", {"base_path": str(models_dir / "ok2")})
    fleet.wait_available("h1", "ok2", {1}, timeout=10)
    assert served_states(tfs, "broken") == {}

    # the directory appears: the next resync picks it up without a new write
    make_model(models_dir, "does-not-exist", [3])
    fleet.wait_available("h1", "broken", {3})


def test_unknown_specific_version_is_reported(fleet, agents, models_dir) -> None:
    make_model(models_dir, "m", [1])
    agents("h1")
    fleet.assign("h1", "m", specific(models_dir, "m", 1, 9))
    status = fleet.wait_status("h1", "m", lambda s: s.error is not None, what="to report version 9")
    assert "version 9 not found under base_path" in status.error


def test_failed_load_is_reported_with_the_version_and_message(fleet, agents, models_dir) -> None:
    make_model(models_dir, "m", [1, 2], fail_versions=[2])
    agents("h1")
    fleet.assign("h1", "m", specific(models_dir, "m", 1, 2))
    status = fleet.wait_status("h1", "m", lambda s: s.error is not None and "failed to load" in s.error, what="to report the failed load")
    assert status.error.startswith("version 2 failed to load")
    assert status.versions["2"].state == "END" and status.versions["2"].error_code != 0
    assert status.versions["1"].state == "AVAILABLE"


def test_etcd_down_nothing_unloaded_changes_after_return_applied(etcd_factory, tmp_path, sim, tfs, models_dir) -> None:
    etcd = etcd_factory()
    store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,), call_timeout=1.0))
    fleet = Fleet(store, "/outage")
    make_model(models_dir, "m", [1, 2])
    running = start_agent(host="h1", etcd_url=etcd.client_url, prefix="/outage", tfs_grpc=sim.grpc_address, tfs_rest=sim.rest_address, state_dir=tmp_path / "s")
    try:
        fleet.assign("h1", "m", specific(models_dir, "m", 1))
        fleet.wait_available("h1", "m", {1})
        etcd.stop()
        # 10 s without etcd: several failed reconciles, resyncs and lease renewals
        wait_until(lambda: running.counter("tfleet_agent_reconcile_total", result="etcd_unavailable") >= 3, 15, message="agent noticed the outage")
        # for the whole 10 s outage, sample what TF Serving serves: it must never change
        outage_end = time.monotonic() + 10
        samples = 0
        while time.monotonic() < outage_end:
            assert served_states(tfs, "m") == {1: "AVAILABLE"}
            samples += 1
            time.sleep(0.2)  # sampling period, not a wait for a condition
        assert samples >= 20
        etcd.start()
        # this test's own client may still be in gRPC's reconnect backoff: retry the write
        rev = wait_until(
            lambda: fleet.assign("h1", "m", specific(models_dir, "m", 2)), 10, ignore=(StoreUnavailable,), message="operator write after etcd returned"
        )
        fleet.wait_available("h1", "m", {2}, revision=rev, timeout=30)
        assert fleet.store.get(fleet.keyspace.host("h1")) is not None
    finally:
        running.stop()
        store.close()


def test_compaction_while_cut_off_relists_and_converges(etcd_server, tmp_path, sim, tfs, models_dir, fleet, prefix) -> None:
    proxy = TcpProxy("127.0.0.1", int(etcd_server.client_url.rsplit(":", 1)[1]))
    make_model(models_dir, "a", [1, 2])
    make_model(models_dir, "b", [1])
    running = start_agent(host="h1", etcd_url=proxy.url, prefix=prefix, tfs_grpc=sim.grpc_address, tfs_rest=sim.rest_address, state_dir=tmp_path / "s")
    try:
        fleet.assign("h1", "a", specific(models_dir, "a", 1))
        fleet.wait_available("h1", "a", {1})
        proxy.cut()
        wait_until(lambda: running.counter("tfleet_agent_reconcile_total", result="etcd_unavailable") >= 1, 15, message="agent cut off")
        fleet.assign("h1", "a", specific(models_dir, "a", 2))
        rev_b = fleet.assign("h1", "b", {"base_path": str(models_dir / "b")})
        fleet.store.compact(rev_b)
        proxy.restore()
        fleet.wait_available("h1", "b", {1}, revision=rev_b, timeout=30)
        fleet.wait_available("h1", "a", {2}, timeout=30)
    finally:
        running.stop()
        proxy.close()


def test_simulator_restart_gets_the_config_again(fleet, agents, models_dir, sim_factory) -> None:
    server = sim_factory()
    make_model(models_dir, "m", [1])
    agents("h1", server=server)
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    grpc_port, rest_port = server.grpc_port, server.rest_port
    server.stop(0)
    restarted = sim_factory(grpc_port=grpc_port, rest_port=rest_port)
    client = TfsClient(restarted.grpc_address)
    try:
        wait_until(lambda: served_states(client, "m").get(1) == "AVAILABLE", 20, message="config pushed to the restarted simulator")
    finally:
        client.close()


def test_sigterm_equivalent_stop_revokes_lease(fleet, agents, models_dir, tfs) -> None:
    make_model(models_dir, "m", [1])
    running = agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    running.stop()
    assert fleet.store.get(fleet.keyspace.host("h1")) is None
    assert fleet.status("h1", "m") is None
    assert served_states(tfs, "m") == {1: "AVAILABLE"}  # TF Serving keeps serving


def test_removed_version_leaves_status_once_unloaded_not_at_the_next_sweep(fleet, agents, models_dir, tfs) -> None:
    # the real server unloads after the reload returns; here version 1 takes 1.5 s to unload
    make_model(models_dir, "m", [1], unload_seconds=1.5)
    make_model(models_dir, "m", [2])
    make_model(models_dir, "a_probe", [1])  # the resync probes the first model by name: not "m"
    agents("h1")  # status sweeps are 300 s apart: only the agent's own follow-up can catch the unload
    fleet.assign("h1", "a_probe", {"base_path": str(models_dir / "a_probe")})
    fleet.assign("h1", "m", specific(models_dir, "m", 1))
    fleet.wait_available("h1", "m", {1})
    rev = fleet.assign("h1", "m", specific(models_dir, "m", 2))
    fleet.wait_available("h1", "m", {2}, revision=rev, timeout=10)
    assert served_states(tfs, "m") == {1: "END", 2: "AVAILABLE"}


def test_status_is_written_only_when_its_content_changes(fleet, agents, models_dir) -> None:
    make_model(models_dir, "m", [1])
    running = agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    key = fleet.keyspace.status("h1", "m")
    revision = fleet.store.get(key).mod_revision
    writes = running.counter("tfleet_agent_status_writes_total", op="put")
    passes = running.counter("tfleet_agent_reconcile_total", result="ok")
    # several full resyncs (1 s apart here) that find nothing new
    wait_until(lambda: running.counter("tfleet_agent_reconcile_total", result="ok") >= passes + 3, 15, message="three more passes")
    assert fleet.store.get(key).mod_revision == revision
    assert running.counter("tfleet_agent_status_writes_total", op="put") == writes
