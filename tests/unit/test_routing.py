"""tfleet.routing: route tables from a fleet snapshot (pure, table-driven)."""

from __future__ import annotations

import datetime as dt

import pytest

from tfleet import schema
from tfleet.controller.snapshot import FleetSnapshot
from tfleet.keyspace import Keyspace
from tfleet.routing import (
    EPOCH,
    parse_route_table,
    plan_routes,
    read_route_tables,
    route_tables,
    routes_changed,
    content_digest,
)
from tfleet.schema import HostRecord, ModelStatus, RouteTable, SchemaError
from tfleet.store import Delete, KeyValue, Put, Snapshot

NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.timezone.utc)
KS = Keyspace("/tfleet")


def host(name: str) -> HostRecord:
    number = name.removeprefix("h")
    return HostRecord(host=name, grpc_address=f"10.0.0.{number}:8500", rest_address=f"10.0.0.{number}:8501", agent_version="0.1.0", started_at=NOW)


def status(versions: dict[int, str], labels: dict[str, int] | None = None, error: str | None = None) -> ModelStatus:
    return ModelStatus(
        assignment_revision=1,
        versions={str(v): {"state": state} for v, state in versions.items()},
        version_labels=labels or {},
        error=error,
        updated_at=NOW,
    )


def snapshot(hosts: list[str], statuses: dict[tuple[str, str], ModelStatus]) -> FleetSnapshot:
    index: dict[str, set[str]] = {}
    for h, m in statuses:  # the status index SnapshotReader keeps
        index.setdefault(m, set()).add(h)
    return FleetSnapshot(revision=1, hosts={h: host(h) for h in hosts}, statuses=statuses, status_hosts=index)


def hosts_of(endpoints: list) -> list[str]:
    return [e.host for e in endpoints]


def summary(table: RouteTable) -> dict:
    """A table in short form: host names instead of endpoint objects."""
    return {
        "versions": {v: hosts_of(e) for v, e in table.versions.items()},
        "labels": {label: hosts_of(e) for label, e in table.labels.items()},
        "endpoints": hosts_of(table.endpoints),
    }


CASES = [
    pytest.param(
        ["h1", "h2"],
        {("h1", "m"): status({1: "AVAILABLE"}), ("h2", "m"): status({1: "AVAILABLE"})},
        {"m": {"versions": {"1": ["h1", "h2"]}, "labels": {}, "endpoints": ["h1", "h2"]}},
        id="one-version-two-hosts",
    ),
    pytest.param(
        ["h2", "h1", "h3"],
        {("h3", "m"): status({1: "AVAILABLE"}), ("h1", "m"): status({1: "AVAILABLE"}), ("h2", "m"): status({1: "AVAILABLE"})},
        {"m": {"versions": {"1": ["h1", "h2", "h3"]}, "labels": {}, "endpoints": ["h1", "h2", "h3"]}},
        id="endpoints-sorted-by-host",
    ),
    pytest.param(
        ["h1", "h2"],
        {("h1", "m"): status({1: "AVAILABLE", 2: "LOADING"}), ("h2", "m"): status({2: "AVAILABLE", 1: "UNLOADING"})},
        {"m": {"versions": {"1": ["h1"], "2": ["h2"]}, "labels": {}, "endpoints": ["h1", "h2"]}},
        id="only-available-versions",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({10: "AVAILABLE", 9: "AVAILABLE", 100: "AVAILABLE"})},
        {"m": {"versions": {"9": ["h1"], "10": ["h1"], "100": ["h1"]}, "labels": {}, "endpoints": ["h1"]}},
        id="versions-in-numeric-order",
    ),
    pytest.param(
        ["h1", "h2"],
        {("h1", "m"): status({1: "AVAILABLE", 2: "AVAILABLE"}, {"stable": 1, "canary": 2}), ("h2", "m"): status({1: "AVAILABLE"}, {"stable": 1})},
        {"m": {"versions": {"1": ["h1", "h2"], "2": ["h1"]}, "labels": {"canary": ["h1"], "stable": ["h1", "h2"]}, "endpoints": ["h1", "h2"]}},
        id="labels-sorted-where-applied",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({1: "AVAILABLE", 2: "LOADING"}, {"stable": 1, "next": 2})},
        {"m": {"versions": {"1": ["h1"]}, "labels": {"stable": ["h1"]}, "endpoints": ["h1"]}},
        id="label-on-unavailable-version-not-routed",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({1: "AVAILABLE"}, {"stable": 7})},
        {"m": {"versions": {"1": ["h1"]}, "labels": {}, "endpoints": ["h1"]}},
        id="label-on-unknown-version-not-routed",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({1: "LOADING"})},
        {"m": {"versions": {}, "labels": {}, "endpoints": []}},
        id="served-nowhere-yet-empty-table",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({}, error="assignment of model 'm' is invalid")},
        {"m": {"versions": {}, "labels": {}, "endpoints": []}},
        id="status-without-versions-empty-table",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({1: "AVAILABLE", 2: "END"}, error="version 2 failed to load")},
        {"m": {"versions": {"1": ["h1"]}, "labels": {}, "endpoints": ["h1"]}},
        id="error-keeps-serving-what-is-available",
    ),
    pytest.param(
        ["h1"],
        {("h1", "m"): status({1: "AVAILABLE"}), ("h2", "m"): status({1: "AVAILABLE"})},
        {"m": {"versions": {"1": ["h1"]}, "labels": {}, "endpoints": ["h1"]}},
        id="status-of-host-without-record-skipped",
    ),
    pytest.param(
        ["h1"],
        {("h2", "gone"): status({1: "AVAILABLE"})},
        {},
        id="model-only-on-dead-host-has-no-table",
    ),
    pytest.param(
        ["h1", "h2"],
        {("h1", "a"): status({1: "AVAILABLE"}), ("h2", "b"): status({3: "AVAILABLE"}, {"stable": 3})},
        {
            "a": {"versions": {"1": ["h1"]}, "labels": {}, "endpoints": ["h1"]},
            "b": {"versions": {"3": ["h2"]}, "labels": {"stable": ["h2"]}, "endpoints": ["h2"]},
        },
        id="several-models",
    ),
    pytest.param([], {}, {}, id="empty-fleet"),
]


