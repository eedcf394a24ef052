"""Schemas of etcd values: defaults, exact JSON shape, and errors an operator can act on."""

import json

import pytest

from tfleet.schema import Assignment, HostRecord, ModelStatus, SchemaError, encode, parse, utc_now
from tfleet.tfs.types import VersionPolicy

KEY = "/tfleet/assignments/h1/resnet"


def test_documented_example_parses() -> None:
    raw = {
        "base_path": "/models/resnet",
        "model_platform": "tensorflow",
        "model_version_policy": {"specific": {"versions": [3, 4]}},
        "version_labels": {"stable": 3},
    }
    spec = parse(Assignment, json.dumps(raw), KEY).to_config("resnet")
    assert spec.model_version_policy == VersionPolicy("specific", versions=(3, 4))
    assert spec.version_labels == (("stable", 3),)


def test_defaults_are_latest_one_and_tensorflow() -> None:
    spec = parse(Assignment, b'{"base_path": "/m"}', KEY).to_config("m")
    assert spec.model_platform == "tensorflow"
    assert spec.model_version_policy == VersionPolicy("latest", num_versions=1)


def test_policy_serializes_only_the_chosen_branch() -> None:
    doc = json.loads(encode(parse(Assignment, b'{"base_path": "/m", "model_version_policy": {"all": {}}}', KEY)))
    assert doc["model_version_policy"] == {"all": {}}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{", f"{KEY}: invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"[1]", f"{KEY}: must be a JSON object, found list"),
        (b"{}", f"{KEY}: base_path: required field is missing"),
        (b'{"base_path": "/m", "model_version_polcy": {}}', "model_version_polcy: unknown field (check its spelling)"),
        (b'{"base_path": "/m", "model_version_policy": {}}', 'must hold exactly one of "latest", "all" or "specific", found 0'),
        (b'{"base_path": "/m", "model_version_policy": {"latest": {"num_versions": 0}}}', "model_version_policy.latest.num_versions"),
        (b'{"base_path": "/m", "model_version_policy": {"specific": {"versions": []}}}', "model_version_policy.specific.versions"),
        (b'{"base_path": "/m", "version_labels": {"stable": "three"}}', "version_labels.stable"),
        (b'{"base_path": "/m", "version_labels": {"no good": 1}}', "version label 'no good'"),
        (b"\xff", f"{KEY}: invalid JSON"),
    ],
)
def test_errors_name_the_key_and_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse(Assignment, raw, KEY)
    assert message in str(info.value)


def test_daemon_records_ignore_unknown_fields_for_forward_compatibility() -> None:
    raw = json.dumps({"host": "h1", "grpc_address": "a:1", "rest_address": "a:2", "agent_version": "9", "started_at": "2026-01-01T00:00:00Z", "new_field": 1})
    assert parse(HostRecord, raw, "k").host == "h1"


def test_status_json_shape_is_the_contract() -> None:
    status = ModelStatus(assignment_revision=7, versions={"3": {"state": "AVAILABLE"}}, updated_at=utc_now())
    doc = json.loads(encode(status))
    assert set(doc) == {"assignment_revision", "versions", "version_labels", "error", "updated_at"}
    assert doc["versions"] == {"3": {"state": "AVAILABLE", "error_code": 0, "error_message": ""}}
    assert doc["error"] is None
    assert doc["updated_at"].endswith("Z")


def test_intent_defaults_and_replica_assignment() -> None:
    from tfleet.schema import ModelIntent

    intent = parse(
        ModelIntent, b'{"base_path": "/m", "model_version_policy": {"specific": {"versions": [1, 2]}}, "version_labels": {"stable": 1}}', "/tfleet/models/m"
    )
    assert intent.replicas == 1 and intent.rollout.strategy == "rolling"
    step = intent.assignment((1, 2, 3), {"stable": 2})
    assert step.model_version_policy.to_spec() == VersionPolicy("specific", versions=(1, 2, 3))
    assert step.version_labels == {"stable": 2}
    assert intent.assignment().version_labels == {"stable": 1}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"base_path": "/m", "replicas": -1}', "replicas"),
        (b'{"base_path": "/m", "model_version_policy": {"specific": {"versions": [1]}}, "version_labels": {"stable": 3}}', "points at version 3"),
        (b'{"base_path": "/m", "rollout": {"strategy": "blue-green"}}', "rollout.strategy"),
        (b'{"base_path": "/m", "replica": 2}', "replica: unknown field"),
    ],
)
def test_invalid_intents_are_explained(raw: bytes, message: str) -> None:
    from tfleet.schema import ModelIntent

    with pytest.raises(SchemaError, match=message):
        parse(ModelIntent, raw, "/tfleet/models/m")


def test_history_gap_entry_and_cursor_parse_as_documented() -> None:
    """docs/keyspace.md, "Gaps" and "/tfleet/historycursor": the documented shapes."""
    from tfleet.schema import HistoryCursor, HistoryEntry

    gap = parse(
        HistoryEntry,
        json.dumps(
            {
                "sequence": 12,
                "model": "resnet",
                "action": "gap",
                "revision": 47790,
                "at": "2026-11-27T15:00:00Z",
                "revisions": {"first": 1002, "last": 47800},
                "source": "etcd",
                "author": None,
                "previous": None,
                "new": None,
            }
        ),
        "/tfleet/history/resnet/000000000012",
    )
    assert (gap.action, gap.revisions.first, gap.revisions.last, gap.note) == ("gap", 1002, 47800, None)
    # entries written before these fields existed still parse
    old = parse(HistoryEntry, b'{"sequence": 1, "model": "m", "action": "create", "revision": null, "at": "2026-11-27T15:00:00Z"}', "k")
    assert old.revisions is None and old.note is None
    cursor = parse(
        HistoryCursor,
        json.dumps(
            {
                "revision": 48121,
                "updated_at": "2026-11-27T15:00:00Z",
                "keep": 100,
                "last_gap": {"revisions": {"first": 1002, "last": 47800}, "at": "2026-11-27T14:59:58Z", "models": 3},
            }
        ),
        "/tfleet/historycursor",
    )
    assert (cursor.revision, cursor.keep, cursor.last_gap.models) == (48121, 100, 3)
    assert set(json.loads(encode(cursor))) == {"revision", "updated_at", "keep", "last_gap"}
