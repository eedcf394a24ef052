"""Table tests of the one readiness/health definition (tfleet/health.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from tfleet import health
from tfleet.schema import ModelStatus, ModelStatusReport

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)
END_ERROR = {"state": "END", "error_code": 13, "error_message": "corrupt saved model"}
HUNG = {"state": "UNKNOWN", "error_message": "TF Serving does not answer GetModelStatus (deadline 1s)"}


def status(versions: dict, error: str | None = None, revision: int = 7) -> ModelStatus:
    return ModelStatus.model_validate(
        {
            "assignment_revision": revision,
            "error": error,
            "updated_at": NOW,
            "versions": {v: s if isinstance(s, dict) else {"state": s} for v, s in versions.items()},
        }
    )


@pytest.mark.parametrize(
    "versions,error,revision,ready,serving",
    [
        ({"1": "AVAILABLE"}, None, 7, True, True),
        ({"1": "AVAILABLE", "2": "AVAILABLE"}, None, 7, True, True),
        ({"1": "AVAILABLE"}, None, 6, False, True),  # about an older assignment
        ({"1": "AVAILABLE", "2": "LOADING"}, None, 7, False, True),  # a rollout adding version 2
        ({"1": "AVAILABLE"}, "version 2 not found under base_path /m", 7, False, True),  # the issue
        ({"1": "LOADING"}, None, 7, False, False),
        ({"1": END_ERROR}, "version 1 failed to load: corrupt saved model", 7, False, False),
        ({"1": HUNG}, None, 7, False, False),  # TF Serving hung: not AVAILABLE is not ready
        ({}, None, 7, False, False),
    ],
)
def test_replica_ready_and_serving(versions, error, revision, ready, serving) -> None:
    s = status(versions, error)
    assert health.replica_ready(s, revision) is ready
    assert health.replica_serving(s) is serving
    assert health.replica_ready(None, 7) is False and health.replica_serving(None) is False


def test_replica_errors_name_the_agent_error_and_failing_versions_once() -> None:
    assert health.replica_errors(status({"1": "AVAILABLE", "2": "LOADING"})) == ()
    assert health.replica_errors(status({"1": "AVAILABLE"}, "version 3 not found")) == ("version 3 not found",)
    assert health.replica_errors(status({"1": END_ERROR}, "version 1 failed to load: corrupt saved model")) == (
        "version 1 failed to load: corrupt saved model",
    ), "the agent's error already quotes the version's message"
    assert health.replica_errors(status({"1": "AVAILABLE", "2": HUNG})) == ("version 2 is UNKNOWN: TF Serving does not answer GetModelStatus (deadline 1s)",)
    assert health.replica_errors(status({"10": {"state": "END", "error_code": 5}, "9": "AVAILABLE"})) == ("version 10 is END (code 5)",)
    assert health.replica_errors(status({"1": {"state": "END"}})) == (), "END without an error is an unloaded version"


def replica(host: str, ready: bool = True, errors: tuple[str, ...] = (), **versions: str) -> dict:
    return {"host": host, "versions": {v.lstrip("v"): s for v, s in versions.items()}, "ready": ready, "errors": list(errors)}


def report(replicas: list[dict], wanted: int = 2, **fields) -> ModelStatusReport:
    return ModelStatusReport.model_validate({"intent_revision": 3, "wanted_replicas": wanted, "replicas": replicas, "updated_at": NOW, **fields})


FAILURE = {"version": 3, "host": "h1", "error": "version 3 not found", "at": NOW, "retry_after": NOW + dt.timedelta(minutes=5)}
MISSING = ("version 3 not found under base_path /m/mnist (it has 1, 2); still serving the last valid assignment",)


@pytest.mark.parametrize(
    "case,the_report,kwargs,state,reason",
    [
        ("all serve", report([replica("h1", v1="AVAILABLE"), replica("h2", v1="AVAILABLE")]), {}, "ok", ""),
        (
            "healthy rollout",
            report([replica("h1", False, v1="AVAILABLE", v2="LOADING"), replica("h2", False, v1="AVAILABLE", v2="LOADING")], rollout={"phase": "adding"}),
            {},
            "ok",
            "",
        ),
        (
            "one short",
            report([replica("h1", v1="AVAILABLE")], reasons=["1 of 2 replicas not placed: no room"]),
            {},
            "degraded",
            "1 of 2 replicas not placed: no room",
        ),
        ("one loading", report([replica("h1", v1="AVAILABLE"), replica("h2", False, v1="LOADING")]), {}, "degraded", "1 of 2 replicas serve"),
        (
            "the issue: 0/2 ready, agent errors",
            report([replica("h1", False, MISSING, v2="AVAILABLE"), replica("h2", False, MISSING, v2="AVAILABLE")]),
            {},
            "failing",
            f"h1: {MISSING[0]} (and 1 more problem)",
        ),
        (
            "failure backing off",
            report([replica("h1", v2="AVAILABLE"), replica("h2", v2="AVAILABLE")], failures=[FAILURE]),
            {},
            "failing",
            "version 3 failed to load on h1: version 3 not found",
        ),
        (
            "nothing serves",
            report([replica("h1", False, v1="LOADING"), replica("h2", False, v1="START")]),
            {},
            "unavailable",
            "no replica serves any version yet",
        ),
        (
            "nothing serves, with errors",
            report([replica("h1", False, ("version 1 is END: corrupt (code 13)",), v1="END")], wanted=1),
            {},
            "unavailable",
            "h1: version 1 is END: corrupt (code 13)",
        ),
        ("nothing placed", report([], wanted=1, reasons=["needs 900 MB"]), {}, "unavailable", "needs 900 MB"),
        ("zero wanted", report([], wanted=0), {}, "ok", ""),
        (
            "controller error",
            report([replica("h1", v1="AVAILABLE")], wanted=1, error="models/m: bad; the last valid intent keeps being served"),
            {},
            "failing",
            "models/m: bad; the last valid intent keeps being served",
        ),
        (
            "invalid intent, old report",
            report([replica("h1", v1="AVAILABLE")], wanted=1),
            {"intent_error": "replicas: not a number"},
            "failing",
            "invalid intent: replicas: not a number",
        ),
        (
            "intent deleted",
            report([replica("h1", v1="AVAILABLE")], wanted=1),
            {"intent_exists": False},
            "deleting",
            "the intent was deleted; its replicas are being removed",
        ),
        ("no report", None, {}, "unknown", "no report from the controller yet"),
        ("no report, invalid intent", None, {"intent_error": "bad"}, "failing", "invalid intent: bad"),
        ("no report, no intent", None, {"intent_exists": False}, "unknown", "not managed by the controller (no intent)"),
    ],
)
def test_model_health(case, the_report, kwargs, state, reason) -> None:
    judged = health.model_health(the_report, **kwargs)
    assert (judged.state, judged.reason) == (state, reason), case
    assert judged.state in health.STATES


def test_model_health_counts_and_lists_agent_errors() -> None:
    judged = health.model_health(report([replica("h2", False, MISSING, v2="AVAILABLE"), replica("h1", True, v2="AVAILABLE")], wanted=3))
    assert (judged.wanted, judged.serving, judged.ready) == (3, 2, 1)
    assert judged.errors == (health.AgentError("h2", MISSING[0]),)
    assert dict(health.health_fields(judged)) == {"serving_replicas": 2, "health": "failing", "health_reason": f"h2: {MISSING[0]}"}


# -- one answer everywhere -------------------------------------------------------------------------
#
# The same snapshot of the fleet goes to the controller's planner (its modelstatus report), to
# the CLI views (get models, describe, status) and to the dashboard's state: all must say the
# same health, for the same reason.

import json  # noqa: E402

from tfleet.cli.views import FleetView, describe_model, fleet_status, model_row  # noqa: E402
from tfleet.controller.dashboard import build_state  # noqa: E402
from tfleet.controller.planner import plan  # noqa: E402
from tfleet.controller.snapshot import read  # noqa: E402
from tfleet.keyspace import Keyspace  # noqa: E402
from tfleet.schema import encode  # noqa: E402
from tfleet.store import KeyValue, Snapshot  # noqa: E402

KS = Keyspace("/f")
ASSIGNED_AT = 50
NOT_FOUND = "version 3 not found under base_path /m/mnist (it has 1, 2); still serving the last valid assignment"


def fleet_keys(states: dict[str, dict], errors: dict[str, str | None], versions=(2, 3), wanted=2) -> list[KeyValue]:
    items: list[tuple[str, dict, int]] = []
    for h in ("h1", "h2"):
        items.append(
            (
                KS.host(h),
                {"host": h, "grpc_address": f"{h}:8500", "rest_address": f"{h}:8501", "memory_mb": 4096, "agent_version": "t", "started_at": NOW.isoformat()},
                10,
            )
        )
    items.append(
        (
            KS.model("mnist"),
            {
                "base_path": "/m/mnist",
                "model_version_policy": {"specific": {"versions": [3]}},
                "version_labels": {"stable": 3},
                "replicas": wanted,
                "memory_mb": 100,
            },
            20,
        )
    )
    for h in states:
        items.append(
            (
                KS.assignment(h, "mnist"),
                {"base_path": "/m/mnist", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": {"stable": 2}},
                ASSIGNED_AT,
            )
        )
        items.append(
            (
                KS.status(h, "mnist"),
                {
                    "assignment_revision": ASSIGNED_AT,
                    "error": errors.get(h),
                    "updated_at": NOW.isoformat(),
                    "version_labels": {"stable": 2},
                    "versions": {v: s if isinstance(s, dict) else {"state": s} for v, s in states[h].items()},
                },
                60,
            )
        )
    # the controller's report from the rollout's start: 2 -> 3, adding
    items.append(
        (
            KS.modelstatus("mnist"),
            {
                "intent_revision": 20,
                "wanted_replicas": wanted,
                "updated_at": NOW.isoformat(),
                "rollout": {"phase": "adding", "from_versions": [2], "to_versions": [3], "from_labels": {"stable": 2}},
            },
            55,
        )
    )
    return [KeyValue(key, json.dumps(value).encode(), rev, rev, 1, 0) for key, value, rev in items]


def with_report(items: list[KeyValue]) -> tuple[Snapshot, str, str]:
    """The snapshot after the controller's pass wrote its report: and the report's health."""
    result = plan(read(Snapshot(100, tuple(items)), KS), {}, NOW)
    report = result.reports["mnist"]
    items = [kv for kv in items if kv.key != KS.modelstatus("mnist")] + [KeyValue(KS.modelstatus("mnist"), encode(report), 101, 101, 1, 0)]
    return Snapshot(101, tuple(items)), report.health, report.health_reason


AGREEMENT_CASES = {
    # the issue: every replica holds [2, 3], the agents report version 3 missing: 0/2 ready
    "version missing everywhere": ({"h1": {"2": "AVAILABLE"}, "h2": {"2": "AVAILABLE"}}, {"h1": NOT_FOUND, "h2": NOT_FOUND}, "failing"),
    "healthy rollout": ({"h1": {"2": "AVAILABLE", "3": "LOADING"}, "h2": {"2": "AVAILABLE", "3": "LOADING"}}, {}, "ok"),
    "one replica loading": ({"h1": {"2": "AVAILABLE"}, "h2": {"2": "LOADING", "3": "LOADING"}}, {}, "degraded"),
    "TF Serving hung on one host": ({"h1": {"2": "AVAILABLE", "3": "LOADING"}, "h2": {"2": HUNG, "3": HUNG}}, {}, "failing"),
    "nothing serves": ({"h1": {"2": "LOADING", "3": "LOADING"}, "h2": {"2": "START", "3": "START"}}, {}, "unavailable"),
}


@pytest.mark.parametrize("case", list(AGREEMENT_CASES))
def test_modelstatus_cli_and_dashboard_agree(case) -> None:
    states, errors, expected = AGREEMENT_CASES[case]
    snapshot, report_health, report_reason = with_report(fleet_keys(states, errors))
    view = FleetView.of(snapshot, KS)
    row = model_row(view, "mnist")
    described = describe_model(view, "mnist", [], [])
    summary = fleet_status(view)
    [entry] = [m for m in build_state(snapshot, KS)["models"] if m["name"] == "mnist"]
    assert report_health == expected, (case, report_reason)
    assert (row["health"], row["error"] or "") == (report_health, report_reason)
    assert (described["health"], described["error"] or "") == (report_health, report_reason)
    assert (entry["health"], entry["health_reason"]) == (report_health, report_reason)
    assert summary["models"][expected] == 1
    assert (row["serving"], row["ready"]) == (entry["serving_replicas"], entry["ready_replicas"])
    if expected != "ok":
        [problem] = summary["problems"]
        assert (problem["health"], problem["problem"]) == (report_health, report_reason)


def test_the_issue_case_shows_agent_errors_like_the_dashboard() -> None:
    states, errors, _ = AGREEMENT_CASES["version missing everywhere"]
    snapshot, _, _ = with_report(fleet_keys(states, errors))
    view = FleetView.of(snapshot, KS)
    row = model_row(view, "mnist")
    state = build_state(snapshot, KS)
    [entry] = state["models"]
    assert (row["serving"], row["ready"], row["wanted"]) == (2, 0, 2) and entry["ready_replicas"] == 0
    dashboard_agent_errors = sorted((e["host"], e["message"]) for e in state["errors"] if e["kind"] == "agent")
    assert sorted((e["host"], e["message"]) for e in row["agent_errors"]) == dashboard_agent_errors == [("h1", NOT_FOUND), ("h2", NOT_FOUND)]
    assert fleet_status(view)["problems"][0]["agent_errors"] == row["agent_errors"]
