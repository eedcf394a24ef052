"""The fleet cache over an in-memory feed (pure): a pass from the cache equals a pass from a
fresh read, through random writes, watch gaps, compactions and re-lists; history/ never
enters it; the controller's own report writes coming back plan nothing again."""

from __future__ import annotations

import datetime as dt
import gc
import json
import weakref

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import with_kept_hosts
from tests.unit.fakeetcd import FakeEtcd
from tfleet import schema
from tfleet.controller.fleetcache import FleetCache, PagedReader, RangeReader, section_of
from tfleet.controller.incremental import EchoLedger, IncrementalPlanner, quiet_assignment, quiet_delete
from tfleet.controller.planner import plan
from tfleet.controller.snapshot import FleetBuilder, parse_key, read
from tfleet.keyspace import Keyspace
from tfleet.store import Snapshot, StoreError

KS = Keyspace("/t")
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


class _Log:
    def __getattr__(self, name):
        return lambda *args, **kw: None


LOG = _Log()
HOSTS = ("h0", "h1", "h2")
MODELS = ("m0", "m1", "m2", "m3")


def host(name: str, memory: int = 2000) -> bytes:
    return json.dumps(
        {
            "host": name,
            "grpc_address": "x:1",
            "rest_address": "x:2",
            "memory_mb": memory,
            "labels": {"zone": name[-1]},
            "agent_version": "t",
            "started_at": "2026-11-27T12:00:00Z",
        }
    ).encode()


def intent(versions: list[int], replicas: int) -> bytes:
    return json.dumps(
        {
            "base_path": "/m",
            "model_version_policy": {"specific": {"versions": versions}},
            "version_labels": {"stable": versions[-1]},
            "replicas": replicas,
            "memory_mb": 300,
        }
    ).encode()


def assignment(versions: list[int]) -> bytes:
    return json.dumps({"base_path": "/m", "model_version_policy": {"specific": {"versions": versions}}}).encode()


def status(revision: int, versions: list[int]) -> bytes:
    return json.dumps(
        {"assignment_revision": revision, "versions": {str(v): {"state": "AVAILABLE"} for v in versions}, "updated_at": "2026-11-27T12:00:00Z"}
    ).encode()


GARBAGE = (b"", b"{", b"[]", b'{"unknown": 1}', b"\xff\xfe")
VALUES = {
    "hosts": [host("x"), host("x", 500)],  # the name in the record is not checked against the key
    "hostctl": [b'{"cordoned": true}', b'{"draining": true}', b"{}"],
    "models": [intent([1], 1), intent([1, 2], 2), intent([2], 3)],
    "assignments": [assignment([1]), assignment([1, 2])],
    "status": [status(5, [1]), status(7, [1, 2])],
    "modelstatus": [b'{"intent_revision": 3, "wanted_replicas": 1, "updated_at": "2026-11-27T12:00:00Z"}'],
    "versions": [
        json.dumps(
            {
                "model": "m0",
                "version": 1,
                "path": "/m/1",
                "checksum": "sha256:0",
                "size_bytes": 10,
                "created_at": "2026-11-27T12:00:00Z",
                "registered_at": "2026-11-27T12:00:00Z",
            }
        ).encode()
    ],
    "schedules": [b'{"at": "2026-11-27T12:00:00Z", "action": "promote"}'],
    "routes": [b'{"model": "m0", "updated_at": "2026-11-27T12:00:00Z"}'],
    "leader": [b'{"id": "c1", "since": "2026-11-27T12:00:00Z", "version": "1"}'],
    "history": [b'{"sequence": 1}'],
    "zzz": [b"x"],  # a section of a later keyspace version
}


def key_of(section: str, a: str, b: str) -> str:
    if section in ("assignments", "status"):
        return f"/t/{section}/{a}/{b}"
    if section in ("hosts", "hostctl"):
        return f"/t/{section}/{a}"
    if section == "versions":
        return f"/t/versions/{b}/{'1' if a == 'h0' else '2'}"
    if section in ("schedules", "history"):
        return f"/t/{section}/{b}/{a}"
    if section == "leader":
        return "/t/leader"
    return f"/t/{section}/{b}"


