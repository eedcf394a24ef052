"""How one key of the planning sections is parsed and filed into a FleetSnapshot.

A key is parsed once per revision into a ``KeyFile``: where its value goes in a snapshot
(its kind and slot), the value or its error, and how to take it out again. Parsing is total
and strict: a bad name or value never raises, it becomes a problem or an error the planner
reports. ``parse_key`` is the one entry point; ``Announced`` and ``known_route`` file the
controller's own writes when they come back (controller/fleetcache.py), without parsing them
again. The snapshot and its builder are in controller/snapshot.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from pydantic import BaseModel

from tfleet import routing, schema
from tfleet.controller.compact import compact
from tfleet.controller.status_shapes import STATUS_SHAPES
from tfleet.keyspace import InvalidName, Keyspace, Section
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
    StatusFacts,
    VersionRecord,
)

if TYPE_CHECKING:
    from tfleet.controller.snapshot import FleetSnapshot

T = TypeVar("T")
_Doc = TypeVar("_Doc", bound=BaseModel)

# The sections of the keyspace a FleetSnapshot is made of (history/ is not: no pass reads it).
SECTIONS = ("models", "hosts", "hostctl", "assignments", "status", "modelstatus", "versions", "schedules", "routes", "leader")


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    value: T | None
    error: str | None
    revision: int
    raw: bytes = b""  # the stored bytes when they did not parse (b"" when value is set)


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


# The fields whose lists are kept apart (controller/compact.py's ``alone``), by document.
_ALONE: dict[type[BaseModel], tuple[str, ...]] = {ModelStatusReport: ("replicas",)}


def _parse(model: type[_Doc], key: str, value: bytes, revision: int, *, kept: bool = True) -> Parsed[_Doc]:
    """kept=False: the value is read and dropped (a route table: only its digest is kept), so
    sharing its parts would only leave entries nothing else holds, which keep those parts
    alive until the table's next prune (at 100,000 models ~90,000 entries, ~15 MB of keys and
    slots, plus the parsed parts they held: controller/compact.py's docstring)."""
    try:
        if not kept:
            return Parsed(schema.parse(model, value, key), None, revision)
        # The raw bytes are kept only when they do not parse (the CLI's dry run shows them):
        # a parsed value needs none, and at 100,000 models they were ~6% of the memory.
        # Equal parts of documents share one object (controller/compact.py: at 100,000 models
        # the parsed documents were most of the controller's memory). Only assignments are
        # often equal as a whole (a model's replicas): the others share their parts. A
        # report's replica list names the model's own hosts: nearly never another report's
        # (98 % held by one report: bench/cache_memory.py), its entries are shared, the list not.
        return Parsed(compact(schema.parse(model, value, key), whole=model is Assignment, alone=_ALONE.get(model, ())), None, revision)
    except SchemaError as exc:
        return Parsed(None, str(exc), revision, value)


def _parse_status(key: str, value: bytes, revision: int) -> Parsed[StatusFacts]:
    """An agent's status, validated as a ModelStatus and kept as a StatusFacts.

    200,000 statuses at 100,000 models: the pydantic object and its ``__dict__`` cost 264
    bytes each, the slotted StatusFacts 72. Their versions and labels are nearly always equal
    to other statuses' (``{"1": AVAILABLE}``, ``{"stable": 1}``): one shared mapping each
    (controller/compact.py). Their time is not shared: each status has its own (the agent
    stamps each write), and a table entry for a time nobody else holds costs more than the
    time (~150 bytes against 48)."""
    known = STATUS_SHAPES.parse(value)  # (most statuses: their repeating part was read before)
    if known is not None:
        return Parsed(known, None, revision)
    try:
        status = schema.parse(ModelStatus, value, key)
    except SchemaError as exc:
        return Parsed(None, str(exc), revision, value)
    facts = StatusFacts(status.assignment_revision, compact(status.versions), compact(status.version_labels), compact(status.error), status.updated_at)
    STATUS_SHAPES.learn(value, facts)
    return Parsed(facts, None, revision)


def _add_sorted(index: dict[str, tuple[str, ...]], name: str, member: str) -> None:
    members = index.get(name, ())
    if member not in members:
        index[name] = tuple(sorted((*members, member)))


