"""`tfleet status`: the fleet in one document (hosts, model health counts, rollouts, problems)."""

from __future__ import annotations

from typing import Any

from tfleet import health as fleet_health
from tfleet.cli.views.fleet import FleetView
from tfleet.cli.views.models import agent_errors, model_health


def fleet_status(view: FleetView) -> dict[str, Any]:
    fleet = view.fleet
    counts: dict[str, int] = {state: 0 for state in fleet_health.STATES}
    problems = []
    rollouts = []
    for model in view.models():
        judged = model_health(view, model)
        state, why = judged.state, judged.reason
        counts[state] += 1
        if state in (fleet_health.DEGRADED, fleet_health.FAILING, fleet_health.UNAVAILABLE):
            problems.append({"model": model, "health": state, "problem": why, "agent_errors": agent_errors(judged)})
        report = fleet.modelstatus.get(model)
        if report is not None and report.rollout.phase != "stable" and model in fleet.intents:
            rollouts.append(
                {
                    "model": model,
                    "phase": report.rollout.phase,
                    "from": report.rollout.from_versions,
                    "to": report.rollout.to_versions,
                    "reason": report.rollout.reason,
                }
            )
    return {
        "revision": fleet.revision,
        "leader": view.leader,
        "hosts": {
            "up": len(fleet.hosts),
            "down": sum(1 for h in view.hosts() if h not in fleet.hosts),
            "cordoned": sum(1 for h, c in fleet.hostctl.items() if c.cordoned and not c.draining),
            "draining": sum(1 for c in fleet.hostctl.values() if c.draining),
        },
        "models": {"total": len(view.models()), **counts},
        "rollouts": rollouts,
        "problems": problems,
        "invalid_keys": [fleet.bad_values[key] for key in sorted(fleet.bad_values)],  # what <prefix>/problems lists
    }
