"""`tfleet apply --dry-run`: what the controller's next pass would do if the given intents and
host controls were written, planned by the controller's own planner."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from tfleet.cli.views.fleet import FleetView
from tfleet.cli.views.text import json_text, labels_text, numbers, versions_text
from tfleet.controller.planner import ControllerPlan, plan
from tfleet.controller.snapshot import Parsed
from tfleet.jsondiff import diff_values
from tfleet.schema import Assignment, HostControl, ModelIntent


def _writes(result: ControllerPlan, model: str) -> tuple[dict[str, Assignment], list[str]]:
    puts = {host: a for (host, m), a in result.puts.items() if m == model}
    deletes = sorted(host for host, m in result.deletes if m == model)
    return puts, deletes


def _assignment_text(assignment: Assignment) -> str:
    labels = f"; labels {labels_text(assignment.version_labels)}" if assignment.version_labels else ""
    return f"versions {versions_text(assignment)}{labels}"


def dry_run(
    view: FleetView,
    intents: Mapping[str, ModelIntent],
    controls: Mapping[str, HostControl],
    now: dt.datetime,
    last_valid: Mapping[str, ModelIntent] | None = None,
) -> dict[str, Any]:
    """What the controller's next pass would do if these intents and host controls were
    written: per model, its placement, the rollout step, the assignment writes and reasons.
    ``last_valid`` stands in for the controller's memory of invalid intents' last valid ones."""
    fleet = view.fleet
    last_valid = last_valid or {}
    before = plan(fleet, last_valid, now)
    changed = dataclasses.replace(fleet, intents=dict(fleet.intents), hostctl=dict(fleet.hostctl))
    for name, intent in intents.items():
        current = fleet.intents.get(name)
        changed.intents[name] = Parsed(intent, None, current.revision if current else 0)
    for host, control in controls.items():
        changed.hostctl[host] = control
    after = plan(changed, last_valid, now)

    models = []
    for name, intent in intents.items():
        current = fleet.intents.get(name)
        old = None
        if current is not None:
            old = current.value.model_dump(mode="json") if current.value is not None else _json_or_none(current.raw)
        new = intent.model_dump(mode="json")
        action = "create" if current is None else ("unchanged" if current.value == intent else "update")
        changes = [dataclasses.asdict(c) for c in diff_values(old if isinstance(old, dict) else None, new)] if action == "update" else []
        models.append({**_model_plan(after, name, action, changes, intent.replicas), "versions": versions_text(intent)})
    hosts = []
    for host, control in controls.items():
        current_control = fleet.hostctl.get(host)
        action = "create" if current_control is None else ("unchanged" if current_control == control else "update")
        hosts.append({"name": host, "action": action, "live": host in fleet.hosts, "control": control})
    affected = []
    for name in sorted(set(m for _, m in (*before.puts, *after.puts, *before.deletes, *after.deletes))):
        if name in intents:
            continue
        if _writes(before, name) != _writes(after, name):
            models_intent = view.intent(name)
            affected.append(
                {**_model_plan(after, name, "affected", [], models_intent.replicas if models_intent else 0), "versions": versions_text(models_intent)}
            )
    return {"revision": fleet.revision, "models": models, "hosts": hosts, "affected": affected}


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # any bytes may be in etcd (a value nested 100,000 deep)
        return None


def _model_plan(result: ControllerPlan, name: str, action: str, changes: list[dict[str, Any]], wanted: int) -> dict[str, Any]:
    report = result.reports.get(name)
    puts, deletes = _writes(result, name)
    return {
        "name": name,
        "action": action,
        "changes": changes,
        "wanted": wanted,
        "hosts": [r.host for r in report.replicas] if report else [],
        "rollout": report.rollout if report else None,
        "reasons": list(report.reasons) if report else [],
        "error": report.error if report else None,
        "puts": {host: {"versions": versions_text(a), "labels": dict(a.version_labels), "assignment": a} for host, a in sorted(puts.items())},
        "deletes": deletes,
    }


def dry_run_text(result: Mapping[str, Any]) -> str:
    lines = []
    for item in [*result["models"], *result["affected"]]:
        head = f"model {item['name']}: {item['action']}"
        if item["action"] == "create":
            head += f" (versions {item['versions']}, {item['wanted']} replica{'s' if item['wanted'] != 1 else ''})"
        if item["changes"]:
            head += (
                " ("
                + "; ".join(f"{c['path']}: {json_text(c['old'])} -> {json_text(c['new'])}" for c in item["changes"][:6])
                + (f"; +{len(item['changes']) - 6} more" if len(item["changes"]) > 6 else "")
                + ")"
            )
        lines.append(head)
        hosts = item["hosts"]
        lines.append(f"  placement: {', '.join(hosts) if hosts else 'no host'} ({len(hosts)} of {item['wanted']} wanted)")
        rollout = item["rollout"]
        if rollout is not None:
            if rollout.phase == "stable":
                lines.append(f"  rollout:   stable, versions {numbers(rollout.to_versions)}" if rollout.to_versions else "  rollout:   stable")
            else:
                lines.append(f"  rollout:   {rollout.phase}, {numbers(rollout.from_versions)} -> {numbers(rollout.to_versions)}: {rollout.reason}")
        writes = [f"put {host} ({_assignment_text(p['assignment'])})" for host, p in item["puts"].items()]
        writes += [f"delete {host}" for host in item["deletes"]]
        lines.append(f"  writes:    {'; '.join(writes) if writes else 'none'}")
        for reason in item["reasons"]:
            lines.append(f"  reason:    {reason}")
        if item["error"]:
            lines.append(f"  error:     {item['error']}")
    for host in result["hosts"]:
        control = host["control"]
        flags = [name for name in ("cordoned", "draining") if getattr(control, name)] or ["schedulable"]
        reason = f" (reason: {control.reason})" if control.reason else ""
        live = "" if host["live"] else "; no live host has this name"
        lines.append(f"host {host['name']}: {host['action']}, {', '.join(flags)}{reason}{live}")
    return "\n".join(lines)
