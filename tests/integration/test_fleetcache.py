"""The fleet cache and the controller reading it, over a real etcd: the cache equals a fresh
read through random writes, stream restarts and compactions; history never enters it and a
large history cannot stop the controller; the controller's own writes plan nothing again."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import wait_until, with_kept_hosts
from tests.integration.controller_harness import start_controller
from tfleet import logs
from tfleet.controller.fleetcache import FleetCache, RangeReader, read_sections
from tfleet.controller.planner import plan
from tfleet.controller.snapshot import FleetBuilder, read
from tfleet.keyspace import Keyspace
from tfleet.etcd_local import LocalEtcd
from tfleet.store import Delete, EtcdSettings, EtcdStore, Put, Snapshot

LOG = logs.get("test")
NOW = "2026-11-27T12:00:00Z"
NOW_DT = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def host_record(name: str) -> bytes:
    return json.dumps(
        {
            "host": name,
            "grpc_address": f"{name}:8500",
            "rest_address": f"{name}:8501",
            "memory_mb": 100_000,
            "labels": {},
            "agent_version": "t",
            "started_at": NOW,
        }
    ).encode()


def intent(replicas: int = 1) -> bytes:
    return json.dumps({"base_path": "/m", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": replicas, "memory_mb": 10}).encode()


class Gate:
    """Holds the cache's watch thread inside its change callback while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.armed:
            self.armed = False
            self.inside.set()
            self.release.wait(30)


def force_relist(cache: FleetCache, gate: Gate, store: EtcdStore, ks: Keyspace, writes) -> int:
    """Make the watch miss events that are then compacted away: hold its thread, ask for a new
    stream, write, compact; on release the new stream starts behind the compaction."""
    gate.inside.clear()
    gate.release.clear()
    gate.armed = True
    store.put(ks.hostctl("gate"), b"{}")
    assert gate.inside.wait(15), "the watch delivered the gate's write"
    cache.restart_watch()  # queued before the writes below reach the old stream
    revision = 0
    for write in writes:
        revision = write()
    revision = store.put(ks.hostctl("gate"), b'{"reason": "after"}')
    store.compact(revision)
    gate.release.set()
    return revision


def fresh(store: EtcdStore, ks: Keyspace):
    sections = read_sections(RangeReader(store), ks)
    return read(Snapshot(max(sections.revisions.values()), sections.items), ks)


def test_compaction_behind_the_watch_relists_the_sections_only(etcd_factory) -> None:
    etcd = etcd_factory()
    store = EtcdStore(EtcdSettings((etcd.client_url,), call_timeout=2.0))
    ks = Keyspace("/fc")
    store.put(ks.model("m0"), intent())
    cache = FleetCache(store, ks, log=LOG)
    gate = Gate()
    cache.on_change(gate)
    cursor = cache.cursor("test")
    try:
        assert cache.ensure_started()
        force_relist(
            cache,
            gate,
            store,
            ks,
            [
                lambda: store.put(ks.model("m1"), intent()),
                lambda: store.put(ks.history("m1", 1), b"{}"),
                lambda: store.txn([], [Delete(ks.model("m0"))]).revision,
            ],
        )
        wait_until(lambda: cache.relists == 1, 20, message="the cache re-listed after the compaction")
        store.put(ks.model("m2"), intent())  # and the watch goes on after it
        wait_until(lambda: cache.get(ks.model("m2")) is not None, 20, message="the watch resumed after the re-list")
        changes = cursor.take()
        assert changes.everything  # keys may have changed and changed back unseen: start over
        fleet = FleetBuilder(ks).rebuild(changes.revision, [f for f in changes.files.values() if f])
        assert set(fleet.intents) == {"m1", "m2"}
        assert fleet.content() == fresh(store, ks).content()
        assert not any("/history/" in key for key in cache._files)
    finally:
        cache.stop()
        store.close()


