"""The canary's reason tells the operator the command to run (issue item 9), not a field to set."""

from __future__ import annotations

from tests.unit.test_rollout import NOW, intent, replica
from tfleet.controller.rollout import plan_rollout


def test_canary_reason_names_the_promote_and_abort_commands() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary"}), replicas, [], NOW)
    assert step.phase == "canary"
    assert "`tfleet rollout promote <model>`" in step.reason and "`tfleet rollout abort <model>`" in step.reason
    assert "set rollout.promote" not in step.reason
