"""The state of the fleet as the dashboard page shows it: pure, from a fleet snapshot to the
page's JSON state (``build_state``) and, model by model, to what changed (``StateBuilder``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tfleet.controller.snapshot import FleetSnapshot, SnapshotReader

from tfleet import health, schema
from tfleet.keyspace import Keyspace
from tfleet.schema import ModelIntent, ModelStatusReport, ReplicaStatus
from tfleet.store import Snapshot


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _policy_text(intent: ModelIntent | schema.Assignment) -> str:
    policy = intent.model_version_policy
    if policy.specific is not None:
        return "versions " + ", ".join(str(v) for v in sorted(set(policy.specific.versions)))
    if policy.all is not None:
        return "all versions"
    assert policy.latest is not None
    return "latest" if policy.latest.num_versions == 1 else f"latest {policy.latest.num_versions}"


def _intent_summary(intent: ModelIntent) -> dict[str, Any]:
    return {
        "policy": _policy_text(intent),
        "labels": dict(sorted(intent.version_labels.items())),
        "replicas": intent.replicas,
        "host_selector": dict(intent.host_selector),
        "spread_by": intent.spread_by,
        "memory_mb": intent.memory_mb,
        "strategy": intent.rollout.strategy,
        "promote": intent.rollout.promote,
        "abort": intent.rollout.abort,
        "base_path": intent.base_path,
        "owner": intent.owner,
        "description": intent.description,
    }


def _leader(fleet: FleetSnapshot) -> tuple[dict[str, Any] | None, list[str]]:
    parsed = fleet.leader
    if parsed is None:
        return None, []
    if parsed.value is None:
        return None, [parsed.error or "leader record unreadable"]
    record = parsed.value
    return {"id": record.id, "since": _iso(record.since), "version": record.version, "dashboard_address": record.dashboard_address}, []


def _cell(fleet: FleetSnapshot, host: str, model: str, report: ModelStatusReport | None) -> dict[str, Any]:
    parsed = fleet.assignments.get((host, model))
    status: ReplicaStatus | None = fleet.statuses.get((host, model))
    assigned = None
    if parsed is not None and parsed.value is not None:
        assigned = {"policy": _policy_text(parsed.value), "labels": dict(sorted(parsed.value.version_labels.items()))}
    replica = next((r for r in report.replicas if r.host == host), None) if report is not None else None
    versions = {}
    if status is not None:
        for version in sorted(status.versions, key=lambda v: (len(v), v)):
            r = status.versions[version]
            versions[version] = {"state": r.state, "error_code": r.error_code, "error_message": r.error_message}
    return {
        "assigned": assigned,
        "assignment_error": parsed.error if parsed is not None else None,
        "versions": versions,
        "labels": dict(sorted(status.version_labels.items())) if status is not None else {},
        "error": status.error if status is not None else None,
        # the agent has not reported on the latest write of the assignment yet
        "pending": parsed is not None and (status is None or status.assignment_revision != parsed.revision),
        "canary": bool(replica and replica.canary),
        "updated_at": _iso(status.updated_at) if status is not None else None,
        # tfleet/health.py's words, as the CLI and modelstatus use them
        "ready": parsed is not None and parsed.value is not None and health.replica_ready(status, parsed.revision),
        "serving": health.replica_serving(status),
        "errors": list(health.replica_errors(status)),
    }


def _serving(cell: dict[str, Any]) -> bool:
    """The cell's replica is ready (tfleet/health.py decides)."""
    return bool(cell["ready"])


@dataclass(frozen=True)
class ModelPart:
    """What the page shows about one model: its entry, its row of cells, its errors.

    It depends only on the model's own keys (intent, modelstatus, versions, assignments and
    status keys of the model), so it is rebuilt only when one changed.
    """

    entry: dict[str, Any]
    row: dict[str, dict[str, Any]]
    errors: tuple[dict[str, Any], ...]
    states: dict[str, int]


