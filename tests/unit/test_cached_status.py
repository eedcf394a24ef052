"""The fleet cache's form of an agent status (controller/keyfile.py): a small StatusFacts per
key, validated as a ModelStatus, its equal parts shared, a bad value still a problem."""

from __future__ import annotations

import sys

from tfleet import health, schema
from tfleet.controller.snapshot import SnapshotReader, parse_key, read
from tfleet.keyspace import Keyspace
from tfleet.schema import ModelStatus, StatusFacts
from tfleet.store import KeyValue, Snapshot

KS = Keyspace()
OK = b'{"assignment_revision":%d,"versions":{"1":{"state":"AVAILABLE"}},"version_labels":{"stable":1},"updated_at":"2026-11-27T12:00:0%dZ"}'
FAILED = (
    b'{"assignment_revision":9,"versions":{"1":{"state":"AVAILABLE"},"2":{"state":"END","error_code":3,"error_message":"corrupt saved model"}},'
    b'"error":"version 2 failed to load","updated_at":"2026-11-27T12:00:00Z","added_by_a_newer_agent":1}'
)


def kv(key: str, value: bytes, revision: int) -> KeyValue:
    return KeyValue(key, value, revision, revision, 1, 0)


def test_statuses_are_slotted_facts_sharing_their_equal_parts() -> None:
    first, second = (parse_key(KS, KS.status(host, "m"), OK % (n, n), 10 + n).value for n, host in ((1, "h1"), (2, "h2")))
    assert isinstance(first, StatusFacts) and isinstance(second, StatusFacts)
    assert not hasattr(first, "__dict__"), "slotted: no per-object dict"
    document = schema.parse(ModelStatus, OK % (1, 1), "k")
    assert sys.getsizeof(first) < sys.getsizeof(document) + sys.getsizeof(document.__dict__)
    # what differs is each status's own; what is equal is one object
    assert (first.assignment_revision, second.assignment_revision) == (1, 2)
    assert first.updated_at != second.updated_at
    assert first.versions is second.versions and first.version_labels is second.version_labels
    assert first == StatusFacts.of(document), "the same facts as the parsed document"


def test_a_status_with_errors_keeps_them_and_health_reads_it_as_the_document() -> None:
    facts = parse_key(KS, KS.status("h1", "m"), FAILED, 10).value
    document = schema.parse(ModelStatus, FAILED, "k")
    assert isinstance(facts, StatusFacts)
    assert facts.error == "version 2 failed to load"
    assert (facts.versions["2"].state, facts.versions["2"].error_code, facts.versions["2"].error_message) == ("END", 3, "corrupt saved model")
    assert health.replica_errors(facts) == health.replica_errors(document) == ("version 2 failed to load", "version 2 is END: corrupt saved model (code 3)")
    assert health.replica_ready(facts, 9) is health.replica_ready(document, 9) is False
    assert health.replica_serving(facts) is health.replica_serving(document) is True


def test_a_bad_status_value_is_a_problem_and_not_filed() -> None:
    good, bad = KS.status("h1", "m"), KS.status("h2", "m")
    for value in (b"not json", OK.replace(b"AVAILABLE", b"READY") % (1, 1), b'{"assignment_revision":-1,"updated_at":"2026-11-27T12:00:00Z"}'):
        fleet = read(Snapshot(5, (kv(good, OK % (1, 1), 3), kv(bad, value, 4))), KS)
        assert list(fleet.statuses) == [("h1", "m")]
        assert set(fleet.problem_keys) == set(fleet.bad_values) == {bad}
        assert fleet.status_hosts == {"m": ("h1",)}


def test_status_hosts_is_one_sorted_tuple_whatever_the_order_keys_come_and_go() -> None:
    reader = SnapshotReader(KS)
    h3, h1, h2 = (kv(KS.status(h, "m"), OK % (1, 1), 3 + i) for i, h in enumerate(("h3", "h1", "h2")))
    fleet = reader.read(Snapshot(10, (h3, h1)))
    assert fleet.status_hosts == {"m": ("h1", "h3")}
    fleet = reader.read(Snapshot(11, (h3, h1, h2)))
    assert fleet.status_hosts == {"m": ("h1", "h2", "h3")}
    assert fleet.content() == read(Snapshot(11, (h2, h1, h3)), KS).content()
    fleet = reader.read(Snapshot(12, (h3, h2)))
    assert fleet.status_hosts == {"m": ("h2", "h3")} and ("h1", "m") not in fleet.statuses
    fleet = reader.read(Snapshot(13, ()))
    assert fleet.status_hosts == {} and fleet.statuses == {}