names = st.sampled_from(HOSTS + ("bad name",))
models = st.sampled_from(MODELS)
write = st.builds(
    lambda section, a, b, garbage, pick: ("write", key_of(section, a, b), pick, garbage),
    st.sampled_from(sorted(VALUES)),
    names,
    models,
    st.booleans(),
    st.integers(0, 5),
)
operation = st.one_of(
    write,
    write,
    write,
    st.builds(lambda pick: ("delete", pick), st.integers(0, 1000)),
    st.builds(lambda n: ("pump", n), st.integers(1, 4)),
    st.just(("gap",)),
    st.just(("compact",)),
    st.just(("pass",)),
    st.just(("pass",)),
)


def sections_at(etcd: FakeEtcd, revision: int) -> Snapshot:
    """A fresh read of the cached sections at a revision (what a pass must equal)."""
    return Snapshot(revision, tuple(kv for kv in etcd.at(revision).values() if section_of(KS, kv.key) is not None))


def run(ops, *, pinned: bool) -> None:
    etcd = FakeEtcd(pinned_reads=pinned)
    for h in HOSTS:
        etcd.put(f"/t/hosts/{h}", host(h))
    etcd.put("/t/models/m0", intent([1], 2))
    cache = FleetCache(etcd, KS, log=LOG, reader=PagedReader(etcd) if pinned else RangeReader(etcd))
    cursor = cache.cursor("controller", echoes=True)
    builder, planner, ledger = FleetBuilder(KS), IncrementalPlanner(), EchoLedger(KS)
    assert cache.ensure_started()
    watch = etcd.watches[-1]
    for op in ops:
        kind = op[0]
        if kind == "write":
            _, key, pick, garbage = op
            section = key.split("/")[2]
            values = GARBAGE if garbage else VALUES[section]
            etcd.put(key, values[pick % len(values)])
        elif kind == "delete" and etcd.items:
            keys = sorted(etcd.items)
            etcd.delete(keys[op[1] % len(keys)])
        elif kind == "pump":
            watch.pump(op[1])
        elif kind == "gap":
            watch.restart()  # the stream breaks; it resumes after the last delivered revision
        elif kind == "compact":
            etcd.compact()  # the next pump re-lists if the watch is more than a revision behind
        elif kind == "pass":
            changes = cursor.take()
            fleet, echoed = _apply(builder, ledger, changes)
            caught_up = watch.revision == etcd.revision
            if pinned or caught_up:
                fresh = with_kept_hosts(read(sections_at(etcd, fleet.revision), KS), fleet, KS)
                assert fleet.content() == fresh.content()
                assert plan(fleet, {}, NOW) == plan(fresh, {}, NOW)
            result = planner.plan(fleet, {}, NOW, echoed)
            ledger.planned(planner.planned)
            if caught_up:
                full = plan(fresh, {}, NOW)
                assert _needed(result, fleet) == _needed(full, fleet)
            _write(etcd, cache, result, fleet, ledger)
    assert not any(section_of(KS, key) is None for key in cache._files), "history/ and unknown sections never enter the cache"


def _needed(result, fleet):
    reports = {
        m: r.model_dump(exclude={"updated_at"})
        for m, r in result.reports.items()
        if m not in fleet.modelstatus or r.model_dump(exclude={"updated_at"}) != fleet.modelstatus[m].model_dump(exclude={"updated_at"})
    }
    return dict(result.puts), result.deletes, reports, result.report_deletes


def _apply(builder: FleetBuilder, ledger: EchoLedger, changes):
    """What the reconciler's _take does: the snapshot, with the models whose quiet echoes
    are stale planned again, and the models whose new replicas came back."""
    if changes.everything:
        ledger.reset()
        return builder.rebuild(changes.revision, [f for f in changes.files.values() if f]), set()
    fleet = builder.apply(changes.revision, changes.files, changes.quiet, previous=changes.previous)
    stale, echoed = ledger.arrived(changes.files.keys(), changes.quiet)
    if stale:
        fleet.changed_models = (fleet.changed_models or frozenset()) | stale
    return fleet, echoed


