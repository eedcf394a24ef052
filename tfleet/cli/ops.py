"""The operator commands: apply, get, describe, status, history, diff, rollback, register,
rollout, cordon, uncordon, drain, watch, explain, predict (docs/cli.md).

Thin: parse, call the core (Registry, the store, the controller's pure planner), print. What
is shown is computed in views.py; documents are read in documents.py; exit codes and
one-line errors live in output.py.

Every command takes the shared etcd options (--etcd, TLS, auth, --etcd-timeout) and
--prefix. Exit codes: 0 ok, 1 refused or failed, 2 bad input, 3 etcd unreachable.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import os
import queue
import time
from collections.abc import Callable
from typing import Any

import click

from tfleet.cli.options import etcd_options, etcd_settings, fleet_prefix
from tfleet.cli.output import (
    EXIT_BAD_INPUT,
    CommandError,
    OpsCommand,
    OpsGroup,
    bad_input,
    emit,
    format_size,
    format_time,
    jsonable,
    note,
    one_line,
    output_option,
    refused,
    short,
    table,
)

# -- shared plumbing ------------------------------------------------------------------------------

SECTIONS = ("hosts", "assignments", "status", "models", "versions", "history", "modelstatus", "hostctl", "schedules", "leader", "routes")


class CliLog:
    """The registry's logger in the CLI: outcomes are printed by the commands themselves, so
    only warnings (a stray key, an unreadable entry) reach stderr, one line each."""

    def bind(self, **_context: object) -> CliLog:
        return self

    def debug(self, event: str, **fields: object) -> None:
        pass

    info = debug

    def warning(self, event: str, **fields: object) -> None:
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        note(f"warning: {event} {details}".rstrip())

    error = warning


class Ops:
    """What a command works with: the store, the keyspace and the registry of one fleet."""

    def __init__(self, settings: Any, prefix: str) -> None:
        from tfleet.keyspace import Keyspace
        from tfleet.registry import Registry
        from tfleet.store import EtcdStore

        self.keyspace = Keyspace(prefix)
        self.store = EtcdStore(settings)
        self.registry = Registry(self.store, self.keyspace, log=CliLog())

    def view(self, sections: tuple[str, ...] | None = None):
        """The fleet: the given sections (default: all the controller plans from; never the
        history), each read in pages, at one revision where the store can pin one."""
        from tfleet.cli.views import FleetView
        from tfleet.controller.fleetcache import default_reader, read_sections
        from tfleet.controller.snapshot import SECTIONS
        from tfleet.store import Snapshot

        read = read_sections(default_reader(self.store), self.keyspace, sections or SECTIONS)
        return FleetView.of(Snapshot(max(read.revisions.values()), read.items), self.keyspace)

    def close(self) -> None:
        self.store.close()

    def revision_of(self, key: str) -> int:
        kv = self.store.get(key)
        return kv.mod_revision if kv is not None else 0

    def who_changed(self, model: str, revision: int) -> str:
        """" by alice via cli", or " outside tfleet (etcdctl?)" when no entry records revision."""
        from tfleet.cli.views import who
        from tfleet.registry import RegistryError

        try:
            entries = self.registry.history(model, limit=5)  # the change is one of the newest
        except RegistryError:
            entries = []
        for entry in reversed(entries):
            if entry.revision == revision:
                return f" by {who(entry)}"
        return " outside tfleet (etcdctl?)"

    def last_valid(self, view: Any) -> dict[str, Any]:
        """For models whose intent in etcd is invalid: the newest valid intent in their history,
        which is what the controller keeps serving (it remembers the last valid one it saw)."""
        from tfleet.registry import RegistryError

        found = {}
        for model in view.invalid_intents():
            try:
                intent = self.registry.last_valid_intent(model)  # the newest entries, a few at a time
            except RegistryError:
                continue
            if intent is not None:
                found[model] = intent
        return found

    def conflict(self, exc: Any, rerun: str) -> str:
        """The one line for a failed compare-and-swap on an intent."""
        expected = exc.expected_revision if exc.expected_revision is not None else 0
        current = exc.current_revision
        if current == expected:
            return f"{exc}"  # not a change of the intent (the history kept moving): the registry says what
        if current == 0:
            return f"{exc.model} was deleted since it was read (revision {expected}); re-run {rerun}"
        before = "none" if expected == 0 else str(expected)
        return f"{exc.model} changed since it was read (revision {before} -> {current}{self.who_changed(exc.model, current)}); re-run {rerun}"


def _default_author() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        return ""


def fleet_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add --prefix and the etcd options; call ``function(ops, **options)``, closing the store after."""

    @functools.wraps(function)
    def run(**options: Any) -> Any:
        settings = etcd_settings(options)
        prefix = fleet_prefix(options.pop("prefix")).rstrip("/") or "/"
        ops = Ops(settings, prefix)
        try:
            return function(ops, **options)
        finally:
            ops.close()

    run = etcd_options(run)
    return click.option("--prefix", default="/tfleet", envvar="TFLEET_PREFIX", show_envvar=True, show_default=True,
                        help="etcd key prefix of this fleet.")(run)


def author_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--author", default=_default_author, envvar="TFLEET_AUTHOR", show_envvar=True, show_default="$USER",
                        help="Who makes the change, as recorded in the history.")(command)


