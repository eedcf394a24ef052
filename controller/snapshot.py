"""One consistent view of the fleet, as of one etcd revision, parsed once per key revision.

Every value is validated here, once per revision of its key. A bad value never raises: it
is kept with its error so that the planner can report it where the operator looks
(modelstatus) and keep serving the last valid state.

A key is parsed into a ``KeyFile`` (controller/keyfile.py): how to file it into a
FleetSnapshot, and how to take it out again. That makes a snapshot cheap to keep current: ``FleetBuilder`` applies only the
keys that changed (from the fleet cache, controller/fleetcache.py, or from a diff of two
reads in ``SnapshotReader``), in time proportional to the change, and records which models
and hosts the changed keys belong to, for the incremental planner. ``read`` is the one-shot
form (the CLI, tests); both file through the same KeyFiles, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


from tfleet.keyspace import Keyspace, ParsedKey, Section
from tfleet.schema import (
    Assignment,
    HostControl,
    HostRecord,
    LeaderRecord,
    ModelIntent,
    ModelStatusReport,
    ScheduledAction,
    StatusFacts,
    VersionRecord,
)
from tfleet.controller.keyfile import (
    SECTIONS,
    Announced,
    KeyFile,
    NotedKeyFile,
    Parsed,
    _FILE,
    _REPLACE,
    _UNFILE,
    _add_frozen,
    _discard,
    _discard_frozen,
    announced,
    announced_assignment,
    announced_report,
    announced_route,
    is_host_key,
    known_route,
    parse_key,
)
from tfleet.store.types import Snapshot


_MODEL_SECTIONS = (Section.MODELS, Section.MODELSTATUS, Section.VERSIONS, Section.ASSIGNMENTS, Section.STATUS, Section.ROUTES)


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
    # (host, model) -> its agent's status, as a small slotted value (controller/keyfile.py)
    statuses: dict[tuple[str, str], StatusFacts] = field(default_factory=dict)
    # model -> hosts that have a status key for it: a sorted tuple, replaced when it changes
    # (routing iterates it; a model has a few: 56 bytes for two, a frozenset 216)
    status_hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)
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
    # Of changed_models, those whose only changed keys are agents' statuses (what the
    # reconciler may let wait a pass behind placement work: reconciler._defer_readiness).
    changed_by_status: frozenset[str] = frozenset()

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
        unfile, file = _UNFILE, _FILE
        for key, keyfile in changes.items():
            old = previous.get(key)
            if isinstance(old, NotedKeyFile) or isinstance(keyfile, NotedKeyFile):
                was_bad = bad.get(key)
                if old is not None:
                    old.unfile(fleet)
                if keyfile is not None:
                    keyfile.file(fleet)
                if bad.get(key) != was_bad:
                    fleet.bad_values_revision = revision
                continue
            # (plain KeyFiles, filed directly: only a NotedKeyFile touches bad_values)
            if old is not None:
                if keyfile is not None and old.kind == keyfile.kind and old.slot == keyfile.slot:
                    replace = _REPLACE.get(old.kind)
                    if replace is not None:
                        replace(fleet, keyfile)
                        continue
                unfile[old.kind](fleet, old)
            if keyfile is not None:
                file[keyfile.kind](fleet, keyfile)
        unplanned = changes.keys() - (quiet if isinstance(quiet, (set, frozenset)) else set(quiet))
        models: set[str] = set()
        hosts: set[str] = set()
        other: set[str] = set()  # models with a changed key other than an agent's status
        for key in unplanned:
            # (where the key files says what it is about: its key is not parsed again)
            known = changes[key] or previous.get(key)
            noted = None if known is None else _ABOUT.get(known.kind)
            if known is None or noted is None:
                _note_parsed(self._ks, key, models, hosts, other)
                continue
            kind, name = noted(known.slot)
            if kind == "host":
                hosts.add(name)
            elif kind == "status":
                models.add(name)
            else:
                if kind == "model":
                    models.add(name)
                other.add(name)
        fleet.revision = revision
        fleet.changed_models = frozenset(models)
        fleet.changed_hosts = frozenset(hosts)
        fleet.changed_by_status = frozenset(models - other)
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


# What a changed key is about, from where it files (KeyFile.kind and slot): what note_change
# finds by parsing the key, without parsing it (the status deletes of lost hosts' leases:
# ~20,000 keys when 100 of 1,000 hosts die at 100,000 models). ("model", m): a planning input of model m;
# ("status", m): an agent's status of m; ("host", h); ("other", m): a key of m that is not
# planning input (a schedule). Kinds not here ("none": a bad value, "leader") are parsed.
_ABOUT: dict[str, Callable[[Any], tuple[str, str]]] = {
    "intent": lambda slot: ("model", slot),
    "modelstatus": lambda slot: ("model", slot),
    "routes": lambda slot: ("model", slot),
    "assignment": lambda slot: ("model", slot[1]),
    "version": lambda slot: ("model", slot[0]),
    "status": lambda slot: ("status", slot[1]),
    "hosts": lambda slot: ("host", slot),
    "hostctl": lambda slot: ("host", slot),
    "schedules": lambda slot: ("other", slot[0]),
}


def change_sets(ks: Keyspace, keys: Iterable[str]) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(changed_models, changed_hosts, changed_by_status) of these changed keys, each key
    parsed: what FleetBuilder.apply reads from where the keys file (tests compare the two)."""
    models: set[str] = set()
    hosts: set[str] = set()
    other: set[str] = set()
    for key in keys:
        _note_parsed(ks, key, models, hosts, other)
    return frozenset(models), frozenset(hosts), frozenset(models - other)


def _note_parsed(ks: Keyspace, key: str, models: set[str], hosts: set[str], other: set[str]) -> None:
    """note_change, and other: the models with a changed key other than an agent's status."""
    parsed = note_change(ks, key, models, hosts)
    if parsed.section is not Section.STATUS and parsed.model is not None:
        other.add(parsed.model)


def note_change(ks: Keyspace, key: str, models: set[str], hosts: set[str]) -> ParsedKey:
    """Which model or host a key is about (keys that are not planning input are skipped);
    returns the key as parsed."""
    parsed = ks.classify(key)
    if parsed.section in (Section.HOSTS, Section.HOSTCTL):
        if parsed.host is not None:
            hosts.add(parsed.host)
    elif parsed.section in _MODEL_SECTIONS and parsed.model is not None:
        models.add(parsed.model)
    return parsed


# Parsing and filing one key live in controller/keyfile.py; these names are imported from
# here too (the snapshot is what its callers think in).
__all__ = [
    "SECTIONS",
    "Announced",
    "FleetBuilder",
    "FleetSnapshot",
    "KeyFile",
    "NotedKeyFile",
    "Parsed",
    "SnapshotReader",
    "announced",
    "announced_assignment",
    "announced_report",
    "announced_route",
    "change_sets",
    "is_host_key",
    "known_route",
    "note_change",
    "parse_key",
    "read",
]