_sections = ("models", "hosts", "hostctl", "status", "history")
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(_sections), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(_sections), st.integers(0, 3), st.just(False)),
    st.tuples(st.just("gap"), st.just(""), st.just(0), st.just(False)),
    st.tuples(st.just("compact"), st.just(""), st.just(0), st.just(False)),
    st.tuples(st.just("pass"), st.just(""), st.just(0), st.just(False)),
)


@pytest.fixture(scope="module")
def private_etcd(tmp_path_factory):
    """An etcd of this module alone: the property test compacts it."""
    server = LocalEtcd(tmp_path_factory.mktemp("etcd-fleetcache"), unsafe_no_fsync=True)
    server.start()
    yield server
    server.stop()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=25))
def test_a_pass_from_the_cache_equals_a_pass_from_a_fresh_read(private_etcd, ops) -> None:
    store = EtcdStore(EtcdSettings((private_etcd.client_url,), call_timeout=2.0))
    ks = Keyspace(f"/fcp{abs(hash(tuple(ops))) % 10**9}")
    store.delete_prefix(ks.prefix + "/")

    def key(section: str, n: int) -> str:
        return {
            "models": ks.model(f"m{n}"),
            "hosts": ks.host(f"h{n}"),
            "hostctl": ks.hostctl(f"h{n}"),
            "status": ks.status(f"h{n}", "m0"),
            "history": ks.history("m0", n + 1),
        }[section]

    def value(section: str, n: int, garbage: bool) -> bytes:
        if garbage:
            return b"{not json"
        return {
            "models": intent(n),
            "hosts": host_record(f"h{n}"),
            "hostctl": b'{"cordoned": true}',
            "status": json.dumps({"assignment_revision": n, "updated_at": NOW}).encode(),
            "history": b"{}",
        }[section]

    for n in range(2):
        store.put(ks.host(f"h{n}"), host_record(f"h{n}"))
    cache = FleetCache(store, ks, log=LOG)
    gate = Gate()
    cache.on_change(gate)
    cursor = cache.cursor("test", echoes=True)
    builder = FleetBuilder(ks)
    last = 0
    try:
        assert cache.ensure_started()
        for kind, section, n, garbage in ops:
            if kind == "put":
                last = store.put(key(section, n), value(section, n, garbage))
            elif kind == "delete":
                last = store.txn([], [Delete(key(section, n))]).revision
            elif kind == "gap":
                cache.restart_watch()
            elif kind == "compact":
                relists = cache.relists
                last = force_relist(cache, gate, store, ks, [lambda: store.put(ks.model("mc"), intent())])
                wait_until(lambda relists=relists: cache.relists == relists + 1, 20, message="the cache re-listed")
            else:
                wait_until(lambda last=last: cache.revision >= last, 20, message=f"the cache reached revision {last}")
                changes = cursor.take()
                fleet = (
                    builder.rebuild(changes.revision, [f for f in changes.files.values() if f])
                    if changes.everything
                    else builder.apply(changes.revision, changes.files, changes.quiet, previous=changes.previous)
                )
                expected = with_kept_hosts(fresh(store, ks), fleet, ks)
                assert fleet.content() == expected.content()
                assert plan(fleet, {}, NOW_DT) == plan(expected, {}, NOW_DT)
        assert not any("/history/" in k for k in cache._files)
    finally:
        cache.stop()
        store.delete_prefix(ks.prefix + "/")
        store.close()


def test_a_large_history_cannot_stop_the_controller(store, prefix, etcd_server) -> None:
    """5,000 history entries (over gRPC's 4 MiB reply limit in one read): the controller
    neither reads nor caches them, and keeps placing models."""
    ks = Keyspace(prefix.rstrip("/"))
    for n in range(3):
        store.put(ks.host(f"h{n}"), host_record(f"h{n}"))
    entry = json.dumps({"sequence": 0, "pad": "x" * 1000}).encode()
    for start in range(1, 5001, 100):
        store.txn([], [Put(ks.history("old", seq), entry) for seq in range(start, start + 100)])
    running = start_controller("c1", etcd_server.client_url, prefix)
    try:
        wait_until(lambda: running.is_leader, 20, message="the controller leads")
        store.put(ks.model("new"), intent(replicas=2))
        wait_until(lambda: len(store.list_prefix(ks.assignments_prefix()).items) == 2, 30, message="the new model placed")
        cache = running.controller.cache
        assert cache.loaded and not any("/history/" in key for key in cache._files)
        store.put(ks.history("old", 5001), entry)  # arrives through the watch: dropped
        store.put(ks.model("newer"), intent(replicas=1))
        wait_until(lambda: len(store.list_prefix(ks.assignments_prefix()).items) == 3, 30, message="a second model placed")
        assert not any("/history/" in key for key in cache._files)
    finally:
        running.stop()