def _write(etcd: FakeEtcd, cache: FleetCache, result, fleet, ledger: EchoLedger) -> None:
    """What the reconciler writes: assignments, and reports that differ; the reports, the
    new replicas' assignments and the deletes of gone hosts' assignments are announced as
    echoes (controller/reconciler.py)."""
    ops: list[tuple[str, bytes | None]] = [(KS.assignment(h, m), schema.encode(a)) for (h, m), a in sorted(result.puts.items())]
    new_replicas = [(KS.assignment(h, m), schema.encode(a)) for (h, m), a in sorted(result.puts.items()) if quiet_assignment(fleet, h, m)]
    ops += [(KS.assignment(h, m), None) for h, m in sorted(result.deletes)]
    new_replicas += [(KS.assignment(h, m), None) for h, m in sorted(result.deletes) if quiet_delete(fleet, h, m)]
    written = sorted(_needed(result, fleet)[2])
    reports = [(KS.modelstatus(m), schema.encode(result.reports[m])) for m in written]
    reports += [(KS.modelstatus(m), None) for m in sorted(result.report_deletes)]
    # as the reconciler does: the echoes are filed as the planner's own objects
    values = {KS.modelstatus(m): (value, result.reports[m]) for (_, value), m in zip(reports, written, strict=False)}
    values.update({key: (value, result.puts[place]) for (key, value), place in zip(ops, sorted(result.puts), strict=False)})
    ledger.announce(dict(reports + new_replicas))
    cache.expect(dict(reports + new_replicas), values)
    if ops or reports:
        etcd.txn(ops + reports)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=5, max_size=60))
def test_a_pass_from_the_cache_equals_a_pass_from_a_fresh_read(ops) -> None:
    run(ops + [("pump", 10**6), ("pass",)], pinned=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=5, max_size=60))
def test_unpinned_section_reads_catch_up_through_the_watch(ops) -> None:
    """Today's store reads each section at its own revision; once the watch has delivered
    past the last of them, the cache is exact."""
    run(ops + [("pump", 10**6), ("pass",)], pinned=False)


@pytest.mark.parametrize("pinned", [True, False])
def test_an_echo_is_a_change_when_its_model_was_planned_again_before_it_came_back(pinned: bool) -> None:
    """Found by the property above: a pass writes m0's new replicas and report; m0's intent
    is deleted and planned before those writes come back; their echoes must then plan m0
    again (its assignments must go), not pass as quiet (controller/incremental.EchoLedger)."""
    run([("delete", 3), ("pass",), ("pump", 1), ("write", "/t/assignments/h0/m1", 0, False), ("pass",), ("pump", 10**6), ("pass",)], pinned=pinned)


def test_unpinned_reads_racing_writes_are_neither_lost_nor_applied_twice() -> None:
    etcd = FakeEtcd(pinned_reads=False)
    racing = iter([("/t/models/m1", intent([1], 1)), ("/t/hosts/h0", host("h0")), ("/t/models/m1", None), ("/t/models/m2", intent([2], 1))])

    def race() -> None:
        write = next(racing, None)
        if write is not None:
            etcd.txn([write])

    etcd.before_read = race
    cache = FleetCache(etcd, KS, log=LOG, reader=RangeReader(etcd))
    cursor = cache.cursor("c")
    assert cache.ensure_started()
    etcd.before_read = None
    etcd.watches[-1].drain()
    changes = cursor.take()
    fleet = FleetBuilder(KS).rebuild(changes.revision, [f for f in changes.files.values() if f])
    assert fleet.content() == read(sections_at(etcd, etcd.revision), KS).content()
    assert set(fleet.intents) == {"m2"} and set(fleet.hosts) == {"h0"}


