"""One consistent view of the fleet, as of one etcd revision, parsed once per key revision.

Every value is validated here, once per revision of its key. A bad value never raises: it
is kept with its error so that the planner can report it where the operator looks
(modelstatus) and keep serving the last valid state.

A key is parsed into a ``KeyFile``: how to file it into a FleetSnapshot, and how to take it
out again. That makes a snapshot cheap to keep current: ``FleetBuilder`` applies only the
keys that changed (from the fleet cache, controller/fleetcache.py, or from a diff of two
reads in ``SnapshotReader``), in time proportional to the change, and records which models
and hosts the changed keys belong to, for the incremental planner. ``read`` is the one-shot
form (the CLI, tests); both file through the same KeyFiles, so they cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tfleet import schema
from tfleet.controller.compact import compact
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
from tfleet.store.types import Snapshot

T = TypeVar("T")
_VERSION_RE = re.compile(r"[0-9]{1,19}")

# The sections of the keyspace a FleetSnapshot is made of (history/ is not: no pass reads it).
SECTIONS = ("models", "hosts", "hostctl", "assignments", "status", "modelstatus", "versions", "schedules", "routes", "leader")


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    value: T | None
    error: str | None
    revision: int
    raw: bytes = b""  # the stored bytes when they did not parse (b"" when value is set)


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
    leader: Parsed[LeaderRecord] | None = None
    # key -> why it could not be read at all (``problems`` lists them in key order)
    problem_keys: dict[str, str] = field(default_factory=dict)
    # Every value no reader can use, key -> why (names and values alike): the input of the
    # fleet's problems key (controller/problems.py) and of `tfleet status`.
    bad_values: dict[str, str] = field(default_factory=dict)
    # the revision at which bad_values last changed (the problems key is rewritten only then)
    bad_values_revision: int = 0
    # models whose stored intent does not parse (kept here so a gauge need not scan intents)
    invalid_intents: set[str] = field(default_factory=set)
    # What differs from the previous state of the same FleetBuilder (None: unknown, plan all):
    # the models and hosts whose keys were added, changed or removed.
    changed_models: frozenset[str] | None = None
    changed_hosts: frozenset[str] | None = None

    @property
    def problems(self) -> list[str]:
        return [self.problem_keys[key] for key in sorted(self.problem_keys)]

    def add_assignment(self, place: tuple[str, str], parsed: Parsed[Assignment]) -> None:
        """File an assignment and keep the holder indexes in step."""
        self.assignments[place] = parsed
        self.holders.setdefault(place[1], set()).add(place[0])
        self.held_by.setdefault(place[0], set()).add(place[1])

    def remove_assignment(self, place: tuple[str, str]) -> None:
        self.assignments.pop(place, None)
        _discard(self.holders, place[1], place[0])
        _discard(self.held_by, place[0], place[1])

    def content(self) -> dict[str, Any]:
        """Everything a pass decides from, as plain comparable values (for tests: a snapshot
        kept current from the cache must equal one read afresh)."""
        return {
            "intents": self.intents,
            "hosts": self.hosts,
            "hostctl": self.hostctl,
            "assignments": self.assignments,
            "holders": self.holders,
            "held_by": self.held_by,
            "statuses": self.statuses,
            "status_revisions": self.status_revisions,
            "status_hosts": self.status_hosts,
            "routes": self.routes,
            "modelstatus": self.modelstatus,
            "versions": self.versions,
            "schedules": self.schedules,
            "leader": self.leader,
            "problems": self.problems,
            "bad_values": self.bad_values,
            "invalid_intents": self.invalid_intents,
        }


def _discard(index: dict[str, set[str]], name: str, member: str) -> None:
    members = index.get(name)
    if members is not None:
        members.discard(member)
        if not members:
            del index[name]


def _bad(key: str, error: str, *, unread: bool = True) -> tuple[Filer, Filer]:
    """File a value nobody can use where operators look for it (never drop it silently).

    unread=False: the value is also filed where it belongs (an intent, assignment or
    schedule with its error, reported on its model), so it is not repeated in ``problems``.
    """

    def file(fleet: FleetSnapshot) -> None:
        if unread:
            fleet.problem_keys[key] = error
        fleet.bad_values[key] = error

    def unfile(fleet: FleetSnapshot) -> None:
        fleet.problem_keys.pop(key, None)
        fleet.bad_values.pop(key, None)

    return file, unfile


def _both(first: tuple[Filer, Filer], second: tuple[Filer, Filer]) -> tuple[Filer, Filer]:
    def file(fleet: FleetSnapshot) -> None:
        first[0](fleet)
        second[0](fleet)

    def unfile(fleet: FleetSnapshot) -> None:
        second[1](fleet)
        first[1](fleet)

    return file, unfile


def _parse(model: type[T], key: str, value: bytes, revision: int) -> Parsed[T]:
    try:
        # The raw bytes are kept only when they do not parse (the CLI's dry run shows them):
        # a parsed value needs none, and at 100,000 models they were ~6% of the memory.
        # Equal parts of documents share one object (controller/compact.py: at 100,000 models
        # the parsed documents were most of the controller's memory). Only assignments are
        # often equal as a whole (a model's replicas): the others share their parts.
        return Parsed(compact(schema.parse(model, value, key), whole=model is Assignment), None, revision)  # type: ignore[arg-type]
    except SchemaError as exc:
        return Parsed(None, str(exc), revision, value)


Filer = Callable[["FleetSnapshot"], None]


def _nothing(fleet: FleetSnapshot) -> None:
    return None


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One key parsed once: how to file it into a snapshot, and how to take it out again.

    Every key files into slots no other key uses, so unfiling one key never disturbs another.
    """

    key: str
    mod_revision: int
    # (no raw value bytes: nothing reads them once parsed, and at 100,000 models they were
    # about 6% of the controller's memory; echoes are compared against FleetCache._echoes)
    file: Filer
    unfile: Filer
    # hosts/<h> only: the last valid host record this key held (kept across invalid values)
    host_record: HostRecord | None = None


