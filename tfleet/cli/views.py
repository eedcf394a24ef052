"""What the operator commands show, computed from one consistent read of the fleet.

Pure: every function takes a FleetView (one etcd snapshot of the whole prefix, parsed by the
controller's own snapshot reader) and plain values, and returns rows, documents or sentences.
No etcd, no click, no printing: ops.py does those.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tfleet.controller.placement import Placement, place
from tfleet.controller.planner import (
    ControllerPlan,
    effective_intents,
    estimate_memory_mb,
    holders_by_model,
    placement_input,
    plan,
)
from tfleet.controller.snapshot import FleetSnapshot, Parsed, read
from tfleet.keyspace import Keyspace
from tfleet.registry import diff_values
from tfleet.schema import (
    Assignment,
    HistoryEntry,
    HostControl,
    LeaderRecord,
    ModelIntent,
    ModelStatusReport,
    RouteTable,
    SchemaError,
    VersionRecord,
    parse,
)
from tfleet.store import Snapshot


@dataclass
class FleetView:
    """The fleet as of one etcd revision: the controller's parsed snapshot plus the keys it
    does not plan with (leader, routes)."""

    keyspace: Keyspace
    fleet: FleetSnapshot
    leader: LeaderRecord | None
    routes: dict[str, RouteTable]
    hostctl_revisions: dict[str, int]

    @classmethod
    def of(cls, snapshot: Snapshot, keyspace: Keyspace) -> FleetView:
        leader = None
        kv = snapshot.get(keyspace.leader())
        if kv is not None:
            try:
                leader = parse(LeaderRecord, kv.value, kv.key)
            except SchemaError:
                leader = None
        routes: dict[str, RouteTable] = {}
        hostctl_revisions: dict[str, int] = {}
        routes_prefix, hostctl_prefix = keyspace.routes_prefix(), keyspace.hostctl_prefix()
        for item in snapshot.items:
            if item.key.startswith(routes_prefix):
                try:
                    routes[item.key[len(routes_prefix):]] = parse(RouteTable, item.value, item.key)
                except SchemaError:
                    continue
            elif item.key.startswith(hostctl_prefix):
                hostctl_revisions[item.key[len(hostctl_prefix):]] = item.mod_revision
        return cls(keyspace, read(snapshot, keyspace), leader, routes, hostctl_revisions)

    @property
    def revision(self) -> int:
        return self.fleet.revision

    def models(self) -> list[str]:
        """Models the controller manages: every intent, and every model it still reports on."""
        return sorted(set(self.fleet.intents) | set(self.fleet.modelstatus))

    def knows_model(self, model: str) -> bool:
        """Anything in etcd names the model: an intent, a report, an assignment, a status,
        a registered version or a route table."""
        fleet = self.fleet
        return (model in fleet.intents or model in fleet.modelstatus or bool(fleet.holders.get(model)) or model in fleet.versions
                or model in self.routes or any(name == model for _, name in fleet.statuses))

    def hosts(self) -> list[str]:
        """Live hosts, hosts with operator controls, and hosts still holding assignments."""
        names = set(self.fleet.hosts) | set(self.fleet.hostctl) | {h for h, models in self.fleet.held_by.items() if models}
        names |= {host for host, _ in self.fleet.statuses}
        return sorted(names)

    def invalid_intents(self) -> list[str]:
        return sorted(name for name, parsed in self.fleet.intents.items() if parsed.value is None)

    def intent(self, model: str) -> ModelIntent | None:
        parsed = self.fleet.intents.get(model)
        return parsed.value if parsed is not None else None

    def memory_mb(self, model: str, intent: ModelIntent) -> int:
        return estimate_memory_mb(intent, self.fleet.versions.get(model, {}))


# -- small formatting helpers ------------------------------------------------------------------


def versions_text(intent: ModelIntent | Assignment | None) -> str:
    if intent is None:
        return "-"
    policy = intent.model_version_policy
    if policy.specific is not None:
        return ",".join(str(v) for v in sorted(set(policy.specific.versions)))
    if policy.latest is not None:
        return f"latest {policy.latest.num_versions}"
    return "all"


def versions_phrase(intent: ModelIntent) -> str:
    """"version 3", "versions 3, 4", "the latest version", "all versions"."""
    policy = intent.model_version_policy
    if policy.specific is not None:
        versions = sorted(set(policy.specific.versions))
        return f"version{'s' if len(versions) > 1 else ''} {numbers(versions)}"
    if policy.latest is not None:
        n = policy.latest.num_versions
        return "the latest version" if n == 1 else f"the latest {n} versions"
    return "all versions"


def labels_text(labels: Mapping[str, int] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "-"


def pairs_text(pairs: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((pairs or {}).items())) or "-"


def numbers(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def _value(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def changes_text(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, limit: int | None = None) -> str:
    changes = diff_values(old, new)
    parts = [f"{c.path}: {_value(c.old)} -> {_value(c.new)}" for c in changes]
    if limit is not None and len(parts) > limit:
        parts = parts[:limit] + [f"(+{len(changes) - limit} more)"]
    return "; ".join(parts)


def history_summary(entry: HistoryEntry) -> str:
    if entry.action == "delete":
        return "intent deleted"
    if entry.previous is None:
        return "intent created" if entry.action == "create" else "intent restored"
    return changes_text(entry.previous, entry.new, limit=3) or "no change"


def who(entry: HistoryEntry) -> str:
    if entry.author:
        return f"{entry.author} via {entry.source}"
    return "etcdctl" if entry.source == "etcd" else "unnamed"


def serving(report: ModelStatusReport | None) -> int:
    """Replicas where at least one version is AVAILABLE: how many can answer requests."""
    if report is None:
        return 0
    return sum(1 for r in report.replicas if any(state == "AVAILABLE" for state in r.versions.values()))


# -- models -------------------------------------------------------------------------------------


def health(view: FleetView, model: str) -> tuple[str, str]:
    """("ok" | "degraded" | "failing" | "unknown" | "deleting", why in words)."""
    parsed = view.fleet.intents.get(model)
    report = view.fleet.modelstatus.get(model)
    if parsed is None:
        return "deleting", "the intent was deleted; its replicas are being removed"
    if parsed.error is not None:
        return "failing", f"invalid intent: {parsed.error}"
    if report is None:
        return "unknown", "no report from the controller yet"
    if report.error:
        return "failing", report.error
    intent = parsed.value
    assert intent is not None
    up = serving(report)
    failure = report.failures[-1] if report.failures else None
    failure_text = f"version {failure.version} failed to load on {failure.host}: {failure.error}" if failure else ""
    if intent.replicas > 0 and up == 0:
        return "failing", failure_text or (report.reasons[0] if report.reasons else "no replica serves any version")
    if up < intent.replicas:
        return "degraded", (report.reasons[0] if report.reasons else f"{up} of {intent.replicas} replicas serve") + (f"; {failure_text}" if failure_text else "")
    if failure_text:
        return "degraded", failure_text
    return "ok", ""


def model_row(view: FleetView, model: str) -> dict[str, Any]:
    parsed = view.fleet.intents.get(model)
    intent = parsed.value if parsed is not None else None
    report = view.fleet.modelstatus.get(model)
    state, why = health(view, model)
    return {
        "name": model,
        "wanted": intent.replicas if intent is not None else (report.wanted_replicas if report else 0),
        "serving": serving(report) if report is not None else None,
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


# -- hosts --------------------------------------------------------------------------------------


def host_row(view: FleetView, host: str) -> dict[str, Any]:
    fleet = view.fleet
    record = fleet.hosts.get(host)
    control = fleet.hostctl.get(host)
    used = 0
    for model in sorted(fleet.held_by.get(host, ())):
        intent = view.intent(model)
        if intent is not None:
            used += view.memory_mb(model, intent)
    served = sorted(
        model for (h, model), status in fleet.statuses.items()
        if h == host and any(report.state == "AVAILABLE" for report in status.versions.values())
    )
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


# -- versions -----------------------------------------------------------------------------------


def version_rows(view: FleetView, model: str, records: Sequence[VersionRecord]) -> list[dict[str, Any]]:
    intent = view.intent(model)
    report = view.fleet.modelstatus.get(model)
    rows = []
    for record in records:
        labels = sorted(label for label, v in (intent.version_labels.items() if intent else ()) if v == record.version)
        rows.append({
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
        })
    return rows


def short_checksum(checksum: str) -> str:
    algorithm, _, digest = checksum.partition(":")
    return f"{algorithm}:{digest[:12]}" if digest else checksum[:19]


# -- describe -----------------------------------------------------------------------------------


def replicas_of(view: FleetView, model: str) -> list[dict[str, Any]]:
    """Every replica: from the controller's report, plus hosts holding an assignment it does
    not list (e.g. a dead host whose replica is being replaced)."""
    fleet = view.fleet
    report = fleet.modelstatus.get(model)
    rows: dict[str, dict[str, Any]] = {}
    for replica in report.replicas if report else []:
        rows[replica.host] = {"host": replica.host, "versions": dict(replica.versions), "labels": dict(replica.labels),
                              "ready": replica.ready, "canary": replica.canary}
    for host in sorted(fleet.holders.get(model, ())):
        if host not in rows:
            status = fleet.statuses.get((host, model))
            rows[host] = {"host": host, "versions": {v: r.state for v, r in status.versions.items()} if status else {},
                          "labels": dict(status.version_labels) if status else {}, "ready": False, "canary": False}
    result = []
    for host in sorted(rows):
        row = rows[host]
        record = fleet.hosts.get(host)
        status = fleet.statuses.get((host, model))
        assignment = fleet.assignments.get((host, model))
        row.update({
            "up": record is not None,
            "host_labels": dict(record.labels) if record else {},
            "assigned_versions": versions_text(assignment.value) if assignment and assignment.value else None,
            "error": status.error if status else None,
            "version_errors": {v: r.error_message for v, r in status.versions.items() if r.error_message} if status else {},
        })
        result.append(row)
    return result


def describe_model(view: FleetView, model: str, versions: Sequence[VersionRecord], history: Sequence[HistoryEntry]) -> dict[str, Any]:
    parsed = view.fleet.intents.get(model)
    intent = parsed.value if parsed is not None else None
    report = view.fleet.modelstatus.get(model)
    state, why = health(view, model)
    return {
        "name": model,
        "revision": parsed.revision if parsed is not None else None,
        "intent": intent,
        "intent_error": parsed.error if parsed is not None else None,
        "memory_mb": view.memory_mb(model, intent) if intent is not None else None,
        "memory_estimated": intent is not None and intent.memory_mb is None,
        "health": state,
        "error": why or None,
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
        "history": [{"sequence": e.sequence, "at": e.at, "author": e.author, "source": e.source, "action": e.action,
                     "revision": e.revision, "summary": history_summary(e)} for e in list(history)[-5:]],
    }


# -- status -------------------------------------------------------------------------------------


def fleet_status(view: FleetView) -> dict[str, Any]:
    fleet = view.fleet
    counts: dict[str, int] = {"ok": 0, "degraded": 0, "failing": 0, "unknown": 0, "deleting": 0}
    problems = []
    rollouts = []
    for model in view.models():
        state, why = health(view, model)
        counts[state] += 1
        if state in ("degraded", "failing"):
            problems.append({"model": model, "health": state, "problem": why})
        report = fleet.modelstatus.get(model)
        if report is not None and report.rollout.phase != "stable" and model in fleet.intents:
            rollouts.append({"model": model, "phase": report.rollout.phase, "from": report.rollout.from_versions,
                             "to": report.rollout.to_versions, "reason": report.rollout.reason})
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


# -- explain ------------------------------------------------------------------------------------


def _placement(fleet: FleetSnapshot, last_valid: Mapping[str, ModelIntent]) -> Placement:
    intents = effective_intents(fleet, last_valid)
    managed = set(intents) | set(fleet.modelstatus)
    return place(placement_input(fleet, intents, holders_by_model(fleet, managed)))


def _states_text(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{v} {state}" for v, state in sorted(versions.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0)) or "no version yet"


def explain_model(view: FleetView, model: str, now: dt.datetime, last_valid: Mapping[str, ModelIntent] | None = None) -> list[str]:
    """Why the model is (or is not) where it is, in plain sentences. ``last_valid``: the last
    valid intent of models whose intent in etcd is invalid (the controller keeps serving it)."""
    fleet = view.fleet
    out: list[str] = []
    parsed = fleet.intents.get(model)
    report = fleet.modelstatus.get(model)
    holders = sorted(fleet.holders.get(model, ()))

    if view.leader is None:
        out.append("No controller leads this fleet (no leader key): nothing changes until one runs (tfleet controller).")
    if parsed is None:
        if holders:
            out.append(f"{model} has no intent (models/{model} is absent)" + (
                f": the controller removes its remaining replicas on {', '.join(holders)}." if report is not None
                else f"; the assignments on {', '.join(holders)} were written by hand and the controller leaves them alone."))
        else:
            out.append(f"{model} has no intent: nothing of it is placed.")
        return out + _replica_sentences(view, model, holders)
    if parsed.error is not None:
        out.append(f"The intent in etcd is invalid: {parsed.error}. The controller keeps serving the last valid intent it saw, if any; fix the intent (tfleet history {model}, tfleet rollback {model}).")
        previous = (last_valid or {}).get(model)
        if previous is not None:
            out.append(f"The last valid intent in the history wants {previous.replicas} replica{'s' if previous.replicas != 1 else ''} of {versions_phrase(previous)}.")
        return out + _replica_sentences(view, model, holders)

    intent = parsed.value
    assert intent is not None
    memory = view.memory_mb(model, intent)
    if intent.memory_mb is not None:
        memory_why = "from memory_mb in the intent"
    elif fleet.versions.get(model):
        memory_why = "estimated: no memory_mb in the intent, so twice the largest registered version"
    else:
        memory_why = "a default: no memory_mb in the intent and no registered version to size it by"
    labels = f" with labels {labels_text(intent.version_labels)}" if intent.version_labels else ""
    out.append(f"{model} wants {intent.replicas} replica{'s' if intent.replicas != 1 else ''} of {versions_phrase(intent)}{labels}, "
               f"each needing {memory} MB ({memory_why}).")

    # hosts: selector, controls, memory
    placement = _placement(fleet, last_valid or {})
    placed = placement.hosts.get(model, ())
    live = sorted(fleet.hosts)
    if not live:
        out.append("No host is live (no hosts/ keys): start agents (tfleet agent) to serve anything.")
    selector = intent.host_selector
    matching = [h for h in live if all(fleet.hosts[h].labels.get(k) == v for k, v in selector.items())]
    if selector:
        others = [h for h in live if h not in matching]
        text = f"Its host selector {pairs_text(selector)} matches {len(matching)} of {len(live)} live hosts"
        text += f" ({', '.join(matching)})" if matching else ""
        if others:
            text += "; not " + ", ".join(f"{h} ({pairs_text(fleet.hosts[h].labels)})" for h in others)
        out.append(text + ".")
    elif live:
        out.append(f"It has no host selector: all {len(live)} live hosts are candidates ({', '.join(live)}).")
    for host in matching:
        record = fleet.hosts[host]
        control = fleet.hostctl.get(host)
        free = placement.free_memory_mb.get(host, record.memory_mb)
        facts = f"{record.memory_mb} MB offered, {free} MB free after placement"
        if host in placed:
            what = "holds a replica" if host in holders else "gets a new replica"
            if control is not None and control.draining:
                what = "is draining: its replica stays until a replacement is ready, then goes"
        elif control is not None and control.draining:
            what = "is draining: it takes no replica"
        elif control is not None and control.cordoned:
            what = "is cordoned: it takes no new replica"
        elif free < memory and host not in holders:
            what = f"has too little free memory for a replica ({free} MB < {memory} MB)"
        else:
            what = "could take a replica, but the wanted number is placed elsewhere"
        if control is not None and control.reason:
            what += f" (reason: {control.reason})"
        out.append(f"{host} {what}; {facts}.")
    if intent.spread_by:
        groups: dict[str, list[str]] = {}
        for host in placed:
            record = fleet.hosts.get(host)
            groups.setdefault(record.labels.get(intent.spread_by, "") if record else "", []).append(host)
        spread = "; ".join(f"{value or '(no label)'}: {', '.join(hosts)}" for value, hosts in sorted(groups.items()))
        out.append(f"Replicas spread over host label {intent.spread_by}: {spread or 'none placed'}.")
    if placed:
        out.append(f"The placement puts it on {', '.join(placed)}.")
    elif intent.replicas:
        out.append("The placement puts it nowhere.")
    for reason in placement.reasons.get(model, ()):
        out.append(f"Short of replicas: {reason}.")
    for note in placement.notes.get(model, ()):
        out.append(f"Moving: {note}.")
    out.extend(_replica_sentences(view, model, holders))

    # rollout, as the controller reports it
    if report is None:
        out.append(f"The controller has not reported on {model} yet (no modelstatus/{model} key)." if view.leader else
                   f"No controller report on {model} (no modelstatus/{model} key).")
    else:
        if report.intent_revision is not None and report.intent_revision != parsed.revision:
            out.append(f"The controller's report is about intent revision {report.intent_revision}; the intent is at revision {parsed.revision}: it has not caught up yet.")
        rollout = report.rollout
        if rollout.phase == "stable":
            out.append(f"No rollout in progress: the replicas serve version{'s' if len(rollout.to_versions) > 1 else ''} {numbers(rollout.to_versions)}." if rollout.to_versions else "No rollout in progress.")
        else:
            out.append(f"Rollout phase {rollout.phase}, from version {numbers(rollout.from_versions)} to {numbers(rollout.to_versions)}: {rollout.reason or 'no reason given'}.")
        for failure in report.failures:
            later = "may be tried again" if failure.retry_after <= now else "is not tried again before"
            out.append(f"Version {failure.version} failed to load on {failure.host} at {_time(failure.at)}: {failure.error}; it {later} {_time(failure.retry_after)}.")
        if report.error:
            out.append(f"The controller reports: {report.error}.")
    routes = view.routes.get(model)
    if routes is not None:
        by_version = "; ".join(f"version {v} on {', '.join(e.host for e in eps) or 'no host'}" for v, eps in sorted(routes.versions.items()))
        by_label = "; ".join(f"label {label} on {', '.join(e.host for e in eps) or 'no host'}" for label, eps in sorted(routes.labels.items()))
        out.append(f"Requests are routed to: {'; '.join(p for p in (by_version, by_label) if p) or 'no host'}.")
    return out


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replica_sentences(view: FleetView, model: str, holders: Sequence[str]) -> list[str]:
    fleet = view.fleet
    out = []
    for host in holders:
        parsed = fleet.assignments.get((host, model))
        status = fleet.statuses.get((host, model))
        if host not in fleet.hosts:
            out.append(f"{host} is down (no host record) but still holds an assignment: the controller replaces that replica.")
            continue
        assignment = parsed.value if parsed is not None else None
        if parsed is not None and parsed.error:
            out.append(f"{host}'s assignment is invalid: {parsed.error}.")
            continue
        holds = f"{host} is assigned version {versions_text(assignment)}" + (f" with labels {labels_text(assignment.version_labels)}" if assignment and assignment.version_labels else "")
        if status is None:
            out.append(f"{holds}; its agent has not reported a status yet.")
            continue
        lag = " (for an older assignment: the agent has not acted on the latest yet)" if parsed is not None and status.assignment_revision != parsed.revision else ""
        out.append(f"{holds}; its agent reports {_states_text({v: r.state for v, r in status.versions.items()})}{lag}.")
        if status.error:
            out.append(f"{host}'s agent reports an error: {status.error}.")
        for version, report in sorted(status.versions.items()):
            if report.error_message and report.state != "AVAILABLE":
                out.append(f"{host}: version {version} is {report.state}: {report.error_message} (code {report.error_code}).")
    return out


# -- dry run ------------------------------------------------------------------------------------


def _writes(result: ControllerPlan, model: str) -> tuple[dict[str, Assignment], list[str]]:
    puts = {host: a for (host, m), a in result.puts.items() if m == model}
    deletes = sorted(host for host, m in result.deletes if m == model)
    return puts, deletes


def _assignment_text(assignment: Assignment) -> str:
    labels = f"; labels {labels_text(assignment.version_labels)}" if assignment.version_labels else ""
    return f"versions {versions_text(assignment)}{labels}"


def dry_run(view: FleetView, intents: Mapping[str, ModelIntent], controls: Mapping[str, HostControl], now: dt.datetime,
            last_valid: Mapping[str, ModelIntent] | None = None) -> dict[str, Any]:
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
            affected.append({**_model_plan(after, name, "affected", [], models_intent.replicas if models_intent else 0),
                             "versions": versions_text(models_intent)})
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
            head += " (" + "; ".join(f"{c['path']}: {_value(c['old'])} -> {_value(c['new'])}" for c in item["changes"][:6]) + (
                f"; +{len(item['changes']) - 6} more" if len(item["changes"]) > 6 else "") + ")"
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
