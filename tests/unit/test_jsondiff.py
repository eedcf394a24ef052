"""The field-level JSON diff that history, `tfleet diff` and the dashboard show."""

from __future__ import annotations

import pytest

from tfleet.jsondiff import FieldChange, diff_values

BASE = {
    "base_path": "/models/resnet",
    "model_version_policy": {"specific": {"versions": [3]}},
    "version_labels": {"stable": 3},
    "replicas": 2,
    "host_selector": {},
}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(BASE, dict(BASE), [], id="equal"),
        pytest.param(None, None, [], id="both-absent"),
        pytest.param(
            BASE,
            {**BASE, "replicas": 3},
            [FieldChange("replicas", 2, 3)],
            id="scalar",
        ),
        pytest.param(
            BASE,
            {**BASE, "model_version_policy": {"specific": {"versions": [3, 4]}}},
            [FieldChange("model_version_policy.specific.versions", [3], [3, 4])],
            id="list-is-one-leaf",
        ),
        pytest.param(
            BASE,
            {**BASE, "model_version_policy": {"latest": {"num_versions": 2}}},
            [
                FieldChange("model_version_policy.latest", None, {"num_versions": 2}),
                FieldChange("model_version_policy.specific", {"versions": [3]}, None),
            ],
            id="policy-kind-changes",
        ),
        pytest.param(
            BASE,
            {**BASE, "version_labels": {"stable": 3, "canary": 4}},
            [FieldChange("version_labels.canary", None, 4)],
            id="added-map-key",
        ),
        pytest.param(
            {"a": 1},
            {"b": 1},
            [FieldChange("a", 1, None), FieldChange("b", None, 1)],
            id="renamed-field",
        ),
        pytest.param(
            {"host_selector": {}},
            {"host_selector": {"topology.zone": "a"}},
            [FieldChange('host_selector["topology.zone"]', None, "a")],
            id="dotted-key-is-quoted",
        ),
        pytest.param({"x": 1}, {"x": 1.0}, [FieldChange("x", 1, 1.0)], id="json-type-change"),
        pytest.param({"x": 1}, {"x": True}, [FieldChange("x", 1, True)], id="bool-is-not-int"),
        pytest.param({"x": None}, {}, [], id="null-equals-missing"),
        pytest.param({"x": {}}, {"x": None}, [FieldChange("x", {}, None)], id="object-to-null"),
    ],
)
def test_diff_values(old: dict | None, new: dict | None, expected: list[FieldChange]) -> None:
    assert diff_values(old, new) == expected


def test_create_lists_every_top_level_field_and_delete_reverses_it() -> None:
    created = diff_values(None, BASE)
    assert [c.path for c in created] == sorted(BASE)
    assert all(c.old is None for c in created)
    deleted = diff_values(BASE, None)
    assert [(c.path, c.old, c.new) for c in deleted] == [(c.path, c.new, c.old) for c in created]


def test_diff_does_not_modify_its_inputs() -> None:
    old = {"a": {"b": [1]}}
    new = {"a": {"b": [2]}}
    diff_values(old, new)
    assert old == {"a": {"b": [1]}} and new == {"a": {"b": [2]}}
