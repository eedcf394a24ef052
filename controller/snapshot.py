"""One consistent view of the fleet, parsed from a single etcd read of the whole prefix.

Every value is validated here, once per revision of its key. A bad value never raises: it
is kept with its error so that the planner can report it where the operator looks
(modelstatus) and keep serving the last valid state.

``SnapshotReader`` reads snapshots one after another: keys whose revision did not change
reuse the value parsed before (re-validating tens of thousands of unchanged JSON values
would be most of a pass's work in a large fleet), and the snapshot records which models and
hosts the changed keys belong to, for the incremental planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tfleet import schema
from tfleet.keyspace import InvalidName, Keyspace, validate_name
from tfleet.schema import (
    Assignment,
    HostControl,
    HostRecord,
    LeaderRecord,
    ModelIntent,
    ModelStatus,
    ModelStatusReport,
    RouteTable,
    ScheduledAction,
    SchemaError,
    VersionRecord,
)
from tfleet.store import Snapshot

T = TypeVar("T")
_VERSION_RE = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    value: T | None
    error: str | None
    revision: int
    raw: bytes = b""


@dataclass
class FleetSnapshot:
    revision: int
    intents: dict[str, Parsed[ModelIntent]] = field(default_factory=dict)
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    hostctl: dict[str, HostControl] = field(default_factory=dict)
    assignments: dict[tuple[str, str], Parsed[Assignment]] = field(default_factory=dict)
    # indexes of the assignments above: model -> hosts holding it, host -> models it holds
    holders: dict[str, set[str]] = field(default_factory=dict)
    held_by: dict[str, set[str]] = field(default_factory=dict)
    statuses: dict[tuple[str, str], ModelStatus] = field(default_factory=dict)
    # mod_revision of each status key, so that a change can be found without comparing values
    status_revisions: dict[tuple[str, str], int] = field(default_factory=dict)
    # model -> hosts that have a status key for it
    status_hosts: dict[str, set[str]] = field(default_factory=dict)
    # stored route tables (None: unreadable, rewritten by the controller)
    routes: dict[str, RouteTable | None] = field(default_factory=dict)
    modelstatus: dict[str, ModelStatusReport] = field(default_factory=dict)
    versions: dict[str, dict[int, VersionRecord]] = field(default_factory=dict)
    schedules: dict[tuple[str, str], Parsed[ScheduledAction]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # keys that could not be read at all
    # Every value no reader can use, key -> why (names and values alike): the input of the
    # fleet's problems key (controller/problems.py) and of `tfleet status`.
    bad_values: dict[str, str] = field(default_factory=dict)
    # What differs from the previous read of the same SnapshotReader (None: unknown, plan all):
    # the models and hosts whose keys were added, changed or removed.
    changed_models: frozenset[str] | None = None
    changed_hosts: frozenset[str] | None = None

    def add_assignment(self, place: tuple[str, str], parsed: Parsed[Assignment]) -> None:
        """File an assignment and keep the holder indexes in step."""
        self.assignments[place] = parsed
        self.holders.setdefault(place[1], set()).add(place[0])
        self.held_by.setdefault(place[0], set()).add(place[1])


def _bad(key: str, error: str, *, unread: bool = True) -> Filer:
    """File a value nobody can use where operators look for it (never drop it silently).

    unread=False: the value is also filed where it belongs (an intent, assignment or
    schedule with its error, reported on its model), so it is not repeated in ``problems``.
    """

    def file(fleet: FleetSnapshot) -> None:
        if unread:
            fleet.problems.append(error)
        fleet.bad_values[key] = error

    return file


def _both(first: Filer, second: Filer) -> Filer:
    def file(fleet: FleetSnapshot) -> None:
        first(fleet)
        second(fleet)

    return file


def _parse(model: type[T], key: str, value: bytes, revision: int) -> Parsed[T]:
    try:
        return Parsed(schema.parse(model, value, key), None, revision, value)  # type: ignore[arg-type]
    except SchemaError as exc:
        return Parsed(None, str(exc), revision, value)


# A key's contribution to a FleetSnapshot: a function that files it (kept per key and revision).
Filer = Callable[[FleetSnapshot], None]


def _filer(ks: Keyspace, key: str, value: bytes, revision: int) -> Filer:
    """Parse one key once; return how to file it into any snapshot (no parsing then)."""
    rest = key[len(ks.prefix) + 1 :]
    section, _, tail = rest.partition("/")
    if section == "models":
        name = ks.name_after(key, ks.models_prefix())
        parsed = _parse(ModelIntent, key, value, revision)
        file_intent: Filer = lambda fleet: fleet.intents.__setitem__(name, parsed)  # noqa: E731
        return file_intent if parsed.error is None else _both(file_intent, _bad(key, parsed.error, unread=False))
    if section in ("hosts", "hostctl", "modelstatus"):
        prefix = {"hosts": ks.hosts_prefix(), "hostctl": ks.hostctl_prefix(), "modelstatus": ks.modelstatus_prefix()}[section]
        name = ks.name_after(key, prefix)
        kind: type[Any] = {"hosts": HostRecord, "hostctl": HostControl, "modelstatus": ModelStatusReport}[section]
        parsed_doc = _parse(kind, key, value, revision)
        target = {"hosts": "hosts", "hostctl": "hostctl", "modelstatus": "modelstatus"}[section]
        if parsed_doc.value is None:
            return _bad(key, parsed_doc.error or key)
        return lambda fleet: getattr(fleet, target).__setitem__(name, parsed_doc.value)
    if section == "assignments":
        place = ks.parse_host_model(key, "assignments")
        parsed_assignment = _parse(Assignment, key, value, revision)
        file_assignment: Filer = lambda fleet: fleet.add_assignment(place, parsed_assignment)  # noqa: E731
        return file_assignment if parsed_assignment.error is None else _both(file_assignment, _bad(key, parsed_assignment.error, unread=False))
    if section == "status":
        place = ks.parse_host_model(key, "status")
        status = _parse(ModelStatus, key, value, revision)
        if status.value is None:
            return _bad(key, status.error or key)

        def file_status(fleet: FleetSnapshot) -> None:
            fleet.statuses[place] = status.value  # type: ignore[assignment]
            fleet.status_revisions[place] = revision
            fleet.status_hosts.setdefault(place[1], set()).add(place[0])

        return file_status
    if section == "versions":
        model, _, version = tail.partition("/")
        if not _VERSION_RE.fullmatch(version):  # str.isdigit() accepts "²", which int() refuses
            raise InvalidName(f"key {key!r} must have the form {ks.versions_prefix()}<model>/<version>, the version in decimal digits")
        validate_name("model", model)
        record = _parse(VersionRecord, key, value, revision)
        if record.value is None:
            return _bad(key, record.error or key)
        return lambda fleet: fleet.versions.setdefault(model, {}).__setitem__(int(version), record.value)  # type: ignore[arg-type]
    if section == "schedules":
        model, _, schedule_id = tail.partition("/")
        validate_name("model", model)
        validate_name("schedule", schedule_id)
        parsed_action = _parse(ScheduledAction, key, value, revision)
        file_action: Filer = lambda fleet: fleet.schedules.__setitem__((model, schedule_id), parsed_action)  # noqa: E731
        return file_action if parsed_action.error is None else _both(file_action, _bad(key, parsed_action.error, unread=False))
    if section == "routes":
        name = ks.name_after(key, ks.routes_prefix())
        table = _parse(RouteTable, key, value, revision).value
        return lambda fleet: fleet.routes.__setitem__(name, table if table is not None and table.model == name else None)
    if key == ks.leader():
        leader = _parse(LeaderRecord, key, value, revision)
        return (lambda fleet: None) if leader.error is None else _bad(key, leader.error, unread=False)  # readers parse it themselves
    return lambda fleet: None  # history, problems, and keys of later versions: not planning input


def _filer_or_problem(ks: Keyspace, key: str, value: bytes, revision: int) -> Filer:
    try:
        return _filer(ks, key, value, revision)
    except InvalidName as exc:
        return _bad(key, schema.safe_text(f"{key}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - one key must never fail the whole snapshot
        return _bad(key, schema.safe_text(f"{key}: could not be read ({type(exc).__name__}: {exc})")[:2000])


def read(snapshot: Snapshot, ks: Keyspace) -> FleetSnapshot:
    """Parse every key of one snapshot (no memory of earlier reads)."""
    fleet = FleetSnapshot(snapshot.revision)
    for kv in snapshot.items:
        _filer_or_problem(ks, kv.key, kv.value, kv.mod_revision)(fleet)
    return fleet


class SnapshotReader:
    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self._cache: dict[str, tuple[int, Filer]] = {}
        self._first = True

    def forget(self) -> None:
        """Parse everything again next time and report no changes (everything is new)."""
        self._cache.clear()
        self._first = True

    def read(self, snapshot: Snapshot) -> FleetSnapshot:
        fleet = FleetSnapshot(snapshot.revision)
        cache: dict[str, tuple[int, Filer]] = {}
        changed_keys: list[str] = []
        for kv in snapshot.items:
            entry = self._cache.get(kv.key)
            if entry is None or entry[0] != kv.mod_revision:
                entry = (kv.mod_revision, _filer_or_problem(self._ks, kv.key, kv.value, kv.mod_revision))
                changed_keys.append(kv.key)
            cache[kv.key] = entry
            entry[1](fleet)
        removed = self._cache.keys() - cache.keys()
        self._cache = cache
        if not self._first:
            models: set[str] = set()
            hosts: set[str] = set()
            for key in (*changed_keys, *removed):
                _classify(self._ks, key, models, hosts)
            fleet.changed_models = frozenset(models)
            fleet.changed_hosts = frozenset(hosts)
        self._first = False
        return fleet


def _classify(ks: Keyspace, key: str, models: set[str], hosts: set[str]) -> None:
    """Which model or host a key is about (keys that are not planning input are skipped)."""
    parts = key[len(ks.prefix) + 1 :].split("/")
    section = parts[0]
    if section in ("models", "modelstatus", "versions") and len(parts) >= 2:
        models.add(parts[1])
    elif section in ("assignments", "status") and len(parts) == 3:
        models.add(parts[2])
    elif section in ("hosts", "hostctl") and len(parts) == 2:
        hosts.add(parts[1])
    elif section == "routes" and len(parts) == 2:
        models.add(parts[1])