def _unknown_model(ops: Ops, model: str, view: Any = None) -> CommandError:
    view = view or ops.view()
    known = view.models()
    hint = f"known models: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "no model has an intent yet"
    return bad_input(f"unknown model {model} ({hint})")


def _check_model_name(model: str) -> None:
    from tfleet.keyspace import validate_name

    validate_name("model", model)


# -- apply ----------------------------------------------------------------------------------------


@click.command("apply", cls=OpsCommand)
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="YAML or JSON file with one or more documents ('---'); '-' reads stdin. Repeatable.")
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
        return "\n".join(
            f"{'model' if r['kind'] == 'Model' else 'hostctl'} {r['name']} {r['action']} (revision {r['revision']})" for r in results)

    emit(output, results, human)
    if conflicts:
        raise refused(conflicts)


def _write_hostctl(ops: Ops, host: str, control: Any, expected: int, rerun: str) -> tuple[str, int]:
    """Write (or delete, for None) hostctl/<host> if it is still at revision ``expected``."""
    from tfleet.schema import HostControl, SchemaError, encode, parse
    from tfleet.store import Compare, Delete, Put

    key = ops.keyspace.hostctl(host)
    kv = ops.store.get(key)
    current_revision = kv.mod_revision if kv is not None else 0
    if current_revision == expected and kv is not None and control is not None:
        try:  # any bytes may be in etcd: read them as strictly as every reader does
            if parse(HostControl, kv.value, kv.key) == control:
                return "unchanged", current_revision
        except SchemaError:
            pass
    if current_revision == expected and kv is None and control is None:
        return "unchanged", current_revision
    operation = Delete(key) if control is None else Put(key, encode(control))
    result = ops.store.txn([Compare(key, "mod", "==", expected)], [operation])
    if not result.succeeded:
        now = ops.revision_of(key)
        raise refused(f"hostctl of {host} changed since it was read (revision {expected or 'none'} -> {now or 'deleted'}); re-run {rerun}")
    if control is None:
        return "deleted", result.revision
    return ("created" if expected == 0 else "updated"), result.revision


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
            [[r["name"], f"{'-' if r['serving'] is None else r['serving']}/{r['wanted']}", f"{'-' if r['ready'] is None else r['ready']}/{r['wanted']}",
              r["versions"], labels_text(r["labels"]), r["phase"], r["health"], short(r["error"])] for r in rows],
            ["name", "serving", "ready", "versions", "labels", "phase", "health", "error"])

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
            [[r["name"], r["state"], r["grpc_address"], pairs_text(r["labels"]),
              f"{r['memory_used_mb']}/{r['memory_mb']}" if r["memory_mb"] is not None else "-",
              r["agent_version"], short(", ".join(r["models"]), 40), short(r["reason"], 30)] for r in rows],
            ["name", "state", "address", "labels", "memory mb", "agent", "models", "reason"])

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
            [[r["version"], short_checksum(r["checksum"]), format_size(r["size_bytes"]), format_time(r["created_at"]),
              r["registered_by"], ",".join(r["tags"]), ",".join(r["labels"]), r["available_replicas"]] for r in rows],
            ["version", "checksum", "size", "created", "registered by", "tags", "labels", "available"])

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
            f"Rollout:      {intent.rollout.strategy}" + (f", canary_replicas {intent.rollout.canary_replicas}" if intent.rollout.strategy == "canary" else "")
            + (", promote" if intent.rollout.promote else "") + (", abort" if intent.rollout.abort else ""),
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
        lines += _indent(table([[v["version"], short_checksum(v["checksum"]), format_size(v["size_bytes"]), format_time(v["registered_at"]),
                                 v["registered_by"], ",".join(v["tags"]), ",".join(v["labels"]), v["available_replicas"]] for v in data["versions"]],
                               ["version", "checksum", "size", "registered", "by", "tags", "labels", "available"]))
    else:
        lines.append("  none")
    lines.append("")
    lines.append(f"Replicas ({len(data['replicas'])} placed, {data['wanted'] if data['wanted'] is not None else '-'} wanted):")
    if data["replicas"]:
        rows = []
        for r in data["replicas"]:
            states = ", ".join(f"{v} {s}" for v, s in sorted(r["versions"].items())) or "-"
            problem = "; ".join(r["errors"])
            rows.append([r["host"] + ("" if r["up"] else " (down)"), states, labels_text(r["labels"]), "yes" if r["ready"] else "no",
                         "yes" if r["canary"] else "", pairs_text(r["host_labels"]), short(problem, 50)])
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
        lines.append(f"Failure:      version {failure.version} on {failure.host} at {format_time(failure.at)}: {one_line(failure.error)} "
                     f"(not retried before {format_time(failure.retry_after)})")
    lines.append("")
    lines.append(f"History (last {len(data['history'])} of {data['history_total']}):")
    if data["history"]:
        lines += _indent(table([[e["sequence"], format_time(e["at"]), e["author"] or ("etcdctl" if e["source"] == "etcd" else "-"), e["action"],
                                 e["revision"], short(e["summary"], 60)] for e in data["history"]],
                               ["seq", "at", "author", "action", "revision", "changes"]))
    else:
        lines.append("  none")
    return "\n".join(lines)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


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
    models = []
    for model in sorted(view.fleet.held_by.get(host, ())):
        parsed = view.fleet.assignments.get((host, model))
        status = view.fleet.statuses.get((host, model))
        models.append({
            "model": model,
            "assigned": versions_text(parsed.value) if parsed and parsed.value else None,
            "assignment_error": parsed.error if parsed else None,
            "labels": dict(parsed.value.version_labels) if parsed and parsed.value else {},
            "states": {v: r.state for v, r in status.versions.items()} if status else {},
            "error": status.error if status else None,
            "managed": model in view.fleet.intents or model in view.fleet.modelstatus,
        })
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
            lines += _indent(table([[m["model"] + ("" if m["managed"] else " (by hand)"), m["assigned"] or m["assignment_error"],
                                     labels_text(m["labels"]), ", ".join(f"{v} {s}" for v, s in sorted(m["states"].items())) or "-",
                                     short(m["error"], 50)] for m in models],
                                   ["model", "versions", "labels", "states", "error"]))
        else:
            lines.append("  none")
        return "\n".join(lines)

    emit(output, data, human)