def test_history_never_enters_the_cache_nor_its_reads() -> None:
    etcd = FakeEtcd()
    for sequence in range(1, 500):
        etcd.put(KS.history("m0", sequence), b'{"sequence": %d}' % sequence)
    etcd.put(KS.model("m0"), intent([1], 1))
    prefixes: list[str] = []
    reader = PagedReader(etcd)
    original = reader.read
    reader.read = lambda prefix, revision: prefixes.append(prefix) or original(prefix, revision)  # type: ignore[method-assign]
    cache = FleetCache(etcd, KS, log=LOG, reader=reader)
    assert cache.ensure_started()
    etcd.put(KS.history("m0", 500), b"{}")
    etcd.watches[-1].drain()
    assert len(cache) == 1 and cache.get(KS.model("m0")) is not None
    assert not any("history" in p for p in prefixes) and "/t/" not in prefixes
    etcd.put(KS.history("m0", 501), b"{}")
    etcd.put(KS.model("m1"), intent([1], 1))
    etcd.compact()
    etcd.watches[-1].pump(1)  # compacted: the re-list reads the sections again, not the prefix
    assert cache.relists == 1 and len(cache) == 2 and not any("history" in p for p in prefixes)


def _placed_fleet(models: int):
    etcd = FakeEtcd()
    for h in range(4):
        etcd.put(KS.host(f"h{h}"), host(f"h{h}", 100_000))
    for m in range(models):
        etcd.put(KS.model(f"m{m}"), intent([1], 1))
    cache = FleetCache(etcd, KS, log=LOG)
    cursor = cache.cursor("controller", echoes=True)
    builder, planner, ledger = FleetBuilder(KS), IncrementalPlanner(), EchoLedger(KS)
    cache.ensure_started()

    def one_pass(announce: bool = True):
        etcd.watches[-1].drain()
        changes = cursor.take()
        fleet, echoed = _apply(builder, ledger, changes)
        result = planner.plan(fleet, {}, NOW, echoed)
        ledger.planned(planner.planned)
        if announce:
            _write(etcd, cache, result, fleet, ledger)
        else:
            _write(etcd, FleetCache(etcd, KS, log=LOG), result, fleet, EchoLedger(KS))
        return planner.planned

    return etcd, one_pass


def _agents_report(etcd: FakeEtcd, count: int) -> None:
    """A burst of agent reports: models m0..m<count-1> become AVAILABLE where they are assigned."""
    for m in range(count):
        (key,) = [k for k in etcd.items if k.startswith(KS.assignments_prefix()) and k.endswith(f"/m{m}")]
        etcd.put(KS.status(key.split("/")[3], f"m{m}"), status(etcd.items[key].mod_revision, [1]))


@pytest.mark.parametrize("announce", [True, False])
def test_own_report_writes_coming_back_plan_nothing_again(announce: bool) -> None:
    etcd, one_pass = _placed_fleet(50)
    assert len(one_pass(announce)) == 50  # first pass: everything; writes assignments and reports
    # the new replicas' assignments and the reports coming back: quiet (the control:
    # unannounced, they plan every model again)
    assert len(one_pass()) == (0 if announce else 50)
    assert one_pass() == frozenset()
    _agents_report(etcd, 20)
    assert len(one_pass(announce)) == 20  # work for exactly the models that changed; their reports are written
    if announce:
        assert one_pass() == frozenset()  # the reports coming back: quiet
    else:
        assert len(one_pass()) == 20  # the control: unannounced, the echoes plan the models again


def test_verification_finds_a_diverged_cache_and_relists() -> None:
    from tfleet.controller.metrics import ControllerMetrics

    etcd = FakeEtcd()
    etcd.put(KS.model("m0"), intent([1], 1))
    etcd.put(KS.model("m1"), intent([1], 1))
    metrics = ControllerMetrics()
    cache = FleetCache(etcd, KS, log=LOG, reader=PagedReader(etcd), metrics=metrics)
    cursor = cache.cursor("c")
    assert cache.ensure_started()
    cursor.take()
    assert cache.verify() is True and cache.relists == 0
    del cache._files[KS.model("m1")]  # an event lost without a trace
    assert cache.verify() is False
    assert cache.relists == 1 and cache.get(KS.model("m1")) is not None
    assert metrics.registry.get_sample_value("tfleet_controller_cache_divergences_total") == 1
    assert cursor.take().everything  # the consumers start over
    assert cache.verify() is True
    assert FleetCache(etcd, KS, log=LOG, reader=RangeReader(etcd)).verify() is None  # cannot pin a revision: no verdict