def _planned(controller) -> float:
    return controller.metrics.registry.get_sample_value("tfleet_controller_models_planned_total") or 0.0


def test_own_writes_coming_back_plan_nothing_and_a_status_burst_costs_its_size(store, prefix, etcd_server) -> None:
    ks = Keyspace(prefix.rstrip("/"))
    for n in range(3):
        store.put(ks.host(f"h{n}"), host_record(f"h{n}"))
    for m in range(30):
        store.put(ks.model(f"m{m}"), intent())
    # The rolling resync (controller/resync.py) plans a model every full_plan_interval / 30 s:
    # the longest interval keeps it out of the counts, which are about echoes and bursts.
    running = start_controller("c1", etcd_server.client_url, prefix, full_plan_interval=3600.0)
    controller = running.controller
    try:
        wait_until(lambda: len(store.list_prefix(ks.modelstatus_prefix()).items) == 30, 30, message="every model placed and reported")

        def settled() -> float | None:  # the count stops moving over two resync periods
            before = _planned(controller)
            threading.Event().wait(2.5)
            return before if _planned(controller) == before else None

        wait_until(settled, 40, message="passes stop planning once the controller's writes are back")
        baseline = _planned(controller)
        assignments = {kv.key.rsplit("/", 1)[-1]: kv for kv in store.list_prefix(ks.assignments_prefix()).items}
        for m in range(20):  # the agents of 20 models report their replica AVAILABLE
            kv = assignments[f"m{m}"]
            host = kv.key.split("/")[-2]
            store.put(
                ks.status(host, f"m{m}"),
                json.dumps({"assignment_revision": kv.mod_revision, "updated_at": NOW, "versions": {"1": {"state": "AVAILABLE"}}}).encode(),
            )
        wait_until(
            lambda: sum(1 for kv in store.list_prefix(ks.modelstatus_prefix()).items if b'"ready":true' in kv.value) == 20,
            30,
            message="the 20 reports say ready",
        )
        wait_until(settled, 40, message="passes stop planning")
        # each of the 20 models was planned once; its report and route coming back planned nothing
        assert _planned(controller) - baseline == 20
    finally:
        running.stop()


def test_cli_views_read_sections_not_the_history(store, prefix, etcd_server) -> None:
    """`tfleet get models` reads two sections (in pages once the store pages); a history over
    gRPC's 4 MiB reply limit cannot break it, nor any other view."""
    from click.testing import CliRunner

    from tfleet.cli.main import cli

    ks = Keyspace(prefix.rstrip("/"))
    entry = json.dumps({"sequence": 0, "pad": "x" * 1000}).encode()
    for start in range(1, 5001, 100):
        store.txn([], [Put(ks.history("m", seq), entry) for seq in range(start, start + 100)])
    store.put(ks.model("m"), intent(replicas=2))
    store.put(ks.host("h1"), host_record("h1"))
    common = ["--prefix", ks.prefix, "--etcd", etcd_server.client_url, "-o", "json"]
    result = CliRunner().invoke(cli, ["get", "models", *common])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["name"], row["wanted"]) == ("m", 2)
    hosts = CliRunner().invoke(cli, ["get", "hosts", *common])
    assert hosts.exit_code == 0 and [h["name"] for h in json.loads(hosts.stdout)] == ["h1"]