def _in_dict(attr: str, name: Any, value: Any) -> tuple[Filer, Filer]:
    return (lambda fleet: getattr(fleet, attr).__setitem__(name, value), lambda fleet: getattr(fleet, attr).pop(name, None))


def _filers(ks: Keyspace, key: str, value: bytes, revision: int) -> tuple[Filer, Filer]:
    rest = key[len(ks.prefix) + 1 :]
    section, _, tail = rest.partition("/")
    if section == "models":
        name = ks.name_after(key, ks.models_prefix())
        parsed = _parse(ModelIntent, key, value, revision)

        def file_intent(fleet: FleetSnapshot) -> None:
            fleet.intents[name] = parsed
            if parsed.value is None:
                fleet.invalid_intents.add(name)

        def unfile_intent(fleet: FleetSnapshot) -> None:
            fleet.intents.pop(name, None)
            fleet.invalid_intents.discard(name)

        if parsed.error is None:
            return file_intent, unfile_intent
        return _both((file_intent, unfile_intent), _bad(key, parsed.error, unread=False))
    if section in ("hostctl", "modelstatus"):  # (hosts/: _host_filers)
        prefix = {"hostctl": ks.hostctl_prefix(), "modelstatus": ks.modelstatus_prefix()}[section]
        name = ks.name_after(key, prefix)
        kind: type[Any] = {"hostctl": HostControl, "modelstatus": ModelStatusReport}[section]
        parsed_doc = _parse(kind, key, value, revision)
        if parsed_doc.value is None:
            return _bad(key, parsed_doc.error or key)
        return _in_dict(section, name, parsed_doc.value)
    if section == "assignments":
        place = ks.parse_host_model(key, "assignments")
        parsed_assignment = _parse(Assignment, key, value, revision)
        filers: tuple[Filer, Filer] = (lambda fleet: fleet.add_assignment(place, parsed_assignment), lambda fleet: fleet.remove_assignment(place))
        return filers if parsed_assignment.error is None else _both(filers, _bad(key, parsed_assignment.error, unread=False))
    if section == "status":
        place = ks.parse_host_model(key, "status")
        status = _parse(ModelStatus, key, value, revision)
        if status.value is None:
            return _bad(key, status.error or key)

        def file_status(fleet: FleetSnapshot) -> None:
            fleet.statuses[place] = status.value  # type: ignore[assignment]
            fleet.status_revisions[place] = revision
            fleet.status_hosts.setdefault(place[1], set()).add(place[0])

        def unfile_status(fleet: FleetSnapshot) -> None:
            fleet.statuses.pop(place, None)
            fleet.status_revisions.pop(place, None)
            _discard(fleet.status_hosts, place[1], place[0])

        return file_status, unfile_status
    if section == "versions":
        model, _, version = tail.partition("/")
        if not _VERSION_RE.fullmatch(version):  # str.isdigit() accepts "²", which int() refuses
            raise InvalidName(f"key {key!r} must have the form {ks.versions_prefix()}<model>/<version>, the version in decimal digits")
        validate_name("model", model)
        record = _parse(VersionRecord, key, value, revision)
        if record.value is None:
            return _bad(key, record.error or key)
        number = int(version)
        if str(number) != version:  # "01" and "1" must not share a slot
            raise InvalidName(f"key {key!r}: version {version!r} must be written without leading zeros ({number})")

        def file_version(fleet: FleetSnapshot) -> None:
            fleet.versions.setdefault(model, {})[number] = record.value  # type: ignore[assignment]

        def unfile_version(fleet: FleetSnapshot) -> None:
            known = fleet.versions.get(model)
            if known is not None:
                known.pop(number, None)
                if not known:
                    del fleet.versions[model]

        return file_version, unfile_version
    if section == "schedules":
        model, _, schedule_id = tail.partition("/")
        validate_name("model", model)
        validate_name("schedule", schedule_id)
        parsed_action = _parse(ScheduledAction, key, value, revision)
        filed = _in_dict("schedules", (model, schedule_id), parsed_action)
        return filed if parsed_action.error is None else _both(filed, _bad(key, parsed_action.error, unread=False))
    if section == "routes":
        name = ks.name_after(key, ks.routes_prefix())
        table = _parse(RouteTable, key, value, revision).value
        return _in_dict("routes", name, table if table is not None and table.model == name else None)
    if key == ks.leader():
        leader = _parse(LeaderRecord, key, value, revision)
        filed_leader: tuple[Filer, Filer] = (lambda fleet: setattr(fleet, "leader", leader), lambda fleet: setattr(fleet, "leader", None))
        return filed_leader if leader.error is None else _both(filed_leader, _bad(key, leader.error, unread=False))
    return _nothing, _nothing  # history, problems, and keys of later versions: not planning input


