"""`get hosts`: a host's state, controls, memory and the models it serves."""

from __future__ import annotations

from typing import Any

from tfleet import health as fleet_health
from tfleet.cli.views.fleet import FleetView


def host_row(view: FleetView, host: str) -> dict[str, Any]:
    fleet = view.fleet
    record = fleet.hosts.get(host)
    control = fleet.hostctl.get(host)
    used = 0
    for model in sorted(fleet.held_by.get(host, ())):
        intent = view.intent(model)
        if intent is not None:
            used += view.memory_mb(model, intent)
    served = sorted(model for (h, model), status in fleet.statuses.items() if h == host and fleet_health.replica_serving(status))
    state = ["up" if record is not None else "down"]
    if control is not None and control.draining:
        state.append("draining")
    elif control is not None and control.cordoned:
        state.append("cordoned")
    return {
        "name": host,
        "state": ", ".join(state),
        "up": record is not None,
        "grpc_address": record.grpc_address if record else None,
        "labels": dict(record.labels) if record else {},
        "memory_mb": record.memory_mb if record else None,
        "memory_used_mb": used,
        "agent_version": record.agent_version if record else None,
        "models": served,
        "assigned": sorted(fleet.held_by.get(host, ())),
        "cordoned": bool(control and control.cordoned),
        "draining": bool(control and control.draining),
        "reason": control.reason if control else "",
    }