# -- status ---------------------------------------------------------------------------------------


@click.command("status", cls=OpsCommand)
@output_option
@fleet_command
def status(ops: Ops, output: str) -> None:
    """The fleet at a glance: leader, hosts, model health, rollouts in progress, problems."""
    from tfleet.cli.views import fleet_status, numbers

    data = fleet_status(ops.view())

    def human() -> str:
        leader = data["leader"]
        hosts = data["hosts"]
        models = data["models"]
        lines = [
            "Leader:    " + (f"{leader.id} (since {format_time(leader.since)}, version {leader.version})" if leader else "none: no controller leads, nothing changes"),
            f"Hosts:     {hosts['up']} up" + "".join(f", {hosts[k]} {k}" for k in ("down", "cordoned", "draining") if hosts[k]),
            f"Models:    {models['total']}: {models['ok']} ok, {models['degraded']} degraded, {models['failing']} failing"
            + "".join(f", {models[k]} {k}" for k in ("unavailable", "unknown", "deleting") if models[k]),
        ]
        if data["rollouts"]:
            lines.append(f"Rollouts:  {len(data['rollouts'])} in progress")
            lines += [f"  {r['model']}: {r['phase']}, {numbers(r['from'])} -> {numbers(r['to'])}" + (f": {short(r['reason'], 80)}" if r["reason"] else "")
                      for r in data["rollouts"]]
        else:
            lines.append("Rollouts:  none in progress")
        for problem in data["problems"]:
            lines.append(f"  {problem['model']} {problem['health']}: {short(problem['problem'], 100)}")
            lines += [f"    agent error on {e['host']}: {short(e['message'], 100)}" for e in problem["agent_errors"]]
        if data["invalid_keys"]:
            lines.append(f"Invalid keys: {len(data['invalid_keys'])} (etcdctl get <prefix>/problems lists them)")
            lines += [f"  {short(p, 120)}" for p in data["invalid_keys"][:5]]
        return "\n".join(lines)

    emit(output, data, human)


# -- history, diff, rollback ----------------------------------------------------------------------


@click.command("history", cls=OpsCommand)
@click.argument("model")
@click.option("--limit", type=click.IntRange(min=1), help="Show only the newest N entries.  [default: every entry kept]")
@click.option("--before", type=click.IntRange(min=1), help="Show only entries older than sequence SEQ (to page back).")
@output_option
@fleet_command
def history(ops: Ops, model: str, limit: int | None, before: int | None, output: str) -> None:
    """Every recorded change of MODEL's intent: who, when, what changed.

    Gaps (changes etcd compacted before the controller recorded them) show as action "gap"
    with the revisions they cover. Entries older than the retention (tfleet controller
    --history-keep) are pruned.
    """
    from tfleet.cli.views import history_summary

    _check_model_name(model)
    entries = ops.registry.history(model, limit=limit, before=before)
    if not entries and before is None and ops.store.get(ops.keyspace.model(model)) is None:
        raise _unknown_model(ops, model)

    def human() -> str:
        if not entries:
            if before is not None:
                return f"{model} has no history entry before {before} (older entries are pruned, or there were none)"
            return f"{model} has no history entry yet (written with etcdctl; the controller records it)"
        return table([[e.sequence, format_time(e.at), e.author or ("etcdctl" if e.source == "etcd" else "-"), e.source, e.action,
                       e.revision, short(history_summary(e), 80)] for e in entries],
                     ["seq", "at", "author", "source", "action", "revision", "changes"])

    emit(output, entries, human)


@click.command("diff", cls=OpsCommand)
@click.argument("model")
@click.argument("seq1", type=click.IntRange(min=1))
@click.argument("seq2", type=click.IntRange(min=1))
@output_option
@fleet_command
def diff(ops: Ops, model: str, seq1: int, seq2: int, output: str) -> None:
    """What changed in MODEL's intent from history entry SEQ1 to SEQ2."""
    _check_model_name(model)
    changes = ops.registry.diff(model, seq1, seq2)
    data = [{"path": c.path, "old": c.old, "new": c.new} for c in changes]

    def human() -> str:
        if not changes:
            return f"no differences between entries {seq1} and {seq2} of {model}"
        return table([[c.path, json.dumps(c.old), json.dumps(c.new)] for c in changes], ["field", f"entry {seq1}", f"entry {seq2}"])

    emit(output, data, human)