def _host_filers(ks: Keyspace, key: str, value: bytes, revision: int, previous: KeyFile | None) -> tuple[Filer, Filer, HostRecord | None]:
    """hosts/<h>: a valid record is filed; an invalid one keeps the key's last valid record.

    The agent writes its record bound to its lease, so the key exists exactly while the host
    lives (etcd deletes it when the lease expires: then the host is gone). A bad value written
    over it by hand (etcdctl put, with or without --lease) does not end the host: counting it
    gone would delete its assignments at once, with no make-before-break, and TF Serving would
    unload good models. So the host keeps its last valid record while the key exists, the bad
    value is reported (<prefix>/problems), and the agent writes its key back within a probe
    interval. A host whose key never held a valid value in this process is not filed.
    """
    name = ks.name_after(key, ks.hosts_prefix())
    parsed = _parse(HostRecord, key, value, revision)
    if parsed.value is not None:
        file, unfile = _in_dict("hosts", name, parsed.value)
        return file, unfile, parsed.value
    kept = previous.host_record if previous is not None else None
    error = parsed.error or key
    if kept is None:
        file, unfile = _bad(key, error)
        return file, unfile, None
    error = schema.safe_text(f"{error} (the controller keeps host {name}'s last valid record while the key exists)")
    file, unfile = _both(_in_dict("hosts", name, kept), _bad(key, error))
    return file, unfile, kept


def is_host_key(ks: Keyspace, key: str) -> bool:
    return key.startswith(ks.hosts_prefix())


