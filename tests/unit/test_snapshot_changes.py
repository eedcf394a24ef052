"""A snapshot's change sets (which models and hosts a pass plans again) come from where the
changed keys file, not from parsing the keys again (controller/snapshot.py, _ABOUT): they
must be what parsing each changed key says (change_sets), for a key of every section put,
changed, deleted, or holding a value nobody can use."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tfleet.controller.snapshot import SnapshotReader, change_sets
from tfleet.keyspace import Keyspace
from tfleet.store import KeyValue, Snapshot

KS = Keyspace("/f")
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc).isoformat()

# one valid value of every section the snapshot holds (and of some it does not)
VALUES: dict[str, dict] = {
    KS.model("m1"): {"base_path": "/m/m1", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 1},
    KS.host("h1"): {"host": "h1", "grpc_address": "h1:1", "rest_address": "h1:2", "memory_mb": 100, "agent_version": "t", "started_at": NOW},
    KS.hostctl("h1"): {"cordoned": True},
    KS.assignment("h1", "m1"): {"base_path": "/m/m1", "model_version_policy": {"specific": {"versions": [1]}}},
    KS.status("h1", "m1"): {"assignment_revision": 3, "versions": {"1": {"state": "AVAILABLE"}}, "updated_at": NOW},
    KS.modelstatus("m1"): {"intent_revision": 1, "updated_at": NOW},
    KS.version("m1", 1): {
        "model": "m1",
        "version": 1,
        "path": "/m/m1/1",
        "checksum": "sha256:" + "0" * 64,
        "size_bytes": 10,
        "created_at": NOW,
        "registered_at": NOW,
    },
    KS.routes("m1"): {"model": "m1", "updated_at": NOW},
    KS.schedule("m1", "nightly"): {"action": "promote", "at": NOW},
    KS.leader(): {"id": "c1", "since": NOW, "version": "t"},
}
# keys the planner reads nothing from: a history entry, the problems key
OTHER_KEYS = [KS.history("m1", 1), f"{KS.prefix}/problems"]


def _kv(key: str, value: bytes, revision: int) -> KeyValue:
    return KeyValue(key, value, revision, revision, 1, 0)


def _base(revision: int = 10) -> dict[str, bytes]:
    items = {key: json.dumps(value).encode() for key, value in VALUES.items()}
    items.update({key: b"{}" for key in OTHER_KEYS})
    return items


def _changes(before: dict[str, bytes], after: dict[str, bytes]) -> tuple[frozenset, frozenset, frozenset]:
    reader = SnapshotReader(KS)
    reader.read(Snapshot(10, tuple(_kv(k, v, 10) for k, v in before.items())))
    revisions = {k: (10 if before.get(k) == v else 11) for k, v in after.items()}
    fleet = reader.read(Snapshot(11, tuple(_kv(k, v, revisions[k]) for k, v in after.items())))
    return fleet.changed_models, fleet.changed_hosts, fleet.changed_by_status


ALL_KEYS = [*VALUES, *OTHER_KEYS]


@pytest.mark.parametrize("key", ALL_KEYS)
@pytest.mark.parametrize("change", ["put", "changed", "deleted", "bad value", "bad value deleted"])
def test_change_sets_are_what_parsing_the_keys_says(key: str, change: str) -> None:
    base = _base()
    before, after = dict(base), dict(base)
    if change == "put":
        del before[key]
    elif change == "changed":
        after[key] = after[key].replace(b"}", b" }", 1)  # (the same value, written again)
    elif change == "deleted":
        del after[key]
    elif change == "bad value":
        after[key] = b"not json"
    else:
        before[key] = b"not json"
        del after[key]
    assert _changes(before, after) == change_sets(KS, {key})


def test_a_status_alone_is_a_change_by_status_and_with_its_assignment_is_not() -> None:
    base = _base()
    status, assignment = KS.status("h1", "m1"), KS.assignment("h1", "m1")
    moved = dict(base)
    moved[status] = moved[status].replace(b"}", b" }", 1)
    assert _changes(base, moved) == (frozenset({"m1"}), frozenset(), frozenset({"m1"}))
    moved[assignment] = moved[assignment].replace(b"}", b" }", 1)
    assert _changes(base, moved) == (frozenset({"m1"}), frozenset(), frozenset())
    gone = {k: v for k, v in base.items() if k not in (KS.host("h1"), status)}  # a lease expired
    assert _changes(base, gone) == (frozenset({"m1"}), frozenset({"h1"}), frozenset({"m1"}))


def test_every_value_above_files_where_it_belongs() -> None:
    """(So that the cases above take the path from where a key files, not the parse.)"""
    fleet = SnapshotReader(KS).read(Snapshot(10, tuple(_kv(k, v, 10) for k, v in _base().items())))
    assert not fleet.bad_values
    assert "m1" in fleet.intents and fleet.intents["m1"].value is not None
    assert "h1" in fleet.hosts and "h1" in fleet.hostctl and ("h1", "m1") in fleet.assignments and ("h1", "m1") in fleet.statuses
    assert "m1" in fleet.modelstatus and 1 in fleet.versions["m1"] and fleet.routes.get("m1") is not None
    assert fleet.schedules and fleet.leader is not None