@click.command("rollback", cls=OpsCommand)
@click.argument("model")
@click.option("--to", "to_sequence", type=click.IntRange(min=1), help="History entry to restore (default: undo the last change).")
@author_option
@output_option
@fleet_command
def rollback(ops: Ops, model: str, to_sequence: int | None, author: str, output: str) -> None:
    """Restore the intent recorded at a history entry (default: the one before the last)."""
    from tfleet.cli.views import history_summary
    from tfleet.registry import ConflictError

    _check_model_name(model)
    before = ops.registry.history(model, limit=2)  # the newest two: all "undo the last change" needs
    if not before and ops.store.get(ops.keyspace.model(model)) is None:
        raise _unknown_model(ops, model)
    target = to_sequence if to_sequence is not None else (before[-2].sequence if len(before) >= 2 else None)
    try:
        revision = ops.registry.rollback(model, to_sequence=to_sequence, author=author or None)
    except ConflictError as exc:
        raise refused(ops.conflict(exc, "rollback")) from None
    after = ops.registry.history(model, limit=1)
    written = bool(after) and (not before or after[-1].sequence > before[-1].sequence)
    data = {"model": model, "to_sequence": target, "revision": revision, "written": written,
            "sequence": after[-1].sequence if written else None, "changes": history_summary(after[-1]) if written else None}

    def human() -> str:
        if not written:
            return f"{model} already holds the intent of history entry {target}: nothing written"
        return f"{model} rolled back to history entry {target} (revision {revision}, history entry {data['sequence']}): {data['changes']}"

    emit(output, data, human)


# -- register -------------------------------------------------------------------------------------


@click.command("register", cls=OpsCommand)
@click.argument("model")
@click.argument("version", type=click.IntRange(min=0))
@click.option("--base-path", help="Directory holding <VERSION>/saved_model.pb (default: the intent's base_path).")
@click.option("--source-uri", default="", help="Where the model came from (training run, bucket).")
@click.option("--source-commit", default="", help="Commit of the code that produced it.")
@click.option("--description", default="", help="Free text for people.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@author_option
@output_option
@fleet_command
def register(ops: Ops, model: str, version: int, base_path: str | None, source_uri: str, source_commit: str,
             description: str, tags: tuple[str, ...], author: str, output: str) -> None:
    """Register VERSION of MODEL: checksum its directory and record where it came from."""
    from tfleet.schema import utc_now

    _check_model_name(model)
    started = utc_now()
    record = ops.registry.register_version(model, version, base_path=base_path, source_uri=source_uri, source_commit=source_commit,
                                           description=description, tags=tags, registered_by=author)
    existed = record.registered_at < started

    def human() -> str:
        what = "already registered with the same files" if existed else "registered"
        return f"{model} version {version} {what}: {record.checksum} ({format_size(record.size_bytes)}, {record.path})"

    emit(output, {**jsonable(record), "already_registered": existed}, human)


# -- rollout --------------------------------------------------------------------------------------


@click.group("rollout", cls=OpsGroup)
def rollout() -> None:
    """Start, promote, abort and follow a version rollout of a model."""


def _intent_for_rollout(ops: Ops, model: str) -> tuple[Any, int]:
    from tfleet.registry import RegistryError

    _check_model_name(model)
    try:
        intent, revision = ops.registry.get_intent(model)
    except RegistryError as exc:
        raise bad_input(f"{exc}; fix the intent first (tfleet rollback {model}, or tfleet apply)") from None
    if intent is None:
        raise bad_input(f"unknown model {model}: it has no intent (declare it first: tfleet apply -f FILE)")
    return intent, revision


def _write_rollout(ops: Ops, model: str, intent: Any, revision: int, author: str, rerun: str) -> int:
    from tfleet.registry import ConflictError

    try:
        return ops.registry.apply_intent(model, intent, author=author or None, expected_revision=revision)
    except ConflictError as exc:
        raise refused(ops.conflict(exc, rerun)) from None


def _with(intent: Any, **changes: Any) -> Any:
    """A copy of the intent with changes, validated again (labels must point at served versions)."""
    from tfleet.schema import ModelIntent

    document = intent.model_dump(mode="json", by_alias=True)
    rollout_changes = changes.pop("rollout", None)
    if rollout_changes:
        document["rollout"] = {**document["rollout"], **rollout_changes}
    document.update(changes)
    return ModelIntent.model_validate(document)


@rollout.command("start")
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=0), required=True, help="The version to roll out.")
@click.option("--canary", "canary", type=click.IntRange(min=1), help="Canary on N replicas first (promote or abort it later).")
@click.option("--rolling", is_flag=True, help="Roll out to every replica at once (make-before-break), whatever the intent's strategy.")
@click.option("--label", default="stable", show_default=True, help="Label moved to the new version once it is AVAILABLE everywhere.")
@click.option("--no-label", is_flag=True, help="Move no label.")
@click.option("--force", is_flag=True, help="Start even if a rollout is in progress or the version is neither registered nor on disk.")
@author_option
@output_option
@fleet_command
def rollout_start(ops: Ops, model: str, version: int, canary: int | None, rolling: bool, label: str, no_label: bool, force: bool,
                  author: str, output: str) -> None:
    """Serve VERSION of MODEL instead of its current versions, make-before-break.

    Sets the intent's versions to [VERSION] and moves the label to it; with --canary N, only
    N replicas get it until `tfleet rollout promote`.
    """
    from tfleet.controller.rollout import CANARY_LABEL
    from tfleet.schema import utc_now

    if canary is not None and rolling:
        raise bad_input("--canary and --rolling exclude each other")
    if not no_label and label == CANARY_LABEL:
        raise bad_input(f"label {CANARY_LABEL!r} is set by the controller on canaries; pick another --label")
    intent, revision = _intent_for_rollout(ops, model)
    registered = [record.version for record in ops.registry.versions(model)]
    if version not in registered:
        _check_unregistered_version(model, intent.base_path, version, registered, force)
    report = ops.view().fleet.modelstatus.get(model)
    target = [version]
    if report is not None and not force:
        phase = report.rollout.phase
        if phase in ("adding", "labeling", "removing", "canary") and list(report.rollout.to_versions) != target:
            raise refused(f"{model} is in the middle of a rollout ({phase}, {_versions(report.rollout.from_versions)} -> "
                          f"{_versions(report.rollout.to_versions)}); wait for it, abort it (tfleet rollout abort {model}), or pass --force")
        now = utc_now()
        blocked = [f for f in report.failures if f.version == version and f.retry_after > now]
        if blocked:
            failure = blocked[0]
            raise refused(f"version {version} of {model} failed to load on {failure.host} ({one_line(failure.error)}); "
                          f"the controller does not retry it before {format_time(failure.retry_after)}; fix the files and register a new version")
    labels = {name: v for name, v in intent.version_labels.items() if v == version}
    dropped = {name: v for name, v in intent.version_labels.items() if v != version and (no_label or name != label)}
    if not no_label:
        labels[label] = version
    strategy = "canary" if canary is not None else ("rolling" if rolling else intent.rollout.strategy)
    rollout_changes: dict[str, Any] = {"strategy": strategy, "promote": False, "abort": False}
    if canary is not None:
        rollout_changes["canary_replicas"] = canary
    new = _with(intent, model_version_policy={"specific": {"versions": target}}, version_labels=labels, rollout=rollout_changes)
    if new == intent:
        emit(output, {"model": model, "action": "unchanged", "revision": revision},
             lambda: f"{model} already rolls out version {version} ({strategy}): nothing written")
        return
    new_revision = _write_rollout(ops, model, new, revision, author, "tfleet rollout start")
    from_versions = _policy_versions(intent)
    data = {"model": model, "action": "started", "revision": new_revision, "from": from_versions, "to": target,
            "strategy": strategy, "canary_replicas": new.rollout.canary_replicas if strategy == "canary" else None,
            "labels": labels, "dropped_labels": dropped}

    def human() -> str:
        how = f"canary on {new.rollout.canary_replicas} replica{'s' if new.rollout.canary_replicas != 1 else ''}; then tfleet rollout promote {model} (or abort)" \
            if strategy == "canary" else "rolling, make-before-break"
        moving = f"version {from_versions} -> {version}" if intent.model_version_policy.specific is not None else f"{from_versions} -> version {version}"
        text = f"rollout of {model} started: {moving} ({how}); revision {new_revision}"
        if dropped:
            text += f"\nlabels dropped (their versions are no longer served): {', '.join(f'{k}={v}' for k, v in sorted(dropped.items()))}"
        return text + f"\nfollow it: tfleet rollout status {model}"

    emit(output, data, human)


