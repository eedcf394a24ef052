"""Equal parsed values share one object (controller/compact.py) without changing any value."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from tfleet import schema
from tfleet.controller.compact import Interner
from tfleet.schema import Assignment, ModelStatus, ModelStatusReport

STATUS = b'{"assignment_revision":%d,"versions":{"1":{"state":"AVAILABLE","error_code":0,"error_message":""}},"version_labels":{"stable":1},"error":null,"updated_at":"2026-11-27T12:00:00Z"}'
REPORT = (
    b'{"intent_revision":%d,"wanted_replicas":2,"ready_replicas":{"1":2},"replicas":[{"host":"h1","versions":{"1":"AVAILABLE"},"labels":{},"ready":true,'
    b'"canary":false,"errors":[]}],"rollout":{"phase":"stable","from_versions":[],"to_versions":[1],"reason":"","from_labels":{}},"reasons":[],"error":null,'
    b'"failures":[],"updated_at":"2026-11-27T12:00:00Z","serving_replicas":2,"health":"ok","health_reason":""}'
)


def test_equal_parts_are_one_object_and_values_do_not_change() -> None:
    interner = Interner()
    first, second = (interner.compact(schema.parse(ModelStatus, STATUS % n, "k"), whole=False) for n in (1, 2))
    assert first is not second  # whole=False: the documents themselves stay apart
    assert first.versions is second.versions and first.version_labels is second.version_labels
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert schema.encode(first) == STATUS % 1 and first == schema.parse(ModelStatus, STATUS % 1, "k")
    reports = [interner.compact(schema.parse(ModelStatusReport, REPORT % n, "k"), whole=False) for n in (3, 4)]
    assert reports[0].replicas is reports[1].replicas and reports[0].rollout is reports[1].rollout
    assert [schema.encode(r) for r in reports] == [REPORT % 3, REPORT % 4]


def test_equal_documents_are_one_object_when_shared_whole() -> None:
    interner = Interner()
    raw = b'{"base_path":"/m","model_version_policy":{"specific":{"versions":[1]}},"version_labels":{"stable":1}}'
    first, second = (interner.compact(schema.parse(Assignment, raw, "k")) for _ in range(2))
    assert first is second
    other = interner.compact(schema.parse(Assignment, raw.replace(b"[1]", b"[2]"), "k"))
    assert other != first and other.version_labels is first.version_labels


def test_values_nothing_holds_are_forgotten() -> None:
    interner = Interner()
    held = [interner.compact(schema.parse(ModelStatus, STATUS % n, "k"), whole=False) for n in range(3)]
    size = len(interner)
    assert size > 0
    del held
    gc.collect()
    interner._prune()
    assert len(interner) == 0


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1.0, 1]), st.text(max_size=5)
)
_trees = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=12)


@settings(max_examples=200)
@given(st.lists(_trees, max_size=6))
def test_sharing_never_conflates_values_that_differ(trees: list[object]) -> None:
    """1, 1.0 and True are equal in Python but not the same JSON: they must stay apart."""
    import json

    interner = Interner()
    before = [json.dumps(tree) for tree in trees]
    shared = [interner.compact(json.loads(text)) for text in before]
    assert [json.dumps(tree) for tree in shared] == before


def test_times_are_shared_when_equal_and_kept_apart_at_another_offset() -> None:
    import datetime as dt

    interner = Interner()
    utc = dt.datetime(2026, 11, 27, 12, 0, 0, 5, tzinfo=dt.timezone.utc)
    same = [interner.compact([dt.datetime(2026, 11, 27, 12, 0, 0, 5, tzinfo=dt.timezone.utc)]) for _ in range(2)]
    assert same[0][0] is same[1][0] and same[0][0] == utc
    shifted = utc.astimezone(dt.timezone(dt.timedelta(hours=1)))  # the same instant, written apart
    naive = utc.replace(tzinfo=None)
    other, bare = interner.compact([shifted]), interner.compact([naive])
    assert other[0] is shifted and other[0].isoformat() != utc.isoformat() and bare[0] is naive


def test_planned_reports_share_their_replica_entries_and_equal_a_validated_document() -> None:
    """planner._report builds each replica entry once (planner._replica_report); the report is
    the one a plain document would validate to."""
    from bench import cache_pass
    from bench.controller_plan import build

    store = cache_pass.MemoryStore(build(30, 4))
    reconciler = cache_pass.in_memory_controller(store).reconciler
    reconciler.reconcile()
    reports = [report for report in reconciler.reports.values() if report is not None]
    entries = [replica for report in reports for replica in report.replicas]
    by_content: dict[str, object] = {}
    for entry in entries:
        assert by_content.setdefault(entry.model_dump_json(), entry) is entry, "equal replica entries are one object"
    for report in reports:
        assert ModelStatusReport.model_validate(report.model_dump()) == report


def test_compact_fields_shares_a_documents_parts_but_the_fields_named() -> None:
    """planner.settled compacts a report but for its replica entries and rollout state, which
    it built from shared values already: those are kept as they are, not walked again."""
    interner = Interner()
    first = schema.parse(ModelStatusReport, REPORT % 1, "k")
    interner.compact(first, whole=False)
    second = schema.parse(ModelStatusReport, REPORT % 1, "k")
    kept = second.replicas
    interner.compact_fields(second, skip={"replicas"})
    assert second.replicas is kept and second.replicas is not first.replicas, "a skipped field is left alone"
    assert second.rollout is first.rollout and second.ready_replicas is first.ready_replicas
    assert second == first


def test_a_containers_key_is_one_flat_tuple() -> None:
    """(list, "a", "b"), not (list, ("a", "b")): one tuple less for each entry (48 bytes)."""
    interner = Interner()
    interner.compact([["a", "b"], {"k": "v"}])
    assert (list, "a", "b") in interner._table and (dict, "k", "v") in interner._table


def test_a_parsed_reports_replica_list_shares_its_entries_but_is_kept_apart() -> None:
    """A report's replica list names the model's own hosts (nearly never another report's):
    its table entry would cost more than it saves; its entries are shared."""
    from tfleet.controller.compact import INTERNER
    from tfleet.controller.keyfile import parse_key
    from tfleet.keyspace import Keyspace

    ks = Keyspace()
    first, second = (parse_key(ks, ks.modelstatus(f"alone-{n}"), REPORT % n, 7).value for n in (1, 2))
    assert isinstance(first, ModelStatusReport) and isinstance(second, ModelStatusReport)
    assert first.replicas[0] is second.replicas[0] and first.rollout is second.rollout
    assert not any(value is first.replicas or value is second.replicas for value in list(INTERNER._table.values()))
    assert schema.encode(first) == REPORT % 1


def test_a_route_table_only_its_digest_is_kept_adds_nothing_to_the_table() -> None:
    """keyfile keeps a route table's digest, not the table: sharing its parts would only
    leave entries nothing holds until the next prune."""
    import datetime as dt

    from tfleet.controller.compact import INTERNER
    from tfleet.controller.keyfile import parse_key
    from tfleet.keyspace import Keyspace
    from tfleet.schema import RouteEndpoint, RouteTable

    ks = Keyspace()
    endpoints = [RouteEndpoint(host=f"digest-only-{n}", grpc_address=f"127.0.0.{n}:1", rest_address=f"127.0.0.{n}:2") for n in (1, 2)]
    table = RouteTable(model="m", versions={"1": endpoints}, endpoints=endpoints, updated_at=dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc))
    before = len(INTERNER)
    filed = parse_key(ks, ks.routes("m"), schema.encode(table), 9)
    assert filed.kind == "routes" and filed.value is not None
    assert len(INTERNER) == before
