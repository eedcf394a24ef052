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

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from pydantic import BaseModel

from tfleet import schema
from tfleet.keyspace import InvalidName, Keyspace, Section
from tfleet import routing
from tfleet.controller.compact import compact
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
_Doc = TypeVar("_Doc", bound=BaseModel)
_MODEL_SECTIONS = (Section.MODELS, Section.MODELSTATUS, Section.VERSIONS, Section.ASSIGNMENTS, Section.STATUS, Section.ROUTES)

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
    # indexes of the assignments above: model -> hosts holding it, host -> models it holds.
    # A model's holders are a frozenset, replaced when they change (a model has a few): the
    # planner's placement input takes them as they are (frozenset(x) is x), not a copy each
    # (at 100,000 models ~200 bytes a model). A host's models (hundreds) are a set.
    holders: dict[str, frozenset[str]] = field(default_factory=dict)
    held_by: dict[str, set[str]] = field(default_factory=dict)
    statuses: dict[tuple[str, str], ModelStatus] = field(default_factory=dict)
    # model -> hosts that have a status key for it (a frozenset, as holders)
    status_hosts: dict[str, frozenset[str]] = field(default_factory=dict)
    # stored route tables, as their routing.content_digest (None: unreadable, rewritten by
    # the controller)
    routes: dict[str, bytes | None] = field(default_factory=dict)
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
        _add_frozen(self.holders, place[1], place[0])
        self.held_by.setdefault(place[0], set()).add(place[1])

    def remove_assignment(self, place: tuple[str, str]) -> None:
        self.assignments.pop(place, None)
        _discard_frozen(self.holders, place[1], place[0])
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


def _add_frozen(index: dict[str, frozenset[str]], name: str, member: str) -> None:
    members = index.get(name)
    if members is None:
        index[name] = frozenset((member,))
    elif member not in members:
        index[name] = members | {member}


def _discard_frozen(index: dict[str, frozenset[str]], name: str, member: str) -> None:
    members = index.get(name)
    if members is not None and member in members:
        if len(members) == 1:
            del index[name]
        else:
            index[name] = members - {member}


def _discard(index: dict[str, set[str]], name: str, member: str) -> None:
    members = index.get(name)
    if members is not None:
        members.discard(member)
        if not members:
            del index[name]