def _check_unregistered_version(model: str, base_path: str, version: int, registered: list[int], force: bool) -> None:
    """A version that is not registered must at least be on disk where this CLI can look.

    Without the check, a typo (or a version not copied yet) starts a rollout every agent
    reports "not found", which the controller aborts only after a round trip. Refused (exit
    2) when base_path is visible here and lacks the version, or when it is not visible and
    the model has registered versions; a warning when nothing can be checked. --force
    starts it anyway.
    """
    from tfleet import modelfs

    listed = f" (registered: {', '.join(map(str, registered))})" if registered else " (none is registered)"
    path = modelfs.local_path(base_path)
    visible = path is not None and os.path.isdir(path)
    if visible and version in modelfs.inspect(base_path).versions:
        if registered:
            note(f"tfleet rollout start: version {version} of {model} is not registered{listed}; "
                 f"it is on disk, so starting (register it: tfleet register {model} {version})")
        return
    if force:
        note(f"tfleet rollout start: version {version} of {model} is neither registered nor found under {base_path}; starting anyway (--force)")
        return
    if visible:
        raise bad_input(f"version {version} of {model} is neither registered{listed} nor found under its base_path "
                        f"(no {base_path.rstrip('/')}/{version}/saved_model.pb); copy it there and register it "
                        f"(tfleet register {model} {version}), or pass --force")
    if registered:
        raise bad_input(f"version {version} of {model} is not registered{listed} and its base_path {base_path} cannot be "
                        f"looked into from here; register it first (tfleet register {model} {version}) or pass --force")
    note(f"tfleet rollout start: warning: version {version} of {model} is not registered and its base_path {base_path} cannot be "
         f"looked into from here; if the agents do not find it, the controller aborts the rollout")


def _versions(values: Any) -> str:
    return ",".join(str(v) for v in values) or "none"


def _policy_versions(intent: Any) -> str:
    from tfleet.cli.views import versions_text

    return versions_text(intent)


