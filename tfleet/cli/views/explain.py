"""`tfleet explain`: why a model is (or is not) where it is, in plain sentences, from the same
placement the controller computes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from tfleet.cli.views.fleet import FleetView
from tfleet.cli.views.text import labels_text, numbers, pairs_text, versions_phrase, versions_text
from tfleet.controller.placement import Placement, place
from tfleet.controller.planner import effective_intents, holders_by_model, placement_input
from tfleet.controller.snapshot import FleetSnapshot
from tfleet.schema import ModelIntent


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
            out.append(
                f"{model} has no intent (models/{model} is absent)"
                + (
                    f": the controller removes its remaining replicas on {', '.join(holders)}."
                    if report is not None
                    else f"; the assignments on {', '.join(holders)} were written by hand and the controller leaves them alone."
                )
            )
        else:
            out.append(f"{model} has no intent: nothing of it is placed.")
        return out + _replica_sentences(view, model, holders)
    if parsed.error is not None:
        out.append(
            f"The intent in etcd is invalid: {parsed.error}. The controller keeps serving the last valid intent it saw, if any; fix the intent (tfleet history {model}, tfleet rollback {model})."
        )
        previous = (last_valid or {}).get(model)
        if previous is not None:
            out.append(
                f"The last valid intent in the history wants {previous.replicas} replica{'s' if previous.replicas != 1 else ''} of {versions_phrase(previous)}."
            )
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
    out.append(
        f"{model} wants {intent.replicas} replica{'s' if intent.replicas != 1 else ''} of {versions_phrase(intent)}{labels}, "
        f"each needing {memory} MB ({memory_why})."
    )

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
            holder = fleet.hosts.get(host)
            groups.setdefault(holder.labels.get(intent.spread_by, "") if holder else "", []).append(host)
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
        out.append(
            f"The controller has not reported on {model} yet (no modelstatus/{model} key)."
            if view.leader
            else f"No controller report on {model} (no modelstatus/{model} key)."
        )
    else:
        if report.intent_revision is not None and report.intent_revision != parsed.revision:
            out.append(
                f"The controller's report is about intent revision {report.intent_revision}; the intent is at revision {parsed.revision}: it has not caught up yet."
            )
        rollout = report.rollout
        if rollout.phase == "stable":
            out.append(
                f"No rollout in progress: the replicas serve version{'s' if len(rollout.to_versions) > 1 else ''} {numbers(rollout.to_versions)}."
                if rollout.to_versions
                else "No rollout in progress."
            )
        else:
            out.append(
                f"Rollout phase {rollout.phase}, from version {numbers(rollout.from_versions)} to {numbers(rollout.to_versions)}: {rollout.reason or 'no reason given'}."
            )
        for failure in report.failures:
            later = "may be tried again" if failure.retry_after <= now else "is not tried again before"
            out.append(
                f"Version {failure.version} failed to load on {failure.host} at {_time(failure.at)}: {failure.error}; it {later} {_time(failure.retry_after)}."
            )
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
        holds = f"{host} is assigned version {versions_text(assignment)}" + (
            f" with labels {labels_text(assignment.version_labels)}" if assignment and assignment.version_labels else ""
        )
        if status is None:
            out.append(f"{holds}; its agent has not reported a status yet.")
            continue
        lag = (
            " (for an older assignment: the agent has not acted on the latest yet)"
            if parsed is not None and status.assignment_revision != parsed.revision
            else ""
        )
        out.append(f"{holds}; its agent reports {_states_text({v: r.state for v, r in status.versions.items()})}{lag}.")
        if status.error:
            out.append(f"{host}'s agent reports an error: {status.error}.")
        for version, report in sorted(status.versions.items()):
            if report.error_message and report.state != "AVAILABLE":
                out.append(f"{host}: version {version} is {report.state}: {report.error_message} (code {report.error_code}).")
    return out
