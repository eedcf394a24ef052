"""The agent when TF Serving misbehaves, and when somebody else writes the agent's keys.

Real etcd, the TF Serving simulator in-process (its fault switches: restart empty, freeze,
slow reload; tfleet/sim/faults.py), real agents. Each test pins one promise of
docs/operations.md ("What the agent does when things break").
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import wait_until
from tests.integration.agent_harness import Fleet, start_agent, started_agents
from tfleet import schema
from tfleet.schema import HostRecord
from tfleet.sim.fixtures import make_model
from tfleet.store import EtcdStore
from tfleet.tfs.client import TfsClient
from tfleet.tfs.types import TfsError

# Fast probing for tests: a hang is noticed after 2 probes past a 0.5 s deadline (~2 s).
PROBE = {"tfs_probe_interval": 0.5, "status_timeout": 0.5, "tfs_unresponsive_after": 2}


@pytest.fixture
def fleet(store: EtcdStore, prefix: str) -> Fleet:
    return Fleet(store, prefix)


@pytest.fixture
def agents(tmp_path, etcd_server, prefix, sim):
    yield from started_agents(tmp_path, etcd_server.client_url, prefix, sim, **PROBE)


def readyz(running) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.agent.ops.port}/readyz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def host_record(fleet: Fleet, host: str) -> tuple[HostRecord | None, int]:
    kv = fleet.store.get(fleet.keyspace.host(host))
    if kv is None:
        return None, 0
    try:
        return schema.parse(HostRecord, kv.value, kv.key), kv.lease
    except schema.SchemaError:
        return None, kv.lease


def served(client: TfsClient, model: str) -> dict[int, str]:
    try:
        versions = client.get_model_status(model, timeout=2.0)
    except TfsError:
        return {}
    return {v.version: v.state.value for v in versions or ()}


def labelled(models_dir, name: str) -> dict:
    return {
        "base_path": str(models_dir / name),
        "model_version_policy": {"specific": {"versions": [1, 2]}},
        "version_labels": {"stable": 1, "canary": 2},
    }


def all_labelled_available(fleet: Fleet, names) -> bool:
    for name in names:
        status = fleet.status("h1", name)
        if status is None or status.error is not None or status.version_labels != {"stable": 1, "canary": 2}:
            return False
        if {v: r.state for v, r in status.versions.items()} != {"1": "AVAILABLE", "2": "AVAILABLE"}:
            return False
    return True


# -- TF Serving restarts empty ---------------------------------------------------------------


def test_restart_empty_with_labels_serves_everything_again_and_status_never_lies_long(fleet, agents, models_dir, sim) -> None:
    names = [f"m{i}" for i in range(4)]
    for name in names:
        make_model(models_dir, name, [1, 2])
    running = agents("h1", resync_interval=30.0)  # only the probe can notice the restart
    for name in names:
        fleet.assign("h1", name, labelled(models_dir, name))
    wait_until(lambda: all_labelled_available(fleet, names), 30, message="every model AVAILABLE with its labels")

    client = TfsClient(sim.grpc_address)
    lying_since: dict[tuple[str, str], float] = {}
    worst = 0.0
    try:
        sim.restart()
        restarted = time.monotonic()

        def served_again() -> bool:
            return all(
                served(client, n) == {1: "AVAILABLE", 2: "AVAILABLE"} and sim.core.label_version(n, "stable") == 1 and sim.core.label_version(n, "canary") == 2
                for n in names
            )

        while not (served_again() and all_labelled_available(fleet, names)):
            assert time.monotonic() - restarted < 30, f"not all models AVAILABLE with labels 30 s after the restart: {[fleet.status('h1', n) for n in names]}"
            now = time.monotonic()
            for name in names:
                status = fleet.status("h1", name)
                claimed = {v for v, r in (status.versions.items() if status else ()) if r.state == "AVAILABLE"}
                truth = served(client, name)
                for version in ("1", "2"):
                    key = (name, version)
                    if version in claimed and truth.get(int(version)) != "AVAILABLE":
                        lying_since.setdefault(key, now)
                        worst = max(worst, now - lying_since[key])
                    else:
                        lying_since.pop(key, None)
            time.sleep(0.05)
        print(f"restart: served again with labels after {time.monotonic() - restarted:.2f} s; longest false AVAILABLE {worst:.2f} s")
        # one probe interval, plus the pass that follows it, on a busy machine
        assert worst <= PROBE["tfs_probe_interval"] + 1.5, f"a status claimed AVAILABLE for {worst:.2f} s while TF Serving did not serve the version"
        assert running.counter("tfleet_agent_reload_duration_seconds_count", result="rejected") == 0, (
            "a reload was refused: labels were sent before their versions were AVAILABLE"
        )
    finally:
        client.close()


# -- TF Serving hangs ----------------------------------------------------------------------------


def test_hang_marks_tf_serving_unresponsive_everywhere_then_recovers(fleet, agents, models_dir, sim) -> None:
    make_model(models_dir, "m", [1])
    running = agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    wait_until(lambda: readyz(running)[0] == 200, 10, message="agent ready")

    sim.faults.freeze()
    frozen = time.monotonic()
    status = fleet.wait_status("h1", "m", lambda s: s.versions["1"].state != "AVAILABLE", timeout=15, what="to stop claiming AVAILABLE")
    took = time.monotonic() - frozen
    assert status.versions["1"].state == "UNKNOWN"
    assert "unresponsive" in (status.error or "") and "unresponsive" in status.versions["1"].error_message
    code, body = readyz(running)
    assert code == 503 and "unresponsive" in body
    assert running.counter("tfleet_agent_tfs_up") == 0
    assert running.counter("tfleet_agent_tfs_unresponsive") == 1
    record, lease = host_record(fleet, "h1")
    assert record is not None and record.tfs_unresponsive_since is not None and lease == running.agent.lease.lease_id
    # 2 probes past a 0.5 s deadline, 0.5 s apart: about 2 s, generous margin for a busy machine
    assert took < 10, f"hang noticed after {took:.1f} s"

    sim.faults.thaw()
    fleet.wait_available("h1", "m", {1}, timeout=15)
    wait_until(lambda: readyz(running)[0] == 200, 10, message="agent ready again")
    wait_until(
        lambda: host_record(fleet, "h1")[0] is not None and host_record(fleet, "h1")[0].tfs_unresponsive_since is None, 10, message="host record cleared"
    )
    assert running.counter("tfleet_agent_tfs_up") == 1


def test_slow_reload_is_not_a_hang(fleet, agents, models_dir, sim) -> None:
    make_model(models_dir, "a", [1])
    make_model(models_dir, "b", [1])
    running = agents("h1", reload_timeout=1.0)
    fleet.assign("h1", "a", {"base_path": str(models_dir / "a")})
    fleet.wait_available("h1", "a", {1})
    sim.faults.set_reload_delay(3.0)  # past the reload deadline; GetModelStatus still answers
    fleet.assign("h1", "b", {"base_path": str(models_dir / "b")})
    fleet.wait_available("h1", "b", {1}, timeout=20)
    assert running.counter("tfleet_agent_tfs_unresponsive") == 0
    assert fleet.status("h1", "a").versions["1"].state == "AVAILABLE"


def test_unreachable_tf_serving_stops_claiming_available_at_once(fleet, agents, models_dir, sim_factory) -> None:
    server = sim_factory()
    make_model(models_dir, "m", [1])
    running = agents("h1", server=server)
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    server.stop(0)
    fleet.wait_status(
        "h1", "m", lambda s: s.versions["1"].state == "UNKNOWN" and "unreachable" in (s.error or ""), timeout=10, what="to say TF Serving is unreachable"
    )
    assert readyz(running)[0] == 503


# -- the agent owns its keys -----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["overwrite_empty", "overwrite_without_lease", "delete"])
def test_host_record_changed_by_another_writer_is_rewritten_under_the_lease(fleet, agents, damage) -> None:
    running = agents("h1")
    wait_until(lambda: host_record(fleet, "h1")[0] is not None, 10, message="host registered")
    good, lease = host_record(fleet, "h1")
    key = fleet.keyspace.host("h1")
    if damage == "overwrite_empty":
        fleet.store.put(key, b"{}")
    elif damage == "overwrite_without_lease":
        fleet.store.put(key, schema.encode(good))
    else:
        fleet.store.delete(key)
    wait_until(lambda: host_record(fleet, "h1") == (good, lease), 5, message=f"host record written again with lease {lease} (now {host_record(fleet, 'h1')})")
    assert running.counter("tfleet_agent_foreign_key_writes_total", key="host") >= 1


@pytest.mark.parametrize("damage", ["overwrite_garbage", "overwrite_other_state", "delete"])
def test_status_key_changed_by_another_writer_is_rewritten(fleet, agents, models_dir, damage) -> None:
    make_model(models_dir, "m", [1])
    running = agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    good = fleet.wait_available("h1", "m", {1})
    key = fleet.keyspace.status("h1", "m")
    if damage == "overwrite_garbage":
        fleet.store.put(key, b"not json")
    elif damage == "overwrite_other_state":
        doc = json.loads(schema.encode(good))
        doc["versions"]["1"]["state"] = "LOADING"
        fleet.store.put(key, json.dumps(doc).encode())
    else:
        fleet.store.delete(key)

    def healed() -> bool:
        kv = fleet.store.get(key)
        if kv is None or kv.lease != running.agent.lease.lease_id:
            return False
        try:
            status = fleet.status("h1", "m")
        except schema.SchemaError:
            return False
        return status is not None and status.versions["1"].state == "AVAILABLE" and status.error is None

    wait_until(healed, 5, message=f"status key written again under the lease (now {fleet.store.get(key)})")
    assert running.counter("tfleet_agent_foreign_key_writes_total", key="status") >= 1


def test_stray_status_key_for_a_model_the_host_does_not_have_is_removed(fleet, agents, models_dir) -> None:
    make_model(models_dir, "m", [1])
    agents("h1")
    fleet.assign("h1", "m", {"base_path": str(models_dir / "m")})
    fleet.wait_available("h1", "m", {1})
    stray = fleet.keyspace.status("h1", "ghost")
    fleet.store.put(stray, b'{"assignment_revision": 1, "versions": {"1": {"state": "AVAILABLE"}}, "updated_at": "2026-01-01T00:00:00Z"}')
    wait_until(lambda: fleet.store.get(stray) is None, 5, message="stray status key deleted")
    assert fleet.status("h1", "m").versions["1"].state == "AVAILABLE"


# -- the controller's side: routes drop the host, replicas move after the grace -------------------


@pytest.fixture
def cfleet(store, prefix, etcd_server, sim_factory, tmp_path):
    from tests.integration.controller_harness import running_fleet

    yield from running_fleet(store, prefix, etcd_server.client_url, sim_factory, tmp_path, agent_defaults=PROBE)


def test_hung_host_leaves_routes_then_loses_its_replica_after_the_grace_then_recovers(cfleet, models_dir) -> None:
    from tfleet.schema import RouteTable

    grace = 4.0
    # h1 offers more memory, so the first replica lands there (placement rule 7)
    cfleet.add("h1", memory_mb=2048)
    cfleet.add("h2")
    make_model(models_dir, "m", [1])
    cfleet.start_controller(tfs_unresponsive_grace=grace)
    cfleet.declare("m", {"base_path": str(models_dir / "m"), "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 1, "memory_mb": 100})
    cfleet.wait_ready("m", 1, 1)
    assert cfleet.replica_hosts("m") == {"h1"}

    def endpoints() -> set[str]:
        kv = cfleet.store.get(cfleet.keyspace.routes("m"))
        return {e.host for e in schema.parse(RouteTable, kv.value, kv.key).endpoints} if kv else set()

    wait_until(lambda: endpoints() == {"h1"}, 15, message="h1 in the routes")
    cfleet.sims["h1"].faults.freeze()
    frozen = time.monotonic()
    wait_until(lambda: endpoints() == set(), 15, message="hung h1 dropped from the routes")
    # before the grace ends nothing moves
    assert cfleet.replica_hosts("m") == {"h1"} or time.monotonic() - frozen >= grace
    # after the grace a replacement is placed on h2 and becomes ready; only then h1's goes
    wait_until(
        lambda: cfleet.available_hosts("m", 1) == {"h2"} and cfleet.replica_hosts("m") == {"h2"},
        30,
        message=f"replica moved to h2 (holders {cfleet.replica_hosts('m')})",
    )
    assert time.monotonic() - frozen >= grace
    wait_until(lambda: endpoints() == {"h2"}, 15, message="h2 in the routes")

    cfleet.sims["h1"].faults.thaw()
    wait_until(lambda: host_record(cfleet, "h1")[0] is not None and host_record(cfleet, "h1")[0].tfs_unresponsive_since is None, 15, message="h1 answers again")
    wait_until(lambda: readyz(cfleet.agents["h1"])[0] == 200, 15, message="h1 ready again")
    # stability: the replica stays on h2; h1 is a normal host again and takes new replicas
    make_model(models_dir, "n", [1])
    cfleet.declare("n", {"base_path": str(models_dir / "n"), "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 2, "memory_mb": 100})
    cfleet.wait_ready("n", 1, 2)
    assert cfleet.replica_hosts("m") == {"h2"} and cfleet.replica_hosts("n") == {"h1", "h2"}


# -- a reload refused because of a label -----------------------------------------------------------


class StaleStatusTfs:
    """A real TfsClient whose GetModelStatus claims version `version` of `model` AVAILABLE while
    TF Serving is still loading it: the agent then sends a label TF Serving refuses, as after
    any stale observation (the situation of issue 2)."""

    def __init__(self, address: str, model: str, version: int) -> None:
        self._real = TfsClient(address)
        self._model, self._version = model, version

    def get_model_status(self, name: str, timeout: float):
        from tfleet.tfs.types import VersionState, VersionStatus

        versions = self._real.get_model_status(name, timeout)
        if name != self._model or versions is None:
            return versions
        return [
            VersionStatus(v.version, VersionState.AVAILABLE) if v.version == self._version and v.state in (VersionState.START, VersionState.LOADING) else v
            for v in versions
        ]

    def reload_config(self, models, timeout: float) -> None:
        self._real.reload_config(models, timeout)

    def close(self) -> None:
        self._real.close()


def test_refused_label_does_not_hold_the_rest_of_the_list_hostage(fleet, sim_factory, models_dir, tmp_path, etcd_server, prefix) -> None:
    from tfleet.sim.fixtures import write_version

    server = sim_factory(num_load_threads=2)
    make_model(models_dir, "m", [1])
    write_version(models_dir / "m", 2, load_seconds=8.0)
    make_model(models_dir, "o", [1])
    running = start_agent(
        host="h1",
        etcd_url=etcd_server.client_url,
        prefix=prefix,
        tfs_grpc=server.grpc_address,
        tfs_rest=server.rest_address,
        state_dir=tmp_path / "state",
        tfs=StaleStatusTfs(server.grpc_address, "m", 2),
        **PROBE,
    )
    agent = running.agent
    try:
        fleet.assign("h1", "m", labelled(models_dir, "m"))
        wait_until(
            lambda: (agent.metrics.registry.get_sample_value("tfleet_agent_reload_duration_seconds_count", {"result": "rejected"}) or 0) >= 1,
            10,
            message="TF Serving refused the label",
        )
        assigned = time.monotonic()
        fleet.assign("h1", "o", {"base_path": str(models_dir / "o")})
        fleet.wait_available("h1", "o", {1}, timeout=6)  # not after m's version 2 (8 s) or a 60 s backoff
        assert time.monotonic() - assigned < 6
        wait_until(lambda: all_labelled_available(fleet, ["m"]), 30, message="m labelled once version 2 loaded")
        assert server.core.label_version("m", "canary") == 2
    finally:
        running.stop()