def _set_rollout_flag(ops: Ops, model: str, flag: str, author: str, output: str, done: str) -> None:
    intent, revision = _intent_for_rollout(ops, model)
    if flag == "promote" and intent.rollout.strategy != "canary":
        raise refused(f"{model}'s rollout strategy is rolling: there is no canary to promote")
    if getattr(intent.rollout, flag):
        emit(output, {"model": model, "action": "unchanged", "revision": revision}, lambda: f"{model}: rollout.{flag} is already set: nothing written")
        return
    new = _with(intent, rollout={flag: True})
    new_revision = _write_rollout(ops, model, new, revision, author, f"tfleet rollout {flag}")
    report = ops.view().fleet.modelstatus.get(model)
    phase = report.rollout.phase if report else None
    data = {"model": model, "action": flag, "revision": new_revision, "phase": phase}

    def human() -> str:
        text = f"{model}: {done} (rollout.{flag} set, revision {new_revision})"
        if flag == "promote" and phase not in (None, "canary"):
            text += f"\nnote: the controller last reported phase {phase}, not canary"
        return text

    emit(output, data, human)


@rollout.command("promote")
@click.argument("model")
@author_option
@output_option
@fleet_command
def rollout_promote(ops: Ops, model: str, author: str, output: str) -> None:
    """Promote MODEL's canary: roll the new version out to every replica."""
    _set_rollout_flag(ops, model, "promote", author, output, "canary promoted, the new version goes to every replica")


@rollout.command("abort")
@click.argument("model")
@author_option
@output_option
@fleet_command
def rollout_abort(ops: Ops, model: str, author: str, output: str) -> None:
    """Abort MODEL's rollout: the new version is taken away again (start a new rollout to clear it)."""
    _set_rollout_flag(ops, model, "abort", author, output, "rollout aborted, the new version is taken away again")


@rollout.command("status")
@click.argument("model")
@output_option
@fleet_command
def rollout_status(ops: Ops, model: str, output: str) -> None:
    """Phase, versions from -> to, replicas serving each version, canaries and reason."""
    from tfleet.cli.views import versions_text

    _check_model_name(model)
    view = ops.view()
    if not view.knows_model(model):
        raise _unknown_model(ops, model, view)
    intent = view.intent(model)
    report = view.fleet.modelstatus.get(model)
    data = {
        "model": model,
        "intent_versions": versions_text(intent),
        "strategy": intent.rollout.strategy if intent else None,
        "promote": intent.rollout.promote if intent else None,
        "abort": intent.rollout.abort if intent else None,
        "phase": report.rollout.phase if report else None,
        "from": report.rollout.from_versions if report else [],
        "to": report.rollout.to_versions if report else [],
        "reason": report.rollout.reason if report else None,
        "available": dict(report.ready_replicas) if report else {},
        "canary_hosts": [r.host for r in report.replicas if r.canary] if report else [],
        "wanted": report.wanted_replicas if report else (intent.replicas if intent else 0),
        "failures": report.failures if report else [],
    }

    def human() -> str:
        if report is None:
            return f"{model}: no report from the controller yet (intent versions {data['intent_versions']})"
        lines = [f"Phase:      {data['phase']}" + (f", {_versions(data['from'])} -> {_versions(data['to'])}" if data["phase"] != "stable" else f" (versions {_versions(data['to'])})")]
        lines.append(f"Strategy:   {data['strategy']}" + (" (promoted)" if data["promote"] else "") + (" (aborted)" if data["abort"] else ""))
        available = ", ".join(f"version {v}: {n}/{data['wanted']}" for v, n in sorted(data["available"].items(), key=lambda i: int(i[0]))) or "none"
        lines.append(f"Available:  {available}")
        if data["canary_hosts"]:
            lines.append(f"Canaries:   {', '.join(data['canary_hosts'])}")
        if data["reason"]:
            lines.append(f"Reason:     {one_line(data['reason'])}")
        for failure in data["failures"]:
            lines.append(f"Failure:    version {failure.version} on {failure.host}: {one_line(failure.error)} (not retried before {format_time(failure.retry_after)})")
        return "\n".join(lines)

    emit(output, data, human)


# -- cordon, uncordon, drain ----------------------------------------------------------------------


def _change_host(ops: Ops, host: str, change: Callable[[Any], Any], force: bool, verb: str, output: str) -> None:
    from tfleet.keyspace import validate_name
    from tfleet.schema import HostControl, SchemaError, parse

    validate_name("host", host)
    key = ops.keyspace.hostctl(host)
    kv = ops.store.get(key)
    expected = kv.mod_revision if kv is not None else 0
    current = HostControl()
    if kv is not None:
        try:
            current = parse(HostControl, kv.value, kv.key)
        except SchemaError as exc:
            note(f"tfleet {verb}: the stored value is invalid and is replaced ({exc})")
    if kv is None and not force:
        live = ops.store.get(ops.keyspace.host(host)) is not None
        holds = bool(ops.store.list_prefix(ops.keyspace.assignments_prefix(host)).items)
        if not live and not holds:
            raise bad_input(f"unknown host {host}: no agent registered it (hosts/{host}) and it holds no assignment; "
                            f"pass --force to set it anyway (e.g. before its agent starts)")
    new = change(current)
    control = None if new == HostControl() else new
    action, revision = _write_hostctl(ops, host, control, expected, f"tfleet {verb}")
    assigned = sorted(kv.key.rsplit("/", 1)[-1] for kv in ops.store.list_prefix(ops.keyspace.assignments_prefix(host)).items)
    data = {"host": host, "action": action, "revision": revision, "control": control or HostControl(), "assigned": assigned}

    def human() -> str:
        if action == "unchanged":
            return f"{host} unchanged: already {_host_state(new)}"
        reason = f" (reason: {new.reason})" if new.reason else ""
        if new.draining:
            moving = f": its replicas of {', '.join(assigned)} move to other hosts, each once its replacement serves" if assigned else ": it holds no replica"
            return f"{host} draining{reason}{moving}"
        if new.cordoned:
            return f"{host} cordoned{reason}: it takes no new replicas; the ones it holds stay"
        return f"{host} uncordoned: it takes replicas again"

    emit(output, data, human)


