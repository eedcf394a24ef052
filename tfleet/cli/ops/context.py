"""What every operator command shares: the Ops context (store, registry, keyspace, log) that
``fleet_command`` builds from the shared etcd options and --prefix, the --author option, model-name
checks and the compare-and-swap write of a host's hostctl key (apply, cordon, uncordon, drain).

Exit codes: 0 ok, 1 refused or failed, 2 bad input, 3 etcd unreachable (output.py)."""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from tfleet.cli.options import etcd_options, etcd_settings, fleet_prefix
from tfleet.cli.output import (
    CommandError,
    bad_input,
    note,
    refused,
)

if TYPE_CHECKING:
    from tfleet.cli.views import FleetView
    from tfleet.registry import ConflictError
    from tfleet.schema import HostControl, ModelIntent
    from tfleet.store import EtcdSettings

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
    exception = warning  # (tfleet.logs.Logger's whole shape; the registry logs no exception)


class Ops:
    """What a command works with: the store, the keyspace and the registry of one fleet."""

    def __init__(self, settings: EtcdSettings, prefix: str) -> None:
        from tfleet.keyspace import Keyspace
        from tfleet.registry import Registry
        from tfleet.store import EtcdStore

        self.keyspace = Keyspace(prefix)
        self.store = EtcdStore(settings)
        self.registry = Registry(self.store, self.keyspace, log=CliLog())

    def view(self, sections: tuple[str, ...] | None = None) -> FleetView:
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
        """ " by alice via cli", or " outside tfleet (etcdctl?)" when no entry records revision."""
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

    def last_valid(self, view: FleetView) -> dict[str, ModelIntent]:
        """For models whose intent in etcd is invalid: the newest valid intent in their history,
        which is what the controller keeps serving (it remembers the last valid one it saw)."""
        from tfleet.registry import RegistryError

        found: dict[str, ModelIntent] = {}
        for model in view.invalid_intents():
            try:
                intent = self.registry.last_valid_intent(model)  # the newest entries, a few at a time
            except RegistryError:
                continue
            if intent is not None:
                found[model] = intent
        return found

    def conflict(self, exc: ConflictError, rerun: str) -> str:
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

    with_etcd = etcd_options(run)
    return click.option("--prefix", default="/tfleet", envvar="TFLEET_PREFIX", show_envvar=True, show_default=True, help="etcd key prefix of this fleet.")(
        with_etcd
    )


def author_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--author",
        default=_default_author,
        envvar="TFLEET_AUTHOR",
        show_envvar=True,
        show_default="$USER",
        help="Who makes the change, as recorded in the history.",
    )(command)


def _unknown_model(ops: Ops, model: str, view: FleetView | None = None) -> CommandError:
    view = view or ops.view()
    known = view.models()
    hint = f"known models: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}" if known else "no model has an intent yet"
    return bad_input(f"unknown model {model} ({hint})")


def _check_model_name(model: str) -> None:
    from tfleet.keyspace import validate_name

    validate_name("model", model)


def _write_hostctl(ops: Ops, host: str, control: HostControl | None, expected: int, rerun: str) -> tuple[str, int]:
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
