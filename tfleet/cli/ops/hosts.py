"""tfleet cordon, uncordon, drain: an operator's say on one host (its hostctl key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from tfleet.cli.ops.context import Ops, _write_hostctl, fleet_command
from tfleet.cli.output import (
    OpsCommand,
    bad_input,
    emit,
    note,
    output_option,
)

if TYPE_CHECKING:
    from tfleet.schema import HostControl

# -- cordon, uncordon, drain ----------------------------------------------------------------------


def _change_host(ops: Ops, host: str, change: Callable[[HostControl], HostControl], force: bool, verb: str, output: str) -> None:
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
            raise bad_input(
                f"unknown host {host}: no agent registered it (hosts/{host}) and it holds no assignment; "
                f"pass --force to set it anyway (e.g. before its agent starts)"
            )
    new = change(current)
    control = None if new == HostControl() else new
    action, revision = _write_hostctl(ops, host, control, expected, f"tfleet {verb}")
    assigned = sorted(
        m for kv in ops.store.list_prefix(ops.keyspace.assignments_prefix(host)).items if (k := ops.keyspace.classify(kv.key)).ok and (m := k.model)
    )
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


def _host_state(control: HostControl) -> str:
    if control.draining:
        return "draining"
    if control.cordoned:
        return "cordoned"
    return "schedulable (no cordon, no drain)"


def _host_command(name: str, help_text: str, change: Callable[[HostControl, str | None], HostControl], with_reason: bool) -> click.Command:
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


def _cordoned(current: HostControl, reason: str | None) -> HostControl:
    return current.model_copy(update={"cordoned": True, **({"reason": reason} if reason is not None else {})})


def _drained(current: HostControl, reason: str | None) -> HostControl:
    return current.model_copy(update={"cordoned": True, "draining": True, **({"reason": reason} if reason is not None else {})})


def _uncordoned(current: HostControl, reason: str | None) -> HostControl:
    return current.model_copy(update={"cordoned": False, "draining": False, "reason": ""})


cordon = _host_command("cordon", "Give HOST no new replicas (the ones it holds stay).", _cordoned, True)
uncordon = _host_command("uncordon", "Undo cordon and drain: HOST takes replicas again (its hostctl key is removed).", _uncordoned, False)
drain = _host_command("drain", "Move every replica off HOST, each once its replacement serves (make-before-break); cordons it too.", _drained, True)