def _host_state(control: Any) -> str:
    if control.draining:
        return "draining"
    if control.cordoned:
        return "cordoned"
    return "schedulable (no cordon, no drain)"


def _host_command(name: str, help_text: str, change: Callable[[Any, str | None], Any], with_reason: bool) -> click.Command:
    def run(ops: Ops, host: str, force: bool, output: str, reason: str | None = None) -> None:
        _change_host(ops, host, lambda current: change(current, reason), force, name, output)

    run.__doc__ = help_text
    command = fleet_command(run)
    command = output_option(command)
    if with_reason:
        command = click.option("--reason", help="Why (shown in tfleet get hosts).")(command)
    command = click.option("--force", is_flag=True, help="Also for a host tfleet does not know (yet).")(command)
    command = click.argument("host")(command)
    return click.command(name, cls=OpsCommand, help=help_text)(command)


def _cordoned(current: Any, reason: str | None) -> Any:
    return current.model_copy(update={"cordoned": True, **({"reason": reason} if reason is not None else {})})


def _drained(current: Any, reason: str | None) -> Any:
    return current.model_copy(update={"cordoned": True, "draining": True, **({"reason": reason} if reason is not None else {})})


def _uncordoned(current: Any, reason: str | None) -> Any:
    return current.model_copy(update={"cordoned": False, "draining": False, "reason": ""})


cordon = _host_command("cordon", "Give HOST no new replicas (the ones it holds stay).", _cordoned, True)
uncordon = _host_command("uncordon", "Undo cordon and drain: HOST takes replicas again (its hostctl key is removed).", _uncordoned, False)
drain = _host_command("drain", "Move every replica off HOST, each once its replacement serves (make-before-break); cordons it too.", _drained, True)


# -- watch ----------------------------------------------------------------------------------------


@click.command("watch", cls=OpsCommand)
@click.option("--prefix-only", "section", type=click.Choice(SECTIONS), help="Only this section of the keyspace.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@output_option
@fleet_command
def watch(ops: Ops, section: str | None, count: int | None, duration: float | None, output: str) -> None:
    """Print every change under the prefix as it happens (time, op, key, value) until Ctrl-C."""
    prefix = f"{ops.keyspace.prefix}/{section}" if section == "leader" else f"{ops.keyspace.prefix}/{section + '/' if section else ''}"
    start = ops.store.list_prefix(prefix).revision + 1
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    handle = ops.store.watch_prefix(
        prefix, start,
        on_events=lambda batch: events.put(("events", batch)),
        on_reset=lambda snapshot: events.put(("reset", snapshot)),
        on_error=lambda exc: events.put(("error", exc)),
    )
    note(f"watching {prefix} from revision {start} (Ctrl-C to stop)")
    deadline = time.monotonic() + duration if duration is not None else None
    seen = 0
    try:
        while count is None or seen < count:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                kind, payload = events.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "error":
                note(f"tfleet watch: {one_line(payload)}; resuming")
            elif kind == "reset":
                note(f"tfleet watch: etcd compacted the revisions to resume from; re-read {len(payload.items)} keys at revision {payload.revision}, continuing")
            else:
                for event in payload:
                    click.echo(_event_line(event, ops.keyspace.prefix, output))
                    seen += 1
                    if count is not None and seen >= count:
                        break
    except KeyboardInterrupt:
        pass
    finally:
        handle.cancel()


def _event_line(event: Any, prefix: str, output: str) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    key = event.key[len(prefix) + 1:] if event.key.startswith(prefix + "/") else event.key
    text = event.value.decode("utf-8", "replace")
    if output in ("json", "yaml"):
        try:
            value: Any = json.loads(text) if event.kind == "put" else None
        except (ValueError, RecursionError):  # any bytes may be in etcd: print them as text
            value = text
        return json.dumps({"time": now.isoformat().replace("+00:00", "Z"), "op": event.kind, "key": event.key,
                           "revision": event.mod_revision, "value": value})
    shown = short(text, 100) if event.kind == "put" else ""
    return f"{now.strftime('%H:%M:%S.%f')[:-3]}Z {event.kind.upper():<6} {key} {shown}".rstrip()


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


# -- predict --------------------------------------------------------------------------------------


def _inputs(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad_input(f"--input is not JSON: {exc}") from None
    if isinstance(data, dict):
        if not data:
            raise bad_input("--input names no input")
        return data
    return {"x": data}  # a bare list or number: the default input name


def _candidates(ops: Ops, model: str, version: int | None, label: str | None) -> tuple[list[tuple[str, str]], str, Any]:
    """(host, grpc address) pairs serving what is asked, where they came from, and the view
    (None when the routes key answered)."""
    from tfleet.schema import RouteTable, SchemaError, parse

    kv = ops.store.get(ops.keyspace.routes(model))
    if kv is not None:
        try:
            routes = parse(RouteTable, kv.value, kv.key)
        except SchemaError as exc:
            note(f"tfleet predict: ignoring an unreadable routes key ({exc})")
        else:
            if version is not None:
                endpoints = routes.versions.get(str(version), [])
            elif label is not None:
                endpoints = routes.labels.get(label, [])
            else:
                endpoints = routes.endpoints
            return sorted((e.host, e.grpc_address) for e in endpoints), "routes", None
    view = ops.view()
    found = []
    for (host, name), status in view.fleet.statuses.items():
        record = view.fleet.hosts.get(host)
        if name != model or record is None:
            continue
        available = {v for v, r in status.versions.items() if r.state == "AVAILABLE"}
        if version is not None:
            ok = str(version) in available
        elif label is not None:
            ok = label in status.version_labels and str(status.version_labels[label]) in available
        else:
            ok = bool(available)
        if ok:
            found.append((host, record.grpc_address))
    return sorted(found), "status", view


def _known_versions(ops: Ops, view: Any, model: str) -> set[int]:
    """Versions anything in etcd mentions: registered, in the intent, reported by agents, routed."""
    known = {record.version for record in ops.registry.versions(model)}
    intent = view.intent(model)
    if intent is not None and intent.model_version_policy.specific is not None:
        known.update(intent.model_version_policy.specific.versions)
    for (_, name), status in view.fleet.statuses.items():
        if name == model:
            known.update(int(v) for v in status.versions if v.isdigit())
    routes = view.routes.get(model)
    if routes is not None:
        known.update(int(v) for v in routes.versions if v.isdigit())
    return known


@click.command("predict", cls=OpsCommand)
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=0), help="Ask this version.")
@click.option("--label", help="Ask the version under this label (e.g. stable).")
@click.option("--input", "input_text", required=True, metavar="JSON",
              help='Inputs as JSON: {"x": [1.0, 2.0]} (name -> nested list of numbers, sent as DT_FLOAT); a bare list is input "x".')