@pytest.mark.parametrize(("hosts", "statuses", "expected"), CASES)
def test_route_tables(hosts, statuses, expected) -> None:
    tables = route_tables(snapshot(hosts, statuses), NOW)
    assert {model: summary(table) for model, table in tables.items()} == expected
    assert list(tables) == sorted(tables)
    for model, table in tables.items():
        assert table.model == model and table.updated_at == NOW


def test_endpoints_carry_the_host_record_addresses() -> None:
    table = route_tables(snapshot(["h7"], {("h7", "m"): status({1: "AVAILABLE"})}))["m"]
    (endpoint,) = table.endpoints
    assert (endpoint.host, endpoint.grpc_address, endpoint.rest_address) == ("h7", "10.0.0.7:8500", "10.0.0.7:8501")
    assert table.updated_at == EPOCH  # no clock given: content only


def test_operator_assigned_models_are_routed_too() -> None:
    """No intent, no modelstatus, an assignment written by hand: still a table (routes = what is served)."""
    snap = snapshot(["h1"], {("h1", "by_hand"): status({4: "AVAILABLE"})})
    assert not snap.intents
    assert summary(route_tables(snap)["by_hand"])["versions"] == {"4": ["h1"]}


def test_equal_fleets_encode_to_equal_bytes() -> None:
    statuses = {
        ("h2", "m"): status({2: "AVAILABLE", 1: "AVAILABLE"}, {"b": 2, "a": 1}),
        ("h1", "m"): status({1: "AVAILABLE", 2: "AVAILABLE"}, {"a": 1, "b": 2}),
    }
    reordered = dict(reversed(list(statuses.items())))
    one = schema.encode(route_tables(snapshot(["h1", "h2"], statuses), NOW)["m"])
    two = schema.encode(route_tables(snapshot(["h2", "h1"], reordered), NOW)["m"])
    assert one == two


def table(endpoints: list[str], updated_at: dt.datetime = NOW, **extra) -> RouteTable:
    eps = [{"host": h, "grpc_address": f"{h}:8500", "rest_address": f"{h}:8501"} for h in endpoints]
    return RouteTable(model="m", versions={"1": eps}, endpoints=eps, updated_at=updated_at, **extra)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        pytest.param(None, table(["a"]), True, id="no-old-table"),
        pytest.param(table(["a"]), table(["a"]), False, id="same"),
        pytest.param(table(["a"], NOW), table(["a"], NOW + dt.timedelta(hours=1)), False, id="only-updated-at"),
        pytest.param(table(["a"]), table(["a", "b"]), True, id="endpoint-added"),
        pytest.param(table(["a", "b"]), table(["a"]), True, id="endpoint-removed"),
        pytest.param(table(["a"]), table(["a"], labels={"stable": []}), True, id="label-added"),
    ],
)
def test_routes_changed(old, new, changed) -> None:
    assert routes_changed(old, new) is changed
    # the controller keeps only the stored table's digest: it must decide the same
    assert routes_changed(content_digest(old) if old is not None else None, new) is changed