def _problem(kind: str, message: str, model: str | None = None, host: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "model": model, "host": host, "message": message}


def _model_part(fleet: FleetSnapshot, name: str, reporters: set[str]) -> ModelPart:
    parsed = fleet.intents.get(name)
    intent = parsed.value if parsed is not None else None
    report = fleet.modelstatus.get(name)
    errors: list[dict[str, Any]] = []
    states: dict[str, int] = {}
    row: dict[str, dict[str, Any]] = {}
    for host in sorted(fleet.holders.get(name, set()) | reporters):
        row[host] = cell = _cell(fleet, host, name, report)
        for version in cell["versions"].values():
            states[version["state"]] = states.get(version["state"], 0) + 1
        if cell["assignment_error"]:
            errors.append(_problem("assignment", cell["assignment_error"], name, host))
        for message in cell["errors"]:
            errors.append(_problem("agent", message, name, host))
    if report is not None:
        ready = sum(1 for r in report.replicas if r.ready)
        wanted = report.wanted_replicas
        available = dict(report.ready_replicas)
    else:
        ready = sum(1 for c in row.values() if _serving(c))
        wanted = intent.replicas if intent is not None else len(fleet.holders.get(name, ()))
        available = {}
        for c in row.values():
            for version, v in c["versions"].items():
                if v["state"] == "AVAILABLE":
                    available[version] = available.get(version, 0) + 1
    rollout = None
    if report is not None:
        rollout = {
            "phase": report.rollout.phase,
            "from_versions": list(report.rollout.from_versions),
            "to_versions": list(report.rollout.to_versions),
            "reason": report.rollout.reason,
        }
    intent_error = parsed.error if parsed is not None else None
    error = report.error if report is not None and report.error else intent_error
    judged = health.model_health(report, intent_exists=parsed is not None, intent_error=intent_error)
    if error:
        errors.append(_problem("intent", error, name))
    for reason in report.reasons if report is not None else ():
        errors.append(_problem("placement", reason, name))
    failures: list[dict[str, Any]] = [
        {"version": f.version, "host": f.host, "error": f.error, "at": _iso(f.at), "retry_after": _iso(f.retry_after)}
        for f in (report.failures if report is not None else ())
    ]
    for f in failures:
        errors.append(
            _problem("failure", f"version {f['version']} failed to load on {f['host']}: {f['error']} (retry after {f['retry_after']})", name, f["host"])
        )
    entry = {
        "name": name,
        "managed": parsed is not None or report is not None,
        "intent": _intent_summary(intent) if intent is not None else None,
        "intent_revision": parsed.revision if parsed is not None else None,
        "error": error,
        "wanted_replicas": wanted,
        "ready_replicas": ready,
        "serving_replicas": judged.serving if report is not None else sum(1 for c in row.values() if c["serving"]),
        "health": judged.state,
        "health_reason": judged.reason,
        "available": dict(sorted(available.items(), key=lambda item: (len(item[0]), item[0]))),
        "rollout": rollout,
        "reasons": list(report.reasons) if report is not None else [],
        "failures": failures,
        "replicas": [r.model_dump(mode="json") for r in report.replicas] if report is not None else [],
        "status_updated_at": _iso(report.updated_at) if report is not None else None,
        "versions_registered": sorted(fleet.versions.get(name, {})),
    }
    return ModelPart(entry, row, tuple(errors), states)