def _parse(model: type[_Doc], key: str, value: bytes, revision: int) -> Parsed[_Doc]:
    try:
        # The raw bytes are kept only when they do not parse (the CLI's dry run shows them):
        # a parsed value needs none, and at 100,000 models they were ~6% of the memory.
        # Equal parts of documents share one object (controller/compact.py: at 100,000 models
        # the parsed documents were most of the controller's memory). Only assignments are
        # often equal as a whole (a model's replicas): the others share their parts.
        return Parsed(compact(schema.parse(model, value, key), whole=model is Assignment), None, revision)
    except SchemaError as exc:
        return Parsed(None, str(exc), revision, value)


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One key parsed once: where it files into a snapshot (``file``), and out again (``unfile``).

    Every key files into slots no other key uses, so unfiling one key never disturbs another.
    Plain data (what, where, the value): at 100,000 models a pair of closures per key cost
    about as much as the parsed values themselves (bench/cache_memory.py). The key itself is
    not kept (the cache and the builder's callers file by it): four fields, 64 bytes a key;
    the rare extras (an error, a host's last valid record) are a ``NotedKeyFile``.
    """

    mod_revision: int
    # (no raw value bytes: nothing reads them once parsed, and at 100,000 models they were
    # about 6% of the controller's memory; echoes are compared against FleetCache._echoes)
    kind: str = "none"  # where the value goes: a key of _FILE ("none": nowhere)
    slot: Any = None  # under which name: a model or host, (host, model), (model, version), ...
    value: Any = None

    @property
    def error(self) -> str | None:
        """Filed in bad_values: a value nobody can use (never dropped silently); None here."""
        return None

    @property
    def host_record(self) -> HostRecord | None:
        return None

    def file(self, fleet: FleetSnapshot) -> None:
        _FILE[self.kind](fleet, self)

    def unfile(self, fleet: FleetSnapshot) -> None:
        _UNFILE[self.kind](fleet, self)


@dataclass(frozen=True, slots=True)
class NotedKeyFile(KeyFile):
    """A KeyFile with an error to report, or of a hosts/<h> key (its last valid record)."""

    key: str = ""
    error: str | None = None  # (a field over the base's property)
    # True: the error is also listed in ``problems`` (the value is filed nowhere else); False:
    # the value is filed where it belongs, with its error (an intent, assignment or schedule
    # reported on its model), so it is not repeated there.
    unread: bool = False
    # hosts/<h> only: the last valid host record this key held (kept across invalid values)
    host_record: HostRecord | None = None

    def file(self, fleet: FleetSnapshot) -> None:
        if self.error is not None:
            if self.unread:
                fleet.problem_keys[self.key] = self.error
            fleet.bad_values[self.key] = self.error
        _FILE[self.kind](fleet, self)

    def unfile(self, fleet: FleetSnapshot) -> None:
        _UNFILE[self.kind](fleet, self)
        if self.error is not None:
            fleet.problem_keys.pop(self.key, None)
            fleet.bad_values.pop(self.key, None)


def _file_intent(fleet: FleetSnapshot, f: KeyFile) -> None:
    fleet.intents[f.slot] = f.value
    if f.value.value is None:
        fleet.invalid_intents.add(f.slot)


def _unfile_intent(fleet: FleetSnapshot, f: KeyFile) -> None:
    fleet.intents.pop(f.slot, None)
    fleet.invalid_intents.discard(f.slot)


def _file_status(fleet: FleetSnapshot, f: KeyFile) -> None:
    fleet.statuses[f.slot] = f.value
    _add_frozen(fleet.status_hosts, f.slot[1], f.slot[0])


def _unfile_status(fleet: FleetSnapshot, f: KeyFile) -> None:
    fleet.statuses.pop(f.slot, None)
    _discard_frozen(fleet.status_hosts, f.slot[1], f.slot[0])


def _file_version(fleet: FleetSnapshot, f: KeyFile) -> None:
    model, number = f.slot
    fleet.versions.setdefault(model, {})[number] = f.value


def _unfile_version(fleet: FleetSnapshot, f: KeyFile) -> None:
    model, number = f.slot
    known = fleet.versions.get(model)
    if known is not None:
        known.pop(number, None)
        if not known:
            del fleet.versions[model]


Filer = Callable[[FleetSnapshot, KeyFile], None]


def _in_dict(attr: str) -> tuple[Filer, Filer]:
    return (lambda fleet, f: getattr(fleet, attr).__setitem__(f.slot, f.value), lambda fleet, f: getattr(fleet, attr).pop(f.slot, None))


_DICTS = {attr: _in_dict(attr) for attr in ("hosts", "hostctl", "modelstatus", "routes", "schedules")}
_FILE: dict[str, Filer] = {
    "none": lambda fleet, f: None,
    "intent": _file_intent,
    "assignment": lambda fleet, f: fleet.add_assignment(f.slot, f.value),
    "status": _file_status,
    "version": _file_version,
    "leader": lambda fleet, f: setattr(fleet, "leader", f.value),
    **{attr: filers[0] for attr, filers in _DICTS.items()},
}
_UNFILE: dict[str, Filer] = {
    "none": lambda fleet, f: None,
    "intent": _unfile_intent,
    "assignment": lambda fleet, f: fleet.remove_assignment(f.slot),
    "status": _unfile_status,
    "version": _unfile_version,
    "leader": lambda fleet, f: setattr(fleet, "leader", None),
    **{attr: filers[1] for attr, filers in _DICTS.items()},
}


class _Filing(NamedTuple):
    """What parse_key files for one key (a KeyFile's fields after its revision, and a
    NotedKeyFile's error and unread)."""

    kind: str = "none"
    slot: Any = None
    value: Any = None
    error: str | None = None
    unread: bool = False


def _bad(error: str) -> _Filing:
    """A value nobody can use, filed nowhere but where operators look (never dropped silently)."""
    return _Filing(error=error, unread=True)


def _with_error(kind: str, slot: Any, parsed: Parsed[Any]) -> _Filing:
    """A value filed where it belongs, with its error (if any) reported on it."""
    return _Filing(kind, slot, parsed, parsed.error)


def _name(text: str) -> str:
    """Host and model names recur in many keys: one string each (sys.intern)."""
    return sys.intern(text)


def _filing(ks: Keyspace, key: str, value: bytes, revision: int) -> _Filing:
    parsed_key = ks.classify(key)
    section = parsed_key.section
    if parsed_key.error is not None and section in SECTIONS:
        raise InvalidName(parsed_key.error)  # (parse_key reports it)
    if section == "models":
        assert parsed_key.model is not None
        return _with_error("intent", _name(parsed_key.model), _parse(ModelIntent, key, value, revision))
    if section in ("hostctl", "modelstatus"):  # (hosts/: _host_filing)
        name = parsed_key.host if section == "hostctl" else parsed_key.model
        assert name is not None
        kind: type[Any] = {"hostctl": HostControl, "modelstatus": ModelStatusReport}[section]
        parsed_doc = _parse(kind, key, value, revision)
        if parsed_doc.value is None:
            return _bad(parsed_doc.error or key)
        return _Filing(section, _name(name), parsed_doc.value)
    if section in ("assignments", "status"):
        assert parsed_key.host is not None and parsed_key.model is not None
        place = (_name(parsed_key.host), _name(parsed_key.model))
        if section == "assignments":
            return _with_error("assignment", place, _parse(Assignment, key, value, revision))
        status = _parse(ModelStatus, key, value, revision)
        if status.value is None:
            return _bad(status.error or key)
        return _Filing("status", place, status.value)
    if section == "versions":
        model, number = parsed_key.model, parsed_key.version  # (classify: ASCII digits, no leading zeros)
        assert model is not None and number is not None
        record = _parse(VersionRecord, key, value, revision)
        if record.value is None:
            return _bad(record.error or key)
        return _Filing("version", (_name(model), number), record.value)
    if section == "schedules":
        assert parsed_key.model is not None and parsed_key.schedule is not None
        return _with_error("schedules", (_name(parsed_key.model), parsed_key.schedule), _parse(ScheduledAction, key, value, revision))
    if section == "routes":
        assert parsed_key.model is not None
        name = _name(parsed_key.model)
        table = _parse(RouteTable, key, value, revision).value
        # Only the digest of a valid table is kept: the controller writes the tables and only
        # asks whether one it computes differs (routing.routes_changed).
        return _Filing("routes", name, routing.content_digest(table) if table is not None and table.model == name else None)
    if section == "leader":
        return _with_error("leader", None, _parse(LeaderRecord, key, value, revision))
    return _Filing()  # history, problems, and keys of later versions: not planning input


def _host_filing(ks: Keyspace, key: str, value: bytes, revision: int, previous: KeyFile | None) -> tuple[_Filing, HostRecord | None]:
    """hosts/<h>: a valid record is filed; an invalid one keeps the key's last valid record.

    The agent writes its record bound to its lease, so the key exists exactly while the host
    lives (etcd deletes it when the lease expires: then the host is gone). A bad value written
    over it by hand (etcdctl put, with or without --lease) does not end the host: counting it
    gone would delete its assignments at once, with no make-before-break, and TF Serving would
    unload good models. So the host keeps its last valid record while the key exists, the bad
    value is reported (<prefix>/problems), and the agent writes its key back within a probe
    interval. A host whose key never held a valid value in this process is not filed.
    """
    name = _name(ks.name_after(key, ks.hosts_prefix()))
    parsed = _parse(HostRecord, key, value, revision)
    if parsed.value is not None:
        return _Filing("hosts", name, parsed.value), parsed.value
    kept = previous.host_record if previous is not None else None
    error = parsed.error or key
    if kept is None:
        return _bad(error), None
    error = schema.safe_text(f"{error} (the controller keeps host {name}'s last valid record while the key exists)")
    return _Filing("hosts", name, kept, error, unread=True), kept


def is_host_key(ks: Keyspace, key: str) -> bool:
    return ks.in_section(key, Section.HOSTS)


def parse_key(ks: Keyspace, key: str, value: bytes, revision: int, previous: KeyFile | None = None) -> KeyFile:
    """Parse one key (never raises: a bad name or value becomes a problem or an error).

    previous: the key's KeyFile before this value (for hosts/<h>: its last valid record)."""
    record: HostRecord | None = None
    try:
        if is_host_key(ks, key):
            filing, record = _host_filing(ks, key, value, revision, previous)
        else:
            filing = _filing(ks, key, value, revision)
    except InvalidName as exc:
        filing = _bad(schema.safe_text(f"{key}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - one key must never fail the whole snapshot
        filing = _bad(schema.safe_text(f"{key}: could not be read ({type(exc).__name__}: {exc})")[:2000])
    if filing.error is None and record is None:
        return KeyFile(revision, filing.kind, filing.slot, filing.value)
    return NotedKeyFile(revision, filing.kind, filing.slot, filing.value, key, filing.error, filing.unread, record)


def known_value(ks: Keyspace, key: str, section: str, value: ModelStatusReport | Assignment, revision: int) -> KeyFile:
    """modelstatus/<m> or assignments/<h>/<m> holding exactly ``schema.encode(value)``: the
    controller's own write coming back (fleetcache.py), filed as the planner's object instead
    of a parsed copy (parse_key of those bytes gives an equal KeyFile: tests/unit/test_fleetcache.py)."""
    if section == "assignments":
        host, model = ks.parse_host_model(key, section)
        return KeyFile(revision, "assignment", (_name(host), _name(model)), Parsed(value, None, revision))
    return KeyFile(revision, "modelstatus", _name(ks.name_after(key, ks.modelstatus_prefix())), value)


def known_route(ks: Keyspace, key: str, value: bytes, revision: int) -> KeyFile:
    """routes/<m> holding the bytes the controller encoded from a table it built (its echo):
    the digest of its JSON, not validated again (= parse_key's: tests/unit/test_fleetcache.py)."""
    return KeyFile(revision, "routes", _name(ks.name_after(key, ks.routes_prefix())), routing.document_digest(json.loads(value)))


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
        self.fleet: FleetSnapshot | None = None
        self.applied = 0  # keys applied by the last call (for the metric)

    def forget(self) -> None:
        """The next apply must be given every key (it rebuilds and reports no change sets)."""
        self.fleet = None

    def rebuild(self, revision: int, files: Iterable[KeyFile]) -> FleetSnapshot:
        """A new snapshot of exactly ``files`` (change sets None: everything is new)."""
        fleet = FleetSnapshot(revision, bad_values_revision=revision)
        applied = 0
        for keyfile in files:
            keyfile.file(fleet)
            applied += 1
        self.fleet = fleet
        self.applied = applied
        return fleet

    def apply(
        self, revision: int, changes: Mapping[str, KeyFile | None], quiet: Iterable[str] = (), *, previous: Mapping[str, KeyFile | None]
    ) -> FleetSnapshot:
        """Bring the snapshot to ``revision``: each changed key's new file (None: deleted).

        previous: each changed key's file as last applied here (None or absent: it had none),
        what is unfiled. The caller keeps it (the fleet cache's cursor, SnapshotReader): the
        builder holds no key -> file map of its own, which at 100,000 models was a second
        ~710,000-entry map next to the cache's."""
        fleet = self.fleet
        if fleet is None:
            return self.rebuild(revision, (f for f in changes.values() if f is not None))
        bad = fleet.bad_values
        for key, keyfile in changes.items():
            was_bad = bad.get(key)
            old = previous.get(key)
            if old is not None:
                old.unfile(fleet)
            if keyfile is not None:
                keyfile.file(fleet)
            if bad.get(key) != was_bad:
                fleet.bad_values_revision = revision
        quiet = set(quiet)
        models: set[str] = set()
        hosts: set[str] = set()
        for key in changes:
            if key not in quiet:
                note_change(self._ks, key, models, hosts)
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
        previous: dict[str, KeyFile | None] = {}
        seen = set()
        for kv in snapshot.items:
            seen.add(kv.key)
            old = self._files.get(kv.key)
            if old is None or old.mod_revision != kv.mod_revision:
                previous[kv.key] = old
                changes[kv.key] = self._files[kv.key] = parse_key(self._ks, kv.key, kv.value, kv.mod_revision, old)
        for key in self._files.keys() - seen:
            previous[key] = self._files.pop(key)
            changes[key] = None
        return self._builder.apply(snapshot.revision, changes, previous=previous)


def note_change(ks: Keyspace, key: str, models: set[str], hosts: set[str]) -> None:
    """Which model or host a key is about (keys that are not planning input are skipped)."""
    parsed = ks.classify(key)
    if parsed.section in (Section.HOSTS, Section.HOSTCTL):
        if parsed.host is not None:
            hosts.add(parsed.host)
    elif parsed.section in _MODEL_SECTIONS and parsed.model is not None:
        models.add(parsed.model)
