"""The model commands: apply, get (models, hosts, versions), describe (model, host), explain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

import click

from tfleet.cli.ops.context import Ops, _check_model_name, _unknown_model, _write_hostctl, author_option, fleet_command
from tfleet.cli.output import (
    CommandError,
    OpsCommand,
    OpsGroup,
    bad_input,
    emit,
    format_size,
    format_time,
    one_line,
    output_option,
    refused,
    short,
    table,
)

if TYPE_CHECKING:
    from tfleet.tfs.types import VersionState

# -- apply ----------------------------------------------------------------------------------------


@click.command("apply", cls=OpsCommand)
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="YAML or JSON file with one or more documents ('---'); '-' reads stdin. Repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Write nothing: show what the controller would do (placement, rollout step).")
@author_option
@output_option
@fleet_command
def apply(ops: Ops, files: tuple[str, ...], dry_run: bool, author: str, output: str) -> None:
    """Create or update models (kind Model) and host controls (kind HostControl) from files.

    Every document is checked before anything is written; one bad document writes nothing.
    Each write is a compare-and-swap on the revision read: a concurrent change is refused
    (exit 1), never overwritten.
    """
    from tfleet.cli.documents import DocumentError, HostControlDocument, ModelDocument, load
    from tfleet.cli.views import dry_run as plan_dry_run
    from tfleet.cli.views import dry_run_text
    from tfleet.registry import ConflictError
    from tfleet.schema import utc_now

    try:
        documents = load(files)
    except DocumentError as exc:
        raise bad_input(exc.problems) from None
    intents = {d.name: d.intent for d in documents if isinstance(d, ModelDocument)}
    controls = {d.name: d.control for d in documents if isinstance(d, HostControlDocument)}

    if dry_run:
        view = ops.view()
        result = plan_dry_run(view, intents, controls, utc_now(), ops.last_valid(view))
        emit(output, result, lambda: dry_run_text(result) + f"\n(dry run: nothing written; as of etcd revision {result['revision']})")
        return

    # Read every revision first: each write below is conditioned on what was read here.
    model_revisions = {name: ops.revision_of(ops.keyspace.model(name)) for name in intents}
    host_revisions = {name: ops.revision_of(ops.keyspace.hostctl(name)) for name in controls}
    results: list[dict[str, Any]] = []
    conflicts: list[str] = []
    for name, intent in intents.items():
        expected = model_revisions[name]
        try:
            revision = ops.registry.apply_intent(name, intent, author=author or None, expected_revision=expected)
        except ConflictError as exc:
            conflicts.append(ops.conflict(exc, "apply"))
            continue
        action = "created" if expected == 0 else ("unchanged" if revision == expected else "updated")
        results.append({"kind": "Model", "name": name, "action": action, "revision": revision})
    for host, control in controls.items():
        try:
            action, revision = _write_hostctl(ops, host, control, host_revisions[host], "apply")
        except CommandError as exc:
            conflicts.extend(exc.lines)
            continue
        results.append({"kind": "HostControl", "name": host, "action": action, "revision": revision})

    def human() -> str:
        return "\n".join(f"{'model' if r['kind'] == 'Model' else 'hostctl'} {r['name']} {r['action']} (revision {r['revision']})" for r in results)

    emit(output, results, human)
    if conflicts:
        raise refused(conflicts)


# -- get ------------------------------------------------------------------------------------------


@click.group("get", cls=OpsGroup)
def get() -> None:
    """Tables of models, hosts or the registered versions of a model."""


@get.command("models")
@click.argument("names", nargs=-1, metavar="[MODEL]...")
@output_option
@fleet_command
def get_models(ops: Ops, names: tuple[str, ...], output: str) -> None:
    """Models: replicas serving/wanted, versions, labels, rollout phase, health and error."""
    from tfleet.cli.views import labels_text, model_row

    view = ops.view(("models", "modelstatus"))  # all a row needs: two sections, not the fleet
    for name in names:
        if name not in view.models():
            raise _unknown_model(ops, name, view)
    rows = [model_row(view, name) for name in (names or view.models())]

    def human() -> str:
        if not rows:
            return "no models (tfleet apply -f models.yaml to declare one)"
        return table(
            [
                [
                    r["name"],
                    f"{'-' if r['serving'] is None else r['serving']}/{r['wanted']}",
                    f"{'-' if r['ready'] is None else r['ready']}/{r['wanted']}",
                    r["versions"],
                    labels_text(r["labels"]),
                    r["phase"],
                    r["health"],
                    short(r["error"]),
                ]
                for r in rows
            ],
            ["name", "serving", "ready", "versions", "labels", "phase", "health", "error"],
        )

    emit(output, rows, human)


@get.command("hosts")
@click.argument("names", nargs=-1, metavar="[HOST]...")
@output_option
@fleet_command
def get_hosts(ops: Ops, names: tuple[str, ...], output: str) -> None:
    """Hosts: state (up/down, cordoned, draining), address, labels, memory, agent, models served."""
    from tfleet.cli.views import host_row, pairs_text

    view = ops.view()
    known = view.hosts()
    for name in names:
        if name not in known:
            raise bad_input(f"unknown host {name} (known hosts: {', '.join(known) or 'none'})")
    rows = [host_row(view, name) for name in (names or known)]

    def human() -> str:
        if not rows:
            return "no hosts (start an agent: tfleet agent --host NAME ...)"
        return table(
            [
                [
                    r["name"],
                    r["state"],
                    r["grpc_address"],
                    pairs_text(r["labels"]),
                    f"{r['memory_used_mb']}/{r['memory_mb']}" if r["memory_mb"] is not None else "-",
                    r["agent_version"],
                    short(", ".join(r["models"]), 40),
                    short(r["reason"], 30),
                ]
                for r in rows
            ],
            ["name", "state", "address", "labels", "memory mb", "agent", "models", "reason"],
        )

    emit(output, rows, human)


@get.command("versions")
@click.argument("model")
@output_option
@fleet_command
def get_versions(ops: Ops, model: str, output: str) -> None:
    """The registered versions of MODEL: checksum, size, dates, who registered it, tags."""
    from tfleet.cli.views import short_checksum, version_rows

    _check_model_name(model)
    records = ops.registry.versions(model)
    view = ops.view()
    if not records and not view.knows_model(model):
        raise _unknown_model(ops, model, view)
    rows = version_rows(view, model, records)

    def human() -> str:
        if not rows:
            return f"no registered versions of {model} (tfleet register {model} VERSION)"
        return table(
            [
                [
                    r["version"],
                    short_checksum(r["checksum"]),
                    format_size(r["size_bytes"]),
                    format_time(r["created_at"]),
                    r["registered_by"],
                    ",".join(r["tags"]),
                    ",".join(r["labels"]),
                    r["available_replicas"],
                ]
                for r in rows
            ],
            ["version", "checksum", "size", "created", "registered by", "tags", "labels", "available"],
        )

    emit(output, rows, human)


# -- describe -------------------------------------------------------------------------------------


@click.group("describe", cls=OpsGroup)
def describe() -> None:
    """Everything about one model or one host."""


@describe.command("model")
@click.argument("model")
@output_option
@fleet_command
def describe_model(ops: Ops, model: str, output: str) -> None:
    """Intent, versions, replicas, rollout, reasons, failures and recent history of MODEL."""
    from tfleet.cli.views import describe_model as describe_view

    _check_model_name(model)
    view = ops.view()
    history = ops.registry.history(model, limit=5)
    if not view.knows_model(model) and not history:
        raise _unknown_model(ops, model, view)
    data = describe_view(view, model, ops.registry.versions(model), history)
    bounds = ops.registry.history_bounds(model)
    data["history_total"] = bounds[1] - bounds[0] + 1 if bounds else 0  # entries kept (retention)
    emit(output, data, lambda: _describe_text(data))


def _describe_text(data: dict[str, Any]) -> str:
    from tfleet.cli.views import labels_text, numbers, pairs_text, short_checksum, versions_text

    lines = [f"Name:         {data['name']}"]
    intent = data["intent"]
    if intent is None:
        lines.append("Intent:       " + (f"invalid (revision {data['revision']}): {data['intent_error']}" if data["intent_error"] else "none (deleted)"))
    else:
        lines += [
            f"Revision:     {data['revision']}",
            f"Base path:    {intent.base_path}",
            f"Versions:     {versions_text(intent)}",
            f"Labels:       {labels_text(intent.version_labels)}",
            f"Replicas:     {intent.replicas}",
            f"Selector:     {pairs_text(intent.host_selector)}",
            f"Spread by:    {intent.spread_by or '-'}",
            f"Memory:       {data['memory_mb']} MB{' (estimated)' if data['memory_estimated'] else ''}",
            f"Rollout:      {intent.rollout.strategy}"
            + (f", canary_replicas {intent.rollout.canary_replicas}" if intent.rollout.strategy == "canary" else "")
            + (", promote" if intent.rollout.promote else "")
            + (", abort" if intent.rollout.abort else ""),
        ]
        for label, value in (("Description:", intent.description), ("Owner:", intent.owner), ("Tags:", ", ".join(intent.tags))):
            if value:
                lines.append(f"{label:<13} {value}")
    lines.append(f"Health:       {data['health']}" + (f": {one_line(data['error'])}" if data["error"] else ""))
    lines.append(f"Serving:      {data['serving']}/{data['wanted'] if data['wanted'] is not None else '-'} replicas, {data['ready']} ready")
    for problem in data["agent_errors"]:
        lines.append(f"Agent error:  {problem['host']}: {one_line(problem['message'])}")
    lines.append("")
    lines.append("Registered versions:")
    if data["versions"]:
        lines += _indent(
            table(
                [
                    [
                        v["version"],
                        short_checksum(v["checksum"]),
                        format_size(v["size_bytes"]),
                        format_time(v["registered_at"]),
                        v["registered_by"],
                        ",".join(v["tags"]),
                        ",".join(v["labels"]),
                        v["available_replicas"],
                    ]
                    for v in data["versions"]
                ],
                ["version", "checksum", "size", "registered", "by", "tags", "labels", "available"],
            )
        )
    else:
        lines.append("  none")
    lines.append("")
    lines.append(f"Replicas ({len(data['replicas'])} placed, {data['wanted'] if data['wanted'] is not None else '-'} wanted):")
    if data["replicas"]:
        rows = []
        for r in data["replicas"]:
            states = ", ".join(f"{v} {s}" for v, s in sorted(r["versions"].items())) or "-"
            problem = "; ".join(r["errors"])
            rows.append(
                [
                    r["host"] + ("" if r["up"] else " (down)"),
                    states,
                    labels_text(r["labels"]),
                    "yes" if r["ready"] else "no",
                    "yes" if r["canary"] else "",
                    pairs_text(r["host_labels"]),
                    short(problem, 50),
                ]
            )
        lines += _indent(table(rows, ["host", "versions", "labels", "ready", "canary", "host labels", "error"]))
    else:
        lines.append("  none")
    lines.append("")
    rollout = data["rollout"]
    if rollout is None:
        lines.append("Rollout:      no report from the controller yet")
    elif rollout.phase == "stable":
        lines.append(f"Rollout:      stable (versions {numbers(rollout.to_versions)})" if rollout.to_versions else "Rollout:      stable")
    else:
        lines.append(f"Rollout:      {rollout.phase}, {numbers(rollout.from_versions)} -> {numbers(rollout.to_versions)}: {rollout.reason}")
    if data["status_error"]:
        lines.append(f"Error:        {one_line(data['status_error'])}")
    for reason in data["reasons"]:
        lines.append(f"Reason:       {one_line(reason)}")
    for failure in data["failures"]:
        lines.append(
            f"Failure:      version {failure.version} on {failure.host} at {format_time(failure.at)}: {one_line(failure.error)} "
            f"(not retried before {format_time(failure.retry_after)})"
        )
    lines.append("")
    lines.append(f"History (last {len(data['history'])} of {data['history_total']}):")
    if data["history"]:
        lines += _indent(
            table(
                [
                    [
                        e["sequence"],
                        format_time(e["at"]),
                        e["author"] or ("etcdctl" if e["source"] == "etcd" else "-"),
                        e["action"],
                        e["revision"],
                        short(e["summary"], 60),
                    ]
                    for e in data["history"]
                ],
                ["seq", "at", "author", "action", "revision", "changes"],
            )
        )
    else:
        lines.append("  none")
    return "\n".join(lines)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


class _HostModel(TypedDict):
    """A model assigned to the host in `describe host -o json` (keys in this order)."""

    model: str
    assigned: str | None
    assignment_error: str | None
    labels: dict[str, int]
    states: dict[str, VersionState]
    error: str | None
    managed: bool


@describe.command("host")
@click.argument("host")
@output_option
@fleet_command
def describe_host(ops: Ops, host: str, output: str) -> None:
    """The host record, operator controls, and every model assigned to HOST with its status."""
    from tfleet.cli.views import host_row, labels_text, pairs_text, versions_text

    view = ops.view()
    if host not in view.hosts():
        raise bad_input(f"unknown host {host} (known hosts: {', '.join(view.hosts()) or 'none'})")
    row = host_row(view, host)
    record = view.fleet.hosts.get(host)
    models: list[_HostModel] = []
    for model in sorted(view.fleet.held_by.get(host, ())):
        parsed = view.fleet.assignments.get((host, model))
        status = view.fleet.statuses.get((host, model))
        models.append(
            {
                "model": model,
                "assigned": versions_text(parsed.value) if parsed and parsed.value else None,
                "assignment_error": parsed.error if parsed else None,
                "labels": dict(parsed.value.version_labels) if parsed and parsed.value else {},
                "states": {v: r.state for v, r in status.versions.items()} if status else {},
                "error": status.error if status else None,
                "managed": model in view.fleet.intents or model in view.fleet.modelstatus,
            }
        )
    data = {**row, "record": record, "assignments": models}

    def human() -> str:
        lines = [
            f"Name:       {host}",
            f"State:      {row['state']}" + (f" (reason: {row['reason']})" if row["reason"] else ""),
            f"Address:    {row['grpc_address'] or '-'} (gRPC)" + (f", {record.rest_address} (REST)" if record else ""),
            f"Labels:     {pairs_text(row['labels'])}",
            f"Memory:     {row['memory_used_mb']} MB of {row['memory_mb'] if row['memory_mb'] is not None else '-'} MB used by managed models",
            f"Agent:      {row['agent_version'] or '-'}" + (f", started {format_time(record.started_at)}" if record else ""),
            "",
            "Assignments:",
        ]
        if models:
            lines += _indent(
                table(
                    [
                        [
                            m["model"] + ("" if m["managed"] else " (by hand)"),
                            m["assigned"] or m["assignment_error"],
                            labels_text(m["labels"]),
                            ", ".join(f"{v} {s}" for v, s in sorted(m["states"].items())) or "-",
                            short(m["error"], 50),
                        ]
                        for m in models
                    ],
                    ["model", "versions", "labels", "states", "error"],
                )
            )
        else:
            lines.append("  none")
        return "\n".join(lines)

    emit(output, data, human)


# -- explain --------------------------------------------------------------------------------------


@click.command("explain", cls=OpsCommand)
@click.argument("model")
@output_option
@fleet_command
def explain(ops: Ops, model: str, output: str) -> None:
    """Why MODEL is, or is not, where it is: placement, hosts, rollout, agent errors."""
    from tfleet.cli.views import explain_model
    from tfleet.schema import utc_now

    _check_model_name(model)
    view = ops.view()
    if not view.knows_model(model):
        raise _unknown_model(ops, model, view)
    sentences = explain_model(view, model, utc_now(), ops.last_valid(view))
    emit(output, {"model": model, "revision": view.revision, "explanation": sentences}, lambda: "\n".join(sentences))