def _hosts(fleet: FleetSnapshot, host_names: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hosts, errors = [], []
    for name in sorted(host_names):
        record = fleet.hosts.get(name)
        control = fleet.hostctl.get(name)
        hosts.append(
            {
                "name": name,
                "alive": record is not None,
                "grpc_address": record.grpc_address if record else None,
                "rest_address": record.rest_address if record else None,
                "memory_mb": record.memory_mb if record else None,
                "labels": dict(sorted(record.labels.items())) if record else {},
                "agent_version": record.agent_version if record else None,
                "started_at": _iso(record.started_at) if record else None,
                "cordoned": bool(control and control.cordoned),
                "draining": bool(control and control.draining),
                "control_reason": control.reason if control else "",
                "models": len(fleet.held_by.get(name, ())),
            }
        )
        if record is None and fleet.held_by.get(name):
            errors.append(_problem("host", f"host {name} holds {len(fleet.held_by[name])} assignment(s) but has no live agent (no host record)", host=name))
    return hosts, errors


class StateBuilder:
    """Builds states one fleet snapshot after another, rebuilding only the models whose keys
    changed (the snapshot's ``changed_models``; None: all).

    ``build`` gives exactly what ``build_state`` gives for the same snapshot (a unit test
    pins it); ``changed`` then names the models whose part differs from the previous build
    (added, changed or removed), which is what the live stream sends.
    """

    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self._reader: SnapshotReader | None = None
        self._parts: dict[str, ModelPart] = {}
        self.parts: dict[str, ModelPart] = {}
        self.changed: frozenset[str] = frozenset()

    def build(self, snapshot: Snapshot) -> dict[str, Any]:
        """From whole snapshots one after another (tests, one-shot use)."""
        if self._reader is None:
            self._reader = SnapshotReader(self._ks)
        return self.build_fleet(self._reader.read(snapshot))

    def build_fleet(self, fleet: FleetSnapshot) -> dict[str, Any]:
        leader, extra_problems = _leader(fleet)
        model_names = set(fleet.intents) | set(fleet.modelstatus) | set(fleet.holders) | {m for _, m in fleet.statuses}
        host_names = set(fleet.hosts) | set(fleet.hostctl) | set(fleet.held_by) | {h for h, _ in fleet.statuses}
        reporters: dict[str, set[str]] = {}  # model -> hosts with a status key of it
        for host, model in fleet.statuses:
            reporters.setdefault(model, set()).add(host)
        changed_models = fleet.changed_models  # None: everything changed
        previous, parts = self._parts, {}
        for name in sorted(model_names):
            part = previous.get(name)
            if part is None or changed_models is None or name in changed_models:
                part = _model_part(fleet, name, reporters.get(name, set()))
            parts[name] = part
        self.changed = frozenset(name for name in parts.keys() | previous.keys() if parts.get(name) is not previous.get(name))
        self._parts = self.parts = parts

        hosts, errors = _hosts(fleet, host_names)
        rollouts: list[dict[str, Any]] = []
        states: dict[str, int] = {}
        for name, part in parts.items():
            errors.extend(part.errors)
            for state, count in part.states.items():
                states[state] = states.get(state, 0) + count
            rollout = part.entry["rollout"]
            if rollout is not None and rollout["phase"] != "stable":
                rollouts.append({"model": name, **rollout})
        errors.extend(_problem("key", message) for message in [*fleet.problems, *extra_problems])
        return {
            "prefix": self._ks.prefix,
            "revision": fleet.revision,
            "leader": leader,
            "hosts": hosts,
            "models": [part.entry for part in parts.values()],
            "cells": {name: part.row for name, part in parts.items()},
            "rollouts": rollouts,
            "errors": errors,
            "summary": {
                "hosts": len(host_names),
                "hosts_alive": len(fleet.hosts),
                "models": len(model_names),
                "versions": dict(sorted(states.items())),
                "rollouts": len(rollouts),
                "errors": len(errors),
            },
        }


def build_state(snapshot: Snapshot, keyspace: Keyspace) -> dict[str, Any]:
    """The whole fleet as the dashboard shows it, from one snapshot of the prefix.

    Pure: the same snapshot gives the same JSON-ready dict. Errors are listed per host, then
    per model (in name order), then keys that could not be read.
    """
    return StateBuilder(keyspace).build(snapshot)