@click.option("--host", help="Send to this host (default: the first host serving it).")
@click.option("--signature", default="serving_default", show_default=True, help="Signature to call.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Deadline of the Predict call, seconds.")
@output_option
@fleet_command
def predict(ops: Ops, model: str, version: int | None, label: str | None, input_text: str, host: str | None, signature: str,
            timeout: float, output: str) -> None:
    """Send one gRPC Predict to a host serving MODEL and print the outputs."""
    from tfleet.tfs.predict import TensorError
    from tfleet.tfs.predict import predict as send
    from tfleet.tfs.types import TfsDeadlineExceeded, TfsError, TfsUnavailable

    _check_model_name(model)
    if version is not None and label is not None:
        raise bad_input("give --version or --label, not both")
    inputs = _inputs(input_text)
    candidates, source, view = _candidates(ops, model, version, label)
    wanted = f"version {version}" if version is not None else (f"label {label}" if label is not None else "any version")
    if host is not None:
        chosen = [c for c in candidates if c[0] == host]
        if not chosen:
            record_kv = ops.store.get(ops.keyspace.host(host))
            if record_kv is None:
                raise bad_input(f"unknown host {host}: no agent registered it (hosts/{host})")
            from tfleet.schema import HostRecord, parse

            record = parse(HostRecord, record_kv.value, record_kv.key)
            note(f"tfleet predict: {host} is not listed as serving {model} ({wanted}); asking it anyway")
            chosen = [(host, record.grpc_address)]
        candidates = chosen
    if not candidates:
        view = view or ops.view()
        if not view.knows_model(model):
            raise _unknown_model(ops, model, view)
        if version is not None:
            known = _known_versions(ops, view, model)
            if version not in known:
                raise bad_input(f"unknown version {version} of {model} (known: {', '.join(map(str, sorted(known))) or 'none'})")
        raise refused(f"no host serves {model} ({wanted}) AVAILABLE (from the {'routes key' if source == 'routes' else 'agents status keys'}); "
                      f"see tfleet explain {model}")
    target_host, address = candidates[0]
    try:
        result = send(address, model, inputs, version=version, label=label, signature=signature, timeout=timeout)
    except TensorError as exc:
        raise bad_input(f"--input: {exc}") from None
    except (TfsUnavailable, TfsDeadlineExceeded) as exc:
        raise refused(f"Predict on {target_host} ({address}) failed: {exc.message}") from None
    except TfsError as exc:
        # INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION: the request named something that is not there
        code = EXIT_BAD_INPUT if exc.code in (3, 5, 9) else 1
        raise CommandError(f"Predict on {target_host} ({address}) failed: {exc.message}", code) from None
    data = {"model": result.model, "version": result.version, "signature": result.signature, "host": target_host, "address": address,
            "outputs": result.outputs}

    def human() -> str:
        lines = [f"{result.model} version {result.version} on {target_host} ({address}):"]
        lines += [f"  {name}: {json.dumps(value)}" for name, value in result.outputs.items()]
        return "\n".join(lines)

    emit(output, data, human)
