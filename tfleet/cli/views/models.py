"""`get models`, `get versions` and `describe`: a model's row, its versions and its replicas,
judged by tfleet/health.py like the controller's report and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfleet import health as fleet_health
from tfleet.cli.views.fleet import FleetView
from tfleet.cli.views.history import history_summary
from tfleet.cli.views.text import versions_text
from tfleet.schema import HistoryEntry, ModelStatusReport, VersionRecord


def serving(report: ModelStatusReport | None) -> int:
    """Replicas where at least one version is AVAILABLE: how many can answer requests."""
    if report is None:
        return 0
    return sum(1 for r in report.replicas if fleet_health.report_serving(r))


def model_health(view: FleetView, model: str) -> fleet_health.ModelHealth:
    """tfleet/health.py's judgement, from the controller's report and the intent in etcd: the
    same as the modelstatus key's ``health`` and the dashboard's."""
    parsed = view.fleet.intents.get(model)
    return fleet_health.model_health(
        view.fleet.modelstatus.get(model), intent_exists=parsed is not None, intent_error=parsed.error if parsed is not None else None
    )


def health(view: FleetView, model: str) -> tuple[str, str]:
    """(ok | degraded | failing | unavailable | unknown | deleting, why in words)."""
    judged = model_health(view, model)
    return judged.state, judged.reason


def agent_errors(judged: fleet_health.ModelHealth) -> list[dict[str, str]]:
    return [{"host": e.host, "message": e.message} for e in judged.errors]


def model_row(view: FleetView, model: str) -> dict[str, Any]:
    parsed = view.fleet.intents.get(model)
    intent = parsed.value if parsed is not None else None
    report = view.fleet.modelstatus.get(model)
    judged = model_health(view, model)
    state, why = judged.state, judged.reason
    return {
        "name": model,
        "wanted": intent.replicas if intent is not None else (report.wanted_replicas if report else 0),
        "serving": serving(report) if report is not None else None,
        "ready": judged.ready if report is not None else None,
        "agent_errors": agent_errors(judged),
        "versions": versions_text(intent),
        "labels": dict(intent.version_labels) if intent is not None else {},
        "phase": ("deleting" if parsed is None else report.rollout.phase) if report is not None else None,
        "health": state,
        "error": why or None,
        "revision": parsed.revision if parsed is not None else None,
        "intent": intent,
        "intent_error": parsed.error if parsed is not None else None,
        "status": report,
    }


def version_rows(view: FleetView, model: str, records: Sequence[VersionRecord]) -> list[dict[str, Any]]:
    intent = view.intent(model)
    report = view.fleet.modelstatus.get(model)
    rows = []
    for record in records:
        labels = sorted(label for label, v in (intent.version_labels.items() if intent else ()) if v == record.version)
        rows.append(
            {
                "version": record.version,
                "checksum": record.checksum,
                "size_bytes": record.size_bytes,
                "created_at": record.created_at,
                "registered_at": record.registered_at,
                "registered_by": record.registered_by,
                "tags": list(record.tags),
                "labels": labels,
                "available_replicas": report.ready_replicas.get(str(record.version), 0) if report else 0,
                "path": record.path,
                "source_uri": record.source_uri,
                "source_commit": record.source_commit,
                "description": record.description,
            }
        )
    return rows


def short_checksum(checksum: str) -> str:
    algorithm, _, digest = checksum.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else checksum[:19]


def replicas_of(view: FleetView, model: str) -> list[dict[str, Any]]:
    """Every replica: from the controller's report, plus hosts holding an assignment it does
    not list (e.g. a dead host whose replica is being replaced)."""
    fleet = view.fleet
    report = fleet.modelstatus.get(model)
    rows: dict[str, dict[str, Any]] = {}
    for replica in report.replicas if report else []:
        rows[replica.host] = {
            "host": replica.host,
            "versions": dict(replica.versions),
            "labels": dict(replica.labels),
            "ready": replica.ready,
            "canary": replica.canary,
        }
    for host in sorted(fleet.holders.get(model, ())):
        if host not in rows:
            status = fleet.statuses.get((host, model))
            parsed = fleet.assignments.get((host, model))
            rows[host] = {
                "host": host,
                "versions": {v: r.state for v, r in status.versions.items()} if status else {},
                "labels": dict(status.version_labels) if status else {},
                "canary": False,
                "ready": parsed is not None and parsed.value is not None and fleet_health.replica_ready(status, parsed.revision),
            }
    result = []
    for host in sorted(rows):
        row = rows[host]
        record = fleet.hosts.get(host)
        status = fleet.statuses.get((host, model))
        assignment = fleet.assignments.get((host, model))
        row.update(
            {
                "up": record is not None,
                "host_labels": dict(record.labels) if record else {},
                "assigned_versions": versions_text(assignment.value) if assignment and assignment.value else None,
                "error": status.error if status else None,
                "version_errors": {v: r.error_message for v, r in status.versions.items() if r.error_message} if status else {},
                "errors": list(fleet_health.replica_errors(status)),
            }
        )
        result.append(row)
    return result


def describe_model(view: FleetView, model: str, versions: Sequence[VersionRecord], history: Sequence[HistoryEntry]) -> dict[str, Any]:
    parsed = view.fleet.intents.get(model)
    intent = parsed.value if parsed is not None else None
    report = view.fleet.modelstatus.get(model)
    judged = model_health(view, model)
    state, why = judged.state, judged.reason
    return {
        "name": model,
        "revision": parsed.revision if parsed is not None else None,
        "intent": intent,
        "intent_error": parsed.error if parsed is not None else None,
        "memory_mb": view.memory_mb(model, intent) if intent is not None else None,
        "memory_estimated": intent is not None and intent.memory_mb is None,
        "health": state,
        "error": why or None,
        "serving": judged.serving,
        "ready": judged.ready,
        "agent_errors": agent_errors(judged),
        "versions": version_rows(view, model, versions),
        "wanted": intent.replicas if intent is not None else None,
        "replicas": replicas_of(view, model),
        "rollout": report.rollout if report else None,
        "reasons": list(report.reasons) if report else [],
        "failures": list(report.failures) if report else [],
        "status_error": report.error if report else None,
        "status_updated_at": report.updated_at if report else None,
        "routes": view.routes.get(model),
        "history_total": len(history),
        "history": [
            {
                "sequence": e.sequence,
                "at": e.at,
                "author": e.author,
                "source": e.source,
                "action": e.action,
                "revision": e.revision,
                "summary": history_summary(e),
            }
            for e in list(history)[-5:]
        ],
    }