def test_an_invalid_host_record_keeps_the_last_valid_one_while_the_key_exists() -> None:
    """A bad value over hosts/<h> must not make the host gone (its assignments would be
    deleted at once and TF Serving would unload them): the last valid record stays, the bad
    value is reported; a deleted key still removes the host, and garbage after the delete
    does not bring the old record back."""
    etcd = FakeEtcd()
    etcd.put(KS.host("h0"), host("h0", 700))
    cache = FleetCache(etcd, KS, log=LOG, reader=PagedReader(etcd))
    cursor, builder = cache.cursor("c"), FleetBuilder(KS)
    assert cache.ensure_started()
    watch = etcd.watches[-1]

    def take():
        watch.pump(100)
        changes = cursor.take()
        return (
            builder.rebuild(changes.revision, [f for f in changes.files.values() if f])
            if changes.everything
            else builder.apply(changes.revision, changes.files, changes.quiet, previous=changes.previous)
        )

    assert take().hosts["h0"].memory_mb == 700
    etcd.put(KS.host("h0"), b"not json")
    fleet = take()
    assert fleet.hosts["h0"].memory_mb == 700 and fleet.changed_hosts == {"h0"}
    assert KS.host("h0") in fleet.bad_values and "last valid record" in fleet.bad_values[KS.host("h0")]
    assert fleet.bad_values_revision == fleet.revision
    etcd.put(KS.host("h0"), b'{"host": "h0"}')  # still invalid: still the same record
    assert take().hosts["h0"].memory_mb == 700
    cache.relist("test")  # a re-list keeps it too (the key did not go away)
    assert take().hosts["h0"].memory_mb == 700
    etcd.put(KS.host("h0"), host("h0", 900))
    fleet = take()
    assert fleet.hosts["h0"].memory_mb == 900 and KS.host("h0") not in fleet.bad_values
    etcd.delete(KS.host("h0"))
    assert "h0" not in take().hosts  # the key is gone (its lease expired): the host is gone
    etcd.put(KS.host("h0"), b"not json")
    fleet = take()
    assert "h0" not in fleet.hosts and KS.host("h0") in fleet.bad_values
    assert "h0" not in read(Snapshot(etcd.revision, tuple(etcd.items.values())), KS).hosts  # a one-shot read has no memory


@pytest.mark.parametrize("with_slots", [False, True])
def test_an_echoed_report_or_assignment_is_filed_as_the_object_written_and_equals_a_parsed_one(with_slots: bool) -> None:
    """with_slots: announced with the slots the writer knows (the reconciler's way:
    keyfile.Announced), else with the object alone (the key is parsed when announced)."""
    from tfleet.controller.keyfile import announced_assignment, announced_report

    etcd = FakeEtcd()
    cache = FleetCache(etcd, KS, log=LOG)
    cursor = cache.cursor("c", echoes=True)
    assert cache.ensure_started()
    cursor.take()
    key, place = KS.modelstatus("m0"), KS.assignment("h0", "m0")
    report = schema.parse(schema.ModelStatusReport, VALUES["modelstatus"][0], key)
    wanted = schema.parse(schema.Assignment, assignment([1, 2]), place)
    written = {key: schema.encode(report), place: schema.encode(wanted)}
    if with_slots:
        cache.expect(
            {key: written[key]}, {key: (written[key], announced_report("m0", report)), place: (written[place], announced_assignment("h0", "m0", wanted))}
        )
    else:
        cache.expect({key: written[key]}, {key: (written[key], report), place: (written[place], wanted)})
    etcd.txn(list(written.items()))
    etcd.watches[-1].drain()
    for name, value in ((key, report), (place, wanted)):
        filed = cache.get(name)
        assert filed is not None and (filed.value is value or filed.value.value is value)  # not parsed again: the very object
        assert filed == parse_key(KS, name, written[name], filed.mod_revision)
    changes = cursor.take()
    assert changes is not None and changes.quiet == {key}  # (an assignment's echo is planned again)
    # another value than the one announced is parsed
    cache.expect({key: schema.encode(report)}, {key: (schema.encode(report), report)})
    changed = schema.encode(report.model_copy(update={"wanted_replicas": 7}))
    etcd.txn([(key, changed)])
    etcd.watches[-1].drain()
    again = cache.get(key)
    assert again is not None and again.value is not report and again.value.wanted_replicas == 7