def test_the_digest_ignores_the_order_of_keys_as_table_equality_does() -> None:
    eps = [{"host": "a", "grpc_address": "a:8500", "rest_address": "a:8501"}]
    one = RouteTable(model="m", versions={"1": eps, "2": eps}, labels={"x": eps, "y": []}, endpoints=eps, updated_at=NOW)
    two = RouteTable(model="m", versions={"2": eps, "1": eps}, labels={"y": [], "x": eps}, endpoints=eps, updated_at=NOW)
    assert one == two and content_digest(one) == content_digest(two)
    assert content_digest(one) != content_digest(one.model_copy(update={"model": "n"}))


def test_plan_routes_puts_changes_and_deletes_models_no_longer_served() -> None:
    snap = snapshot(["h1"], {("h1", "same"): status({1: "AVAILABLE"}), ("h1", "moved"): status({2: "AVAILABLE"}), ("h1", "new"): status({1: "AVAILABLE"})})
    before = route_tables(snap, EPOCH)
    current = {
        "same": before["same"],
        "moved": route_tables(snapshot(["h1"], {("h1", "moved"): status({1: "AVAILABLE"})}))["moved"],
        "unreadable": None,
        "retired": before["same"].model_copy(update={"model": "retired"}),
    }
    plan = plan_routes(snap, current, NOW)
    assert sorted(plan.puts) == ["moved", "new"]
    assert all(t.updated_at == NOW for t in plan.puts.values())
    assert plan.deletes == frozenset({"unreadable", "retired"})
    ops = plan.operations(KS)
    assert [type(op) for op in ops] == [Put, Put, Delete, Delete]
    assert [op.key for op in ops] == ["/tfleet/routes/moved", "/tfleet/routes/new", "/tfleet/routes/retired", "/tfleet/routes/unreadable"]
    assert parse_route_table(ops[0].key, ops[0].value, KS) == plan.puts["moved"]


def test_plan_routes_rewrites_an_unreadable_table_of_a_served_model() -> None:
    snap = snapshot(["h1"], {("h1", "m"): status({1: "AVAILABLE"})})
    plan = plan_routes(snap, {"m": None}, NOW)
    assert list(plan.puts) == ["m"] and not plan.deletes


def test_plan_routes_writes_nothing_when_nothing_changed() -> None:
    snap = snapshot(["h1"], {("h1", "m"): status({1: "AVAILABLE"})})
    plan = plan_routes(snap, route_tables(snap, EPOCH), NOW)
    assert not plan.puts and not plan.deletes and plan.operations(KS) == []


def kv(key: str, value: bytes) -> KeyValue:
    return KeyValue(key=key, value=value, create_revision=1, mod_revision=1, version=1, lease=0)


def test_read_route_tables_from_the_whole_prefix() -> None:
    good = schema.encode(table(["a"]))
    snap = Snapshot(
        9,
        (
            kv("/tfleet/routes/m", good),
            kv("/tfleet/routes/broken", b"{not json"),
            kv("/tfleet/routes/other", good),  # names model "m"
            kv("/tfleet/routes/a/b", good),
            kv("/tfleet/hosts/h1", schema.encode(host("h1"))),
        ),
    )
    tables, problems = read_route_tables(snap, KS)
    assert set(tables) == {"m", "broken", "other"}
    assert tables["m"] == table(["a"]) and tables["broken"] is None and tables["other"] is None
    assert len(problems) == 3
    assert any("invalid JSON" in p for p in problems)
    assert any("names model 'm'" in p and "'other'" in p for p in problems)


def test_parse_route_table_rejects_a_key_outside_routes() -> None:
    with pytest.raises(SchemaError, match="not under"):
        parse_route_table("/tfleet/hosts/h1", schema.encode(table(["a"])), KS)


def test_plan_routes_limited_to_some_models_plans_only_those() -> None:
    snap = snapshot(["h1"], {("h1", "a"): status({1: "AVAILABLE"}), ("h1", "b"): status({1: "AVAILABLE"})})
    current = {"gone": None, "also_gone": None}
    plan = plan_routes(snap, current, NOW, models={"a", "gone"})
    assert sorted(plan.puts) == ["a"]
    assert plan.deletes == frozenset({"gone"})
    full = plan_routes(snap, current, NOW)
    assert sorted(full.puts) == ["a", "b"] and full.deletes == frozenset({"gone", "also_gone"})