def parse_key(ks: Keyspace, key: str, value: bytes, revision: int, previous: KeyFile | None = None) -> KeyFile:
    """Parse one key (never raises: a bad name or value becomes a problem or an error).

    previous: the key's KeyFile before this value (for hosts/<h>: its last valid record)."""
    record: HostRecord | None = None
    try:
        if is_host_key(ks, key):
            file, unfile, record = _host_filers(ks, key, value, revision, previous)
        else:
            file, unfile = _filers(ks, key, value, revision)
    except InvalidName as exc:
        file, unfile = _bad(key, schema.safe_text(f"{key}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - one key must never fail the whole snapshot
        file, unfile = _bad(key, schema.safe_text(f"{key}: could not be read ({type(exc).__name__}: {exc})")[:2000])
    return KeyFile(key, revision, file, unfile, record)


def read(snapshot: Snapshot, ks: Keyspace) -> FleetSnapshot:
    """Parse every key of one snapshot (no memory of earlier reads)."""
    fleet = FleetSnapshot(snapshot.revision, bad_values_revision=snapshot.revision)
    for kv in snapshot.items:
        parse_key(ks, kv.key, kv.value, kv.mod_revision).file(fleet)
    return fleet


class FleetBuilder:
    """One FleetSnapshot kept current by applying the keys that changed, in place.

    The snapshot it returns is the same object every time: its owner (one thread) must not
    keep reading it while applying the next changes. Applying costs what changed, never the
    whole fleet; ``changed_models``/``changed_hosts`` come from the changed keys only, less
    the ``quiet`` ones (the controller's own writes coming back: nothing to plan again).
    """

    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self._filed: dict[str, KeyFile] = {}
        self.fleet: FleetSnapshot | None = None
        self.applied = 0  # keys applied by the last call (for the metric)

    def forget(self) -> None:
        """The next apply must be given every key (it rebuilds and reports no change sets)."""
        self._filed.clear()
        self.fleet = None

    def rebuild(self, revision: int, files: Iterable[KeyFile]) -> FleetSnapshot:
        """A new snapshot of exactly ``files`` (change sets None: everything is new)."""
        fleet = FleetSnapshot(revision, bad_values_revision=revision)
        self._filed = {}
        for keyfile in files:
            keyfile.file(fleet)
            self._filed[keyfile.key] = keyfile
        self.fleet = fleet
        self.applied = len(self._filed)
        return fleet

    def apply(self, revision: int, changes: Mapping[str, KeyFile | None], quiet: Iterable[str] = ()) -> FleetSnapshot:
        """Bring the snapshot to ``revision``: each changed key's new file (None: deleted)."""
        fleet = self.fleet
        if fleet is None:
            return self.rebuild(revision, (f for f in changes.values() if f is not None))
        bad = fleet.bad_values
        for key, keyfile in changes.items():
            was_bad = bad.get(key)
            old = self._filed.pop(key, None)
            if old is not None:
                old.unfile(fleet)
            if keyfile is not None:
                keyfile.file(fleet)
                self._filed[key] = keyfile
            if bad.get(key) != was_bad:
                fleet.bad_values_revision = revision
        quiet = set(quiet)
        models: set[str] = set()
        hosts: set[str] = set()
        for key in changes:
            if key not in quiet:
                classify(self._ks, key, models, hosts)
        fleet.revision = revision
        fleet.changed_models = frozenset(models)
        fleet.changed_hosts = frozenset(hosts)
        self.applied = len(changes)
        return fleet


class SnapshotReader:
    """Whole-prefix snapshots one after another (the one-shot reads of tests and benches):
    keys whose revision did not change keep their parsed value, and only changed keys are
    re-filed. The controller itself reads from the fleet cache instead."""

    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self._files: dict[str, KeyFile] = {}
        self._builder = FleetBuilder(keyspace)

    def forget(self) -> None:
        """Parse everything again next time and report no changes (everything is new)."""
        self._files.clear()
        self._builder.forget()

    def read(self, snapshot: Snapshot) -> FleetSnapshot:
        changes: dict[str, KeyFile | None] = {}
        seen = set()
        for kv in snapshot.items:
            seen.add(kv.key)
            old = self._files.get(kv.key)
            if old is None or old.mod_revision != kv.mod_revision:
                changes[kv.key] = self._files[kv.key] = parse_key(self._ks, kv.key, kv.value, kv.mod_revision, old)
        for key in self._files.keys() - seen:
            del self._files[key]
            changes[key] = None
        return self._builder.apply(snapshot.revision, changes)


def classify(ks: Keyspace, key: str, models: set[str], hosts: set[str]) -> None:
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
