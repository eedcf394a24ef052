"""`tfleet wait`'s readiness rule (README's declare block waits with it, issue item 9)."""

from __future__ import annotations

import datetime as dt

from tfleet.health import intent_ready as readiness
from tfleet.schema import ModelIntent, ModelStatusReport

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
INTENT = ModelIntent.model_validate({"base_path": "/m", "model_version_policy": {"specific": {"versions": [2]}}, "replicas": 2})


def report(revision: int = 7, ready: dict[str, int] | None = None, phase: str = "stable", error: str | None = None) -> ModelStatusReport:
    return ModelStatusReport.model_validate(
        {
            "intent_revision": revision,
            "wanted_replicas": 2,
            "ready_replicas": ready or {},
            "rollout": {"phase": phase},
            "error": error,
            "updated_at": NOW.isoformat(),
        }
    )


def test_ready_only_when_the_report_is_about_this_intent_and_every_replica_serves() -> None:
    assert readiness(INTENT, 7, None) == (False, "no report from the controller yet")
    assert readiness(INTENT, 7, report(revision=5, ready={"2": 2}))[0] is False  # written before the last change
    assert readiness(INTENT, 7, report(ready={"2": 1})) == (False, "version 2: 1/2 replicas ready")
    assert readiness(INTENT, 7, report(ready={"2": 2}, phase="adding"))[0] is False
    assert readiness(INTENT, 7, report(ready={"2": 2}, error="no host fits"))[0] is False
    assert readiness(INTENT, 7, report(ready={"2": 2})) == (True, "version 2: 2/2 replicas ready")