@pytest.mark.parametrize("with_digest", [False, True])
def test_an_echoed_route_table_is_kept_as_the_digest_a_parse_gives(monkeypatch, with_digest: bool) -> None:
    """...without parsing it again (its bytes are the controller's own encoding of a table);
    with_digest: announced with the content digest the route plan computed (the reconciler's
    way), which is then kept without decoding the echo at all."""
    from tfleet import routing
    from tfleet.controller import keyfile
    from tfleet.routing import build_table

    etcd = FakeEtcd()
    cache = FleetCache(etcd, KS, log=LOG)
    assert cache.ensure_started()
    key = KS.routes("m0")
    hosts = {"h0": schema.parse(schema.HostRecord, host("h0"), "h"), "h1": schema.parse(schema.HostRecord, host("h1"), "h")}
    served = {h: schema.parse(schema.ModelStatus, status(5, [1, 2]), "s") for h in hosts}
    table = build_table("m0", served, hosts, NOW)
    value = schema.encode(table)
    expected = parse_key(KS, key, value, etcd.revision + 1)
    cache.expect({key: value}, {key: (value, routing.content_digest(table))} if with_digest else None)
    etcd.txn([(key, value)])
    monkeypatch.setattr(keyfile, "_parse", lambda *args: pytest.fail("an echoed route table was parsed again"))
    if with_digest:
        monkeypatch.setattr(keyfile.json, "loads", lambda *args: pytest.fail("an echoed route table was decoded again"))
    etcd.watches[-1].drain()
    assert cache.get(key) == expected


class _SectionByReader:
    """A pinning reader that records, at each section's read, whether the previous section's
    read is still held by anyone (it must not be: the load parses a section before the next)."""

    pins = True

    def __init__(self, etcd: FakeEtcd, fail_at: int | None = None) -> None:
        self._reader = PagedReader(etcd)
        self._fail_at = fail_at
        self.previous_alive: list[bool] = []
        self._previous: weakref.ref[Snapshot] | None = None

    def read(self, prefix: str, revision: int | None) -> Snapshot:
        gc.collect()
        if self._previous is not None:
            self.previous_alive.append(self._previous() is not None)
        if self._fail_at is not None and len(self.previous_alive) >= self._fail_at:
            raise StoreError("etcd unreachable (fake)")
        snapshot = self._reader.read(prefix, revision)
        fresh = Snapshot(snapshot.revision, tuple(snapshot.items))  # (one object per read: the fake may reuse its own)
        self._previous = weakref.ref(fresh)
        return fresh


def test_the_load_parses_each_section_before_reading_the_next_and_a_failed_one_changes_nothing() -> None:
    """At 100,000 models every section's stored bytes at once were a few hundred MB of the
    controller's peak: a section's read is dropped before the next one is read. A load that
    fails half-way leaves the cache unloaded (the next attempt starts over)."""
    etcd = FakeEtcd()
    for m in range(3):
        etcd.put(KS.model(f"m{m}"), intent([1], 1))
    etcd.put(KS.host("h0"), host("h0"))
    failing = FleetCache(etcd, KS, log=LOG, reader=_SectionByReader(etcd, fail_at=3))
    assert not failing.ensure_started() and not failing.loaded and len(failing) == 0 and failing.error
    reader = _SectionByReader(etcd)
    cache = FleetCache(etcd, KS, log=LOG, reader=reader)
    assert cache.ensure_started()
    assert reader.previous_alive == [False] * 9  # 10 sections
    fresh = FleetCache(etcd, KS, log=LOG, reader=PagedReader(etcd))
    assert fresh.ensure_started()
    assert {k: cache.get(k) for k in etcd.items} == {k: fresh.get(k) for k in etcd.items} and len(cache) == 4
