"""Table tests of the pure rollout planner (controller/rollout.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from tfleet.controller.rollout import CANARY_LABEL, Failure, Replica, plan_rollout
from tfleet.schema import Assignment, ModelIntent, ModelStatus

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def intent(versions, labels=None, **fields) -> ModelIntent:
    return ModelIntent.model_validate(
        {"base_path": "/m", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": labels or {}, "replicas": 2, **fields}
    )


def replica(host, versions, labels=None, states=None, applied_labels=None, revision=10) -> Replica:
    assignment = Assignment.model_validate({"base_path": "/m", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": labels or {}})
    status = None
    if states is not None:
        status = ModelStatus.model_validate(
            {
                "assignment_revision": revision,
                "versions": {str(v): s if isinstance(s, dict) else {"state": s} for v, s in states.items()},
                "version_labels": applied_labels if applied_labels is not None else (labels or {}),
                "updated_at": NOW.isoformat(),
            }
        )
    return Replica(host, assignment, status, revision)


def versions_of(step, host):
    return tuple(step.assignments[host].model_version_policy.specific.versions)


def labels_of(step, host):
    return dict(step.assignments[host].version_labels)


def test_fresh_model_gets_the_target_directly() -> None:
    step = plan_rollout(intent([1], {"stable": 1}), [Replica("h1", None, None), Replica("h2", None, None)], [], NOW)
    assert step.phase == "stable"
    assert versions_of(step, "h1") == (1,) and labels_of(step, "h2") == {"stable": 1}


def test_rolling_adds_new_version_next_to_old_keeping_labels() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "adding"
    assert versions_of(step, "h1") == (1, 2)
    assert labels_of(step, "h1") == {"stable": 1}  # label stays until 2 is AVAILABLE everywhere


def test_rolling_waits_until_every_replica_has_the_new_version() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"})]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "adding" and labels_of(step, "h1") == {"stable": 1}


def test_rolling_moves_labels_once_available_everywhere() -> None:
    replicas = [replica(h, [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "labeling"
    assert versions_of(step, "h2") == (1, 2) and labels_of(step, "h2") == {"stable": 2}


def test_rolling_keeps_old_version_until_labels_are_applied() -> None:
    replicas = [
        replica("h1", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}, applied_labels={"stable": 2}),
        replica("h2", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}, applied_labels={"stable": 1}),
    ]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "labeling" and versions_of(step, "h1") == (1, 2)


def test_rolling_removes_old_version_last() -> None:
    replicas = [replica(h, [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "removing" and versions_of(step, "h1") == (2,) and labels_of(step, "h1") == {"stable": 2}


def test_done_is_stable() -> None:
    replicas = [replica(h, [2], {"stable": 2}, {2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "stable" and versions_of(step, "h1") == (2,)


def test_stale_status_does_not_count_as_available() -> None:
    # the agent has not acted on the latest assignment revision yet
    replicas = [replica(h, [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}, revision=10) for h in ("h1", "h2")]
    stale = [Replica(r.host, r.assignment, r.status, 11) for r in replicas]
    assert plan_rollout(intent([2], {"stable": 2}), stale, [], NOW).phase == "adding"


def test_failed_load_aborts_records_and_backs_off() -> None:
    failed = {"state": "END", "error_code": 13, "error_message": "corrupt saved model"}
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: failed}), replica("h2", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"})]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "backoff"
    assert versions_of(step, "h2") == (1,) and labels_of(step, "h2") == {"stable": 1}
    (failure,) = step.new_failures
    assert (failure.version, failure.host, failure.error) == (2, "h1", "corrupt saved model")
    assert failure.retry_after == NOW + dt.timedelta(seconds=300)
    assert "version 2 failed to load on h1: corrupt saved model" in step.reason


def test_backoff_holds_until_retry_after_then_tries_again() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2")]
    failure = Failure(2, "h1", "boom", NOW, NOW + dt.timedelta(seconds=60))
    held = plan_rollout(intent([2], {"stable": 2}), replicas, [failure], NOW + dt.timedelta(seconds=30))
    assert held.phase == "backoff" and versions_of(held, "h1") == (1,)
    retry = plan_rollout(intent([2], {"stable": 2}), replicas, [failure], NOW + dt.timedelta(seconds=61))
    assert retry.phase == "adding" and versions_of(retry, "h1") == (1, 2)


def test_canary_only_on_chosen_replicas_with_canary_label() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2", "h3")]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "canary_replicas": 1}), replicas, [], NOW)
    assert step.phase == "canary" and step.canary_hosts == ("h1",)
    assert versions_of(step, "h1") == (1, 2) and labels_of(step, "h1") == {"stable": 1, CANARY_LABEL: 2}
    assert versions_of(step, "h2") == (1,) and labels_of(step, "h3") == {"stable": 1}


def test_canary_stays_while_not_promoted() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary"}), replicas, [], NOW)
    assert step.phase == "canary" and versions_of(step, "h2") == (1,)


def test_canary_promote_rolls_out_everywhere() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "promote": True}), replicas, [], NOW)
    assert step.phase == "adding" and versions_of(step, "h2") == (1, 2)
    assert CANARY_LABEL not in labels_of(step, "h1")


def test_abort_takes_the_canary_version_away() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "abort": True}), replicas, [], NOW)
    assert step.phase == "aborting"
    assert versions_of(step, "h1") == (1,) and labels_of(step, "h1") == {"stable": 1}


def test_new_replica_during_rollout_gets_the_current_step() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"}), Replica("h3", None, None)]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert versions_of(step, "h3") == (1, 2)


@pytest.mark.parametrize("policy", [{"latest": {"num_versions": 2}}, {"all": {}}])
def test_latest_and_all_policies_are_passed_through(policy) -> None:
    model = ModelIntent.model_validate({"base_path": "/m", "model_version_policy": policy})
    step = plan_rollout(model, [Replica("h1", None, None)], [], NOW)
    assert step.phase == "stable" and step.assignments["h1"].model_version_policy == model.model_version_policy


def test_never_zero_available_through_a_rolling_rollout() -> None:
    """Drive a two-replica rollout step by step, simulating agents that apply each step."""
    model = intent([2], {"stable": 2})
    state = {h: ([1], {"stable": 1}) for h in ("h1", "h2")}
    for _ in range(10):
        replicas = [replica(h, v, lab, {x: "AVAILABLE" for x in v}, applied_labels=lab) for h, (v, lab) in state.items()]
        step = plan_rollout(model, replicas, [], NOW)
        for h in state:
            new_versions = list(versions_of(step, h))
            assert any(v in new_versions for v in state[h][0]), "a replica lost every version it served"
            state[h] = (new_versions, labels_of(step, h))
        if step.phase == "stable":
            break
    assert state == {h: ([2], {"stable": 2}) for h in ("h1", "h2")}
