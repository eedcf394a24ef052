"""Table-driven tests of the agent's pure planner (agent/planner.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tfleet.agent.planner import ModelInput, PlanInput, aspired_versions, plan
from tfleet.modelfs import DiskFacts
from tfleet.schema import Assignment
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy, VersionState, VersionStatus

A = VersionState.AVAILABLE
L = VersionState.LOADING
E = VersionState.END


def assignment(**fields) -> Assignment:
    return Assignment.model_validate({"base_path": "/m/r", **fields})


def specific(*versions: int) -> dict:
    return {"model_version_policy": {"specific": {"versions": list(versions)}}}


def spec(name="r", policy=VersionPolicy(), labels=(), base_path="/m/r") -> ModelConfigSpec:
    return ModelConfigSpec(name, base_path, "tensorflow", policy, tuple(sorted(labels)))


def served(*pairs, error=None) -> tuple[VersionStatus, ...]:
    return tuple(VersionStatus(v, s, 2 if error and s == E else 0, error or "" if s == E else "") for v, s in pairs)


@dataclass
class Case:
    name: str
    models: dict[str, ModelInput]
    applied: dict[str, ModelConfigSpec] = field(default_factory=dict)
    served: dict = field(default_factory=dict)
    reload_errors: dict = field(default_factory=dict)
    labels_refused: frozenset = frozenset()
    # expectations
    config: dict[str, ModelConfigSpec] | None = None
    reload_needed: bool | None = None
    error_contains: dict[str, str] = field(default_factory=dict)
    no_error: tuple[str, ...] = ()
    settled: bool | None = None
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, dict[int, VersionState]] = field(default_factory=dict)


def model(name="r", revision=5, disk=(1, 2, 3), **fields) -> ModelInput:
    return ModelInput(name, revision, assignment(**fields), disk=DiskFacts(versions=tuple(disk)))


def invalid(name="r", revision=6, error="invalid JSON") -> ModelInput:
    return ModelInput(name, revision, None, error=error)


def missing_base(name="r", revision=6, **fields) -> ModelInput:
    return ModelInput(name, revision, assignment(**fields), disk=DiskFacts(error="base_path /m/r does not exist"))


SPEC_34 = spec(policy=VersionPolicy("specific", versions=(3, 4)))
CASES = [
    Case(
        "new model is named with latest policy",
        {"r": model()},
        config={"r": spec()},
        reload_needed=True,
        settled=False,
        versions={"r": {3: VersionState.START}},
    ),
    Case(
        "applied and available: nothing to do",
        {"r": model()},
        applied={"r": spec()},
        served={"r": served((3, A))},
        reload_needed=False,
        settled=True,
        no_error=("r",),
    ),
    Case(
        "assignment deleted: model left out, so TF Serving unloads it",
        {},
        applied={"r": spec()},
        served={"r": served((3, A))},
        config={},
        reload_needed=True,
    ),
    Case(
        "invalid JSON keeps the last applied config and reports",
        {"r": invalid()},
        applied={"r": spec()},
        served={"r": served((3, A))},
        config={"r": spec()},
        reload_needed=False,
        error_contains={"r": "invalid JSON; still serving the last valid assignment"},
    ),
    Case(
        "invalid assignment of a new model: left out, reported, others unaffected",
        {"bad": invalid("bad"), "good": model("good", base_path="/m/g")},
        config={"good": spec("good", base_path="/m/g")},
        error_contains={"bad": "invalid JSON"},
        no_error=("good",),
    ),
    Case(
        "missing base_path keeps the previous config",
        {"r": missing_base(**specific(4))},
        applied={"r": spec()},
        config={"r": spec()},
        reload_needed=False,
        error_contains={"r": "base_path /m/r does not exist; still serving"},
    ),
    Case(
        "missing base_path of a new model: left out",
        {"r": missing_base()},
        config={},
        reload_needed=False,
        error_contains={"r": "does not exist"},
    ),
    Case(
        "specific version without a directory is an error",
        {"r": model(disk=(1, 2), **specific(2, 7))},
        config={},
        error_contains={"r": "version 7 not found under base_path /m/r (it has 1, 2)"},
    ),
    Case(
        "label on a version the policy does not serve is an error",
        {"r": model(**specific(3), version_labels={"stable": 2})},
        config={},
        error_contains={"r": "'stable' points at version 2"},
    ),
    Case(
        "label waits until its version is AVAILABLE",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 4})},
        applied={"r": SPEC_34},
        served={"r": served((3, A), (4, L))},
        config={"r": SPEC_34},
        reload_needed=False,
        settled=False,
        labels={"r": {}},
    ),
    Case(
        "label applied once its version is AVAILABLE (second reload)",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 4})},
        applied={"r": SPEC_34},
        served={"r": served((3, A), (4, A))},
        config={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("stable", 4)])},
        reload_needed=True,
        settled=True,
        labels={"r": {"stable": 4}},
    ),
    Case(
        "moving label stays on the old version while the new one loads",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 4})},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("stable", 3)])},
        served={"r": served((3, A), (4, L))},
        config={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("stable", 3)])},
        reload_needed=False,
        settled=False,
        labels={"r": {"stable": 3}},
    ),
    Case(
        "TF Serving forgot the model (restart): the same config is pushed again",
        {"r": model()},
        applied={"r": spec()},
        served={"r": None},
        config={"r": spec()},
        reload_needed=True,
    ),
    Case(
        "failed load is reported with TF Serving's message, and is settled (no retry loop)",
        {"r": model(**specific(3))},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(3,)))},
        served={"r": served((3, E), error="corrupt saved model")},
        reload_needed=False,
        settled=True,
        error_contains={"r": "version 3 failed to load: corrupt saved model"},
    ),
    Case(
        "an old version unloaded cleanly is not reported",
        {"r": model(**specific(4))},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(4,)))},
        served={"r": served((3, E), (4, A))},
        versions={"r": {4: A}},
        settled=True,
    ),
    Case(
        "a version assigned again after TF Serving unloaded it (END, no error) is not settled: look again until it loads",
        {"r": model(disk=(1, 3), **specific(1, 3))},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(1, 3)))},
        served={"r": served((1, E), (3, A))},
        reload_needed=False,
        settled=False,
    ),
    Case(
        "a removed version still unloading keeps the model unsettled (look again until it is gone)",
        {"r": model(disk=(3, 4), **specific(4))},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(4,)))},
        served={"r": served((3, A), (4, A))},
        versions={"r": {3: A, 4: A}},
        settled=False,
    ),
    Case(
        "TF Serving restarted empty: labels held back, versions reported START (not AVAILABLE)",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 3, "canary": 4})},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("canary", 4), ("stable", 3)])},
        served={"r": None},
        config={"r": SPEC_34},
        reload_needed=True,
        settled=False,
        labels={"r": {}},
        versions={"r": {3: VersionState.START, 4: VersionState.START}},
    ),
    Case(
        "after the restart, labels come back once their versions are AVAILABLE again",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 3, "canary": 4})},
        applied={"r": SPEC_34},
        served={"r": served((3, A), (4, A))},
        config={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("canary", 4), ("stable", 3)])},
        reload_needed=True,
        settled=True,
    ),
    Case(
        "labels refused: only labels TF Serving accepted before are sent, the new one waits",
        {"r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 4})},
        applied={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("stable", 3)])},
        served={"r": served((3, A), (4, A))},
        labels_refused=frozenset({"r"}),
        config={"r": spec(policy=VersionPolicy("specific", versions=(3, 4)), labels=[("stable", 3)])},
        reload_needed=False,
        settled=False,
        labels={"r": {"stable": 3}},
    ),
    Case(
        "labels refused for one model leave the labels of another alone",
        {
            "r": model(disk=(3, 4), **specific(3, 4), version_labels={"stable": 4}),
            "o": model("o", disk=(3, 4), base_path="/m/o", **specific(3, 4), version_labels={"stable": 4}),
        },
        applied={"r": SPEC_34, "o": spec("o", base_path="/m/o", policy=VersionPolicy("specific", versions=(3, 4)))},
        served={"r": served((3, A), (4, A)), "o": served((3, A), (4, A))},
        labels_refused=frozenset({"r"}),
        labels={"r": {}, "o": {"stable": 4}},
    ),
    Case(
        "reload error attributed by the reconciler is reported",
        {"r": model()},
        reload_errors={"r": "TF Serving rejected the reload: boom"},
        error_contains={"r": "rejected the reload: boom"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan(case: Case) -> None:
    result = plan(PlanInput(case.models, case.applied, case.served, case.reload_errors, case.labels_refused))
    if case.config is not None:
        assert result.config_by_name() == case.config
    if case.reload_needed is not None:
        assert result.reload_needed is case.reload_needed
    for name, text in case.error_contains.items():
        assert result.reports[name].error is not None and text in result.reports[name].error
    for name in case.no_error:
        assert result.reports[name].error is None
    if case.settled is not None:
        assert result.settled is case.settled
    for name, labels in case.labels.items():
        assert dict(result.reports[name].version_labels) == labels
    for name, versions in case.versions.items():
        assert {v: s.state for v, s in result.reports[name].versions.items()} == versions
    assert set(result.reports) == set(case.models)


def test_config_is_sorted_and_deterministic() -> None:
    models = {n: model(n, base_path=f"/m/{n}") for n in ("c", "a", "b")}
    first = plan(PlanInput(models, {}, {}))
    assert [s.name for s in first.config] == ["a", "b", "c"]
    assert first == plan(PlanInput(dict(reversed(models.items())), {}, {}))


@pytest.mark.parametrize(
    "policy, disk, expected",
    [
        (VersionPolicy("latest", num_versions=1), (1, 2, 3), (3,)),
        (VersionPolicy("latest", num_versions=2), (1, 2, 3), (2, 3)),
        (VersionPolicy("all"), (1, 5), (1, 5)),
        (VersionPolicy("specific", versions=(2,)), (1, 5), (2,)),
    ],
)
def test_aspired_versions(policy: VersionPolicy, disk: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert aspired_versions(spec(policy=policy), DiskFacts(versions=disk)) == expected


def test_remote_base_path_versions_are_unknown() -> None:
    assert aspired_versions(spec(), DiskFacts(unchecked=True)) is None