def _discard_sorted(index: dict[str, tuple[str, ...]], name: str, member: str) -> None:
    members = index.get(name)
    if members is not None and member in members:
        if len(members) == 1:
            del index[name]
        else:
            index[name] = tuple(m for m in members if m != member)


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
    _add_sorted(fleet.status_hosts, f.slot[1], f.slot[0])


def _unfile_status(fleet: FleetSnapshot, f: KeyFile) -> None:
    fleet.statuses.pop(f.slot, None)
    _discard_sorted(fleet.status_hosts, f.slot[1], f.slot[0])


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


Filer = Callable[["FleetSnapshot", "KeyFile"], None]


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

# Filing a key's new file over its old one in the same slot, for the kinds where that is
# unfile + file in one step: the value is replaced and the indexes already name the slot (an
# assignment's holders), and nothing reads the order of the mapping (unfile + file moves the
# key to its end: the order of hosts and modelstatus is read, by the rolling resync, so
# those are not here). A pass's echoes of changed assignments and route tables skip a pop
# and a re-add (an assignment's holder frozenset rebuilt twice).
_REPLACE: dict[str, Filer] = {
    "assignment": lambda fleet, f: fleet.assignments.__setitem__(f.slot, f.value),
    "routes": lambda fleet, f: fleet.routes.__setitem__(f.slot, f.value),
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
        status = _parse_status(key, value, revision)
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
        table = _parse(RouteTable, key, value, revision, kept=False).value
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


class Announced(NamedTuple):
    """A put of the controller's as its echo files into a snapshot: what ``parse_key`` of the
    bytes written gives (tests/unit/test_fleetcache.py), known to the writer already. The
    writer announces it with the write (FleetCache.expect), so the echo costs a digest and a
    KeyFile, not a parse of its key (Keyspace.classify, name checks, sys.intern: at 30,000
    models ~40% of applying a pass's echoes, bench/loss_pass.py). Its names are the
    snapshot's own (the planner's hosts and models come from it), interned there already."""

    section: str  # the key's section (the cache drops events its section's read holds)
    kind: str  # a key of _FILE
    slot: Any
    value: Any  # the report, the assignment, or a route table's content digest

    def file(self, revision: int) -> KeyFile:
        value = Parsed(self.value, None, revision) if self.kind == "assignment" else self.value
        return KeyFile(revision, self.kind, self.slot, value)


def announced_assignment(host: str, model: str, assignment: Assignment) -> Announced:
    return Announced("assignments", "assignment", (host, model), assignment)


def announced_report(model: str, report: ModelStatusReport) -> Announced:
    return Announced("modelstatus", "modelstatus", model, report)


def announced_route(model: str, digest: bytes) -> Announced:
    """routes/<m> holding a table whose routing.content_digest is ``digest``."""
    return Announced("routes", "routes", model, digest)


def announced(ks: Keyspace, key: str, value: ModelStatusReport | Assignment | bytes) -> Announced | None:
    """modelstatus/<m> or assignments/<h>/<m> holding exactly ``schema.encode(value)``, or
    routes/<m> holding a table whose content digest is ``value``, for a writer that knows
    only the key (its names parsed here); None for a key of another section."""
    section = ks.section(key)
    if section == "assignments":
        host, model = ks.parse_host_model(key, section)
        return announced_assignment(_name(host), _name(model), value)  # type: ignore[arg-type]
    if section == "routes":
        return announced_route(_name(ks.name_after(key, ks.routes_prefix())), value)  # type: ignore[arg-type]
    if section == "modelstatus":
        return announced_report(_name(ks.name_after(key, ks.modelstatus_prefix())), value)  # type: ignore[arg-type]
    return None


def known_route(ks: Keyspace, key: str, value: bytes, revision: int) -> KeyFile:
    """routes/<m> holding the bytes the controller encoded from a table it built (its echo):
    the digest of its JSON, not validated again (= parse_key's: tests/unit/test_fleetcache.py)."""
    return KeyFile(revision, "routes", _name(ks.name_after(key, ks.routes_prefix())), routing.document_digest(json.loads(value)))
