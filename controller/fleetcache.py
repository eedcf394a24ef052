"""The fleet cache: one watch-fed, in-memory copy of the keys the controller plans from.

The informer pattern (client-go's Reflector + store, Patroni's etcd3 KVCache), shaped for
tfleet::

      etcd ──list (paged, per section, one revision)──┐
        │                                              ▼
        └──watch <prefix>/ from revision+1──► FleetCache: key -> KeyFile (parsed once)
             (compacted: paged re-list)          │ one lock; a watch response is applied whole
                                                 ├── Cursor "controller" ─► FleetBuilder ─► pass
                                                 └── Cursor "dashboard"  ─► FleetBuilder ─► page

* Filled by a read of exactly the sections a pass needs (models, hosts, hostctl,
  assignments, status, modelstatus, versions, schedules, routes, leader), never history/,
  which only grows. Events of history/ and of unknown sections are dropped on arrival.
* Kept current by one watch of the prefix, resumed from the list's revision + 1 (the
  store's PrefixWatch resumes after errors by itself). After a compaction the watch calls
  back for a re-list: the same paged, section-filtered read (keys whose revision did not
  move keep their parsed value); every consumer then starts over once, since a key may have
  changed and changed back unseen.
* Each consumer holds a Cursor: the keys that changed since it last took. ``take`` copies,
  under the lock, the revision reached and those keys' files: a pass costs the change, and
  never sees half a watch response (a response's events are applied under one lock hold).
* ``verify`` (rare, from the app's scheduler) compares the cache with a fresh read of the
  sections at the cache's revision; a difference is logged, counted and re-listed.
* Echo suppression (a controller-runtime predicate): the controller announces the values it
  is about to write (``expect``); when a watch event brings exactly that value back, the
  controller's cursor records the key as ``quiet``: the snapshot takes the new value, but
  the model is not planned again for it. A report or assignment announced with its value
  (the planner's own object) is filed as that very object when it comes back: not parsed
  again, and held once (the planner keeps it too); a route table coming back is kept as the
  digest of its JSON, without a second validation.

How a section is read is a seam (``PrefixReader``, controller/sections.py): ``PagedReader``
(the default) uses the store's paginated read, every section at one revision; ``RangeReader``
models a store that cannot pin a revision (each section at its own revision; the cache then
drops, per section, the watch events that section's read already holds, and ``verify`` gives
no verdict): the tests keep that path honest.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tfleet.controller.sections import (
    Chunk,
    PagedReader,
    PinnedReader,
    PrefixReader,
    RangeReader,
    SectionRead,
    default_reader,
    iter_sections,
    read_sections,
    section_of,
    section_prefixes,
)
from tfleet.controller.snapshot import SECTIONS, Announced, KeyFile, announced, known_route, parse_key
from tfleet.keyspace import Keyspace
from tfleet.ports import Store
from tfleet.store import Snapshot, StoreError, WatchEvent


def _digest(value: bytes) -> bytes:
    """What an echo is compared by: equal values, equal digests (and 16 bytes, not ~500)."""
    return hashlib.blake2b(value, digest_size=16).digest()


_UNANNOUNCED: Any = object()  # what _echoes.pop gives for a key nobody announced


@dataclass(frozen=True)
class Changes:
    """What a cursor takes: the state reached and the keys changed since its last take."""

    revision: int
    files: dict[str, KeyFile | None]  # None: deleted
    quiet: frozenset[str]  # keys whose change is the taker's own write coming back
    everything: bool  # files holds every key (first take, or after forget)
    # each changed key's file at the taker's previous take (None: it had none), what the
    # taker's FleetBuilder unfiles: the builder keeps no key -> file map of its own (at
    # 100,000 models a second map of ~710,000 keys); empty when everything is set
    previous: dict[str, KeyFile | None] = field(default_factory=dict)


class Cursor:
    """One consumer's position in the cache. Threads: the cache writes, the consumer takes."""

    def __init__(self, cache: FleetCache, name: str, echoes: bool) -> None:
        self._cache = cache
        self.name = name
        self.echoes = echoes  # True: this consumer's own writes come back as quiet keys
        self._changed: dict[str, bool] = {}  # key -> quiet
        self._previous: dict[str, KeyFile | None] = {}  # key -> its file at the last take
        self._everything = True

    def _start_over(self) -> None:
        self._everything = True
        self._changed.clear()
        self._previous.clear()

    def forget(self) -> None:
        """The next take returns every key (the consumer starts over)."""
        with self._cache._lock:
            self._start_over()

    def take(self) -> Changes | None:
        """The changes since the last take; None while the cache has not been loaded."""
        return self._cache._take(self)


class FleetCache:
    """The controller process's one cache of the fleet (leader or standby alike)."""

    def __init__(self, store: Store, keyspace: Keyspace, *, log: Any, reader: PrefixReader | None = None, metrics: Any = None) -> None:
        self._store = store
        self._ks = keyspace
        self._log = log
        self._reader = reader or default_reader(store)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._files: dict[str, KeyFile] = {}
        self._floors: dict[str, int] = {}  # section -> revision its last read is as of
        # key -> digest of the value announced (None: a delete); digests, not the values: a first
        # pass at 100,000 models announces ~300,000 writes before their echoes come back
        self._echoes: dict[str, bytes | None] = {}
        # modelstatus/assignment/routes key -> (digest of the bytes announced, how their echo files)
        self._echo_values: dict[str, tuple[bytes, Announced]] = {}
        self._cursors: list[Cursor] = []
        self._listeners: list[Callable[[], None]] = []
        self._error_listeners: list[Callable[[Exception], None]] = []
        self.error: str | None = None  # the last etcd error, until the watch delivers again
        self._watch: Any = None
        self._start_lock = threading.Lock()
        self._pending_read: SectionRead | None = None  # the re-list the watch is about to hand to _on_reset
        self.revision = 0
        self.loaded = False
        self.relists = 0
        self.events_applied = 0

    # -- consumers ----------------------------------------------------------------------
    def cursor(self, name: str, *, echoes: bool = False) -> Cursor:
        cursor = Cursor(self, name, echoes)
        with self._lock:
            self._cursors.append(cursor)
        return cursor

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call listener (from the watch thread; it must be quick) after every applied change."""
        self._listeners.append(listener)

    def on_error(self, listener: Callable[[Exception], None]) -> None:
        """Call listener (from the watch thread) when the watch is interrupted (it resumes by itself)."""
        self._error_listeners.append(listener)

    def expect(self, writes: Mapping[str, bytes | None], values: Mapping[str, tuple[bytes, Any]] | None = None) -> None:
        """The controller is about to write these (None: delete): their echoes are quiet.

        values: modelstatus or assignment key -> (the bytes written, how their echo files: an
        ``Announced``, or the report or assignment they encode, schema.encode of it, whose
        key is then parsed here); routes key -> (the bytes written, an ``Announced`` or the
        table's routing.content_digest). The echo of those bytes is filed as announced, not
        parsed again (an assignment's echo is not quiet: it is planned again), and a route
        table's is kept as its digest without decoding it."""
        prefixes = (self._ks.modelstatus_prefix(), self._ks.assignments_prefix(), self._ks.routes_prefix())
        digests = {key: None if value is None else _digest(value) for key, value in writes.items()}
        known: dict[str, tuple[bytes, Announced]] = {}
        for key, (written, value) in (values or {}).items():
            filing = value if isinstance(value, Announced) else announced(self._ks, key, value) if key.startswith(prefixes) else None
            if filing is not None:
                # (the digest of the same bytes, when they are announced as a write too)
                digest = digests.get(key) if writes.get(key) is written else None
                known[key] = (digest or _digest(written), filing)
        with self._lock:
            self._echoes.update(digests)
            self._echo_values.update(known)

    def forget_echoes(self) -> None:
        """Writes failed or leadership changed: stop treating anything as an echo."""
        with self._lock:
            self._echoes.clear()
            self._echo_values.clear()

    def __len__(self) -> int:
        return len(self._files)

    def get(self, key: str) -> KeyFile | None:
        with self._lock:
            return self._files.get(key)

    # -- life cycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._watch is not None

    def ensure_started(self) -> bool:
        """Load the cache and start its watch unless done; False when etcd could not be read
        (the caller tries again on its next tick)."""
        with self._start_lock:
            if self._watch is not None:
                return True
            try:
                # parsed section by section as read, outside the lock (no watch runs yet: the
                # cache is ours alone, and a dashboard's take is not kept waiting)
                loaded = self._parse(iter_sections(self._reader, self._ks))
            except StoreError as exc:
                if str(exc) != self.error:
                    self._log.warning("fleet_cache_load_failed", error=str(exc))
                self.error = str(exc)
                return False
            with self._lock:
                first, changed = self._install_locked(*loaded)
            self._after_replace(first, changed, "start")
            try:
                self._watch = self._store.watch_prefix(
                    self._ks.prefix + "/",
                    min(loaded[1].values()) + 1,
                    on_events=self._on_events,
                    on_reset=self._on_reset,
                    on_error=self._on_error,
                    list_prefix=self._relist,
                )
            except StoreError as exc:
                self.error = str(exc)
                self._log.warning("fleet_cache_watch_failed", error=str(exc))
                return False
            self.error = None
            return True

    def stop(self) -> None:
        with self._start_lock:
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    def restart_watch(self) -> None:
        """Drop the watch's stream and resume after the last applied revision (a stuck stream)."""
        watch = self._watch
        if watch is not None:
            watch.restart()

    def verify(self) -> bool | None:
        """Compare the cache with a fresh read of the sections at the cache's revision; on a
        difference log it, count it and re-list. None when it cannot tell (a reader that
        cannot pin a revision, the revision compacted, or etcd down): rare by design (it reads
        every section), run from the app's scheduler."""
        if not getattr(self._reader, "pins", False) or not self.loaded:
            return None
        with self._lock:
            revision = self.revision
            held = {key: f.mod_revision for key, f in self._files.items()}
        try:
            read = read_sections(PinnedReader(self._reader, revision), self._ks)
        except StoreError:
            return None
        fresh = {kv.key: kv.mod_revision for kv in read.items}
        if fresh == held:
            return True
        differ = sorted(k for k in held.keys() | fresh.keys() if held.get(k) != fresh.get(k))
        self._log.warning("fleet_cache_diverged", revision=revision, keys=len(differ), first=differ[:5], action="re-listing")
        if self._metrics is not None:
            self._metrics.cache_divergences.inc()
        try:
            self.relist("diverged")
        except StoreError:
            pass
        return False

    def relist(self, reason: str) -> None:
        """Read the sections again (e.g. a verification found drift), from any thread.

        The lock is held across the read: the watch thread waits, so no event it applies can
        be older than the read (those it delivers afterwards are filtered by revision)."""
        with self._lock:
            first, changed = self._install_locked(*self._parse(iter_sections(self._reader, self._ks)))
        self._after_replace(first, changed, reason)

    # -- the watch thread ---------------------------------------------------------------
    def _relist(self, prefix: str) -> Snapshot:
        """What the watch reads after a compaction: the sections, paged; never history/."""
        read = read_sections(self._reader, self._ks)
        self._pending_read = read
        return Snapshot(read.revision, read.items)

    def _on_reset(self, snapshot: Snapshot) -> None:
        read, self._pending_read = self._pending_read, None
        if read is None or read.revision != snapshot.revision:  # a store that re-read on its own
            read = SectionRead({s: snapshot.revision for s in SECTIONS}, tuple(kv for kv in snapshot.items if section_of(self._ks, kv.key) is not None))
        self._replace(read, reason="compacted")

    def _on_error(self, error: Exception) -> None:
        if str(error) != self.error:
            self._log.info("fleet_cache_watch_interrupted", error=str(error), revision=self.revision)
        self.error = str(error)
        for listener in self._error_listeners:
            listener(error)

    def _on_events(self, events: list[WatchEvent]) -> None:
        try:
            self._apply_events(events)
        except Exception as exc:  # never lose events silently (the watch would skip them): re-read
            self._log.error("fleet_cache_apply_failed", error=f"{type(exc).__name__}: {exc}", action="re-listing")
            try:
                self.relist("apply_failed")
            except StoreError as relist_error:  # the next compaction or verification repairs it
                self._log.error("fleet_cache_relist_failed", error=str(relist_error))

    def _apply_events(self, events: list[WatchEvent]) -> None:
        """Apply one watch response under one lock hold, each event parsed before it.

        An echo of a value announced with how it files (``expect``) costs one digest and a
        KeyFile: no parse of its key or value. The digest of an event whose key was announced
        is taken once (outside the lock) and compared both with the announced value's and
        with the announced write's (quiet)."""
        ks, echoes, known_values, blake2b = self._ks, self._echoes, self._echo_values, hashlib.blake2b
        parsed: list[tuple[WatchEvent, str, KeyFile | None, bytes | None]] = []
        for event in events:
            # (each a single read, no lock needed: a digest, or a (digest, filing) pair)
            key, put = event.key, event.kind != "delete"
            known = known_values.get(key)
            # (_digest, inline)
            digest = blake2b(event.value, digest_size=16).digest() if put and (known is not None or echoes.get(key) is not None) else None
            if known is not None and digest == known[0]:
                filing = known[1]
                parsed.append((event, filing.section, filing.file(event.mod_revision), digest))
                continue
            section = section_of(ks, key)
            if section is None:
                continue  # history/, unknown sections: never cached
            keyfile = None
            if section == "routes" and digest is not None and digest == echoes.get(key):
                keyfile = known_route(ks, key, event.value, event.mod_revision)  # (our own table: valid)
            elif put and section != "hosts":  # (a host key is parsed with its previous value, below)
                keyfile = parse_key(ks, key, event.value, event.mod_revision)
            parsed.append((event, section, keyfile, digest))
        with self._lock:
            applied = 0
            floors, files, cursors = self._floors, self._files, self._cursors
            for event, section, keyfile, digest in parsed:
                if event.mod_revision <= floors.get(section, 0):
                    continue  # that section's read already holds it
                key, put = event.key, event.kind != "delete"
                if section == "hosts" and put:  # rare: keeps its last valid record
                    keyfile = parse_key(ks, key, event.value, event.mod_revision, files.get(key))
                expected = echoes.pop(key, _UNANNOUNCED)
                known_values.pop(key, None)
                if expected is _UNANNOUNCED:
                    quiet = False
                elif not put:
                    quiet = expected is None
                elif expected is None:
                    quiet = False  # (a delete was announced)
                else:  # (announced since the digest was skipped above: rare)
                    quiet = expected == (digest if digest is not None else _digest(event.value))
                previous = files.pop(key, None) if keyfile is None else files.get(key)
                if keyfile is not None:
                    files[key] = keyfile
                # each cursor notes the key, and its file until now (the one its last take
                # saw, if this is its first change since); quiet only while every change of
                # it since was (inline: once per event and cursor)
                for cursor in cursors:
                    if not cursor._everything:  # (its next take returns every key anyway)
                        changed = cursor._changed
                        changed[key] = quiet and changed.get(key, True) and cursor.echoes
                        cursor._previous.setdefault(key, previous)
                applied += 1
            if events:
                self.revision = max(self.revision, events[-1].mod_revision)
            self.events_applied += applied
        self._after_change(applied)

    # -- applying ------------------------------------------------------------------------
    def _replace(self, read: SectionRead, *, reason: str) -> None:
        """Make the cache exactly ``read``; consumers take everything next time."""
        with self._lock:
            first, changed = self._install_locked(*self._parse([(read.revisions, list(read.items))]))
        self._after_replace(first, changed, reason)

    def _parse(self, chunks: Iterable[Chunk]) -> tuple[dict[str, KeyFile], dict[str, int], int]:
        """The files of a read (keys whose revision did not move keep their parsed value), the
        revision each section is as of, and how many keys changed. Changes nothing: a read
        that fails half-way leaves the cache as it was."""
        held = self._files
        files: dict[str, KeyFile] = {}
        floors: dict[str, int] = {}
        changed = 0
        for revisions, items in chunks:
            floors.update(revisions)
            for kv in items:
                old = held.get(kv.key)
                if old is None or old.mod_revision != kv.mod_revision:
                    old = parse_key(self._ks, kv.key, kv.value, kv.mod_revision, old)
                    changed += 1
                files[kv.key] = old  # (a key read twice: the later value, as a dict of the read would)
            del revisions, items  # (this section's bytes go before the next one is read)
        return files, floors, changed + len(held.keys() - files.keys())

    def _install_locked(self, files: dict[str, KeyFile], floors: dict[str, int], changed: int) -> tuple[bool, int]:
        self._files = files
        self._floors = floors
        self._echoes.clear()
        self._echo_values.clear()
        # Events were lost: a key can have changed and changed back (or been written and
        # deleted) unseen, so "what differs" is not "what changed". Consumers start over
        # (the controller plans everything once); re-lists are rare.
        for cursor in self._cursors:
            cursor._start_over()
        self.revision = max(floors.values())
        first = not self.loaded
        self.loaded = True
        if not first:
            self.relists += 1
        return first, changed

    def _after_replace(self, first: bool, changed: int, reason: str) -> None:
        if not first:
            self._log.info("fleet_cache_relisted", reason=reason, revision=self.revision, keys=len(self._files), changed=changed)
            if self._metrics is not None:
                self._metrics.cache_relists.labels(reason).inc()
        self._after_change(0, notify=True)

    def _after_change(self, applied: int, notify: bool = False) -> None:
        self.error = None
        if self._metrics is not None:
            self._metrics.cache_keys.set(len(self._files))
            self._metrics.cache_revision.set(self.revision)
            self._metrics.cache_events.inc(applied)
        if applied or notify:
            for listener in self._listeners:
                listener()

    def _take(self, cursor: Cursor) -> Changes | None:
        with self._lock:
            if not self.loaded:
                return None
            if cursor._everything:
                files: dict[str, KeyFile | None] = dict(self._files)
                quiet: frozenset[str] = frozenset()
            else:
                files = dict(zip(cursor._changed, map(self._files.get, cursor._changed), strict=True))
                quiet = frozenset(itertools.compress(cursor._changed, cursor._changed.values()))
            changes = Changes(self.revision, files, quiet, cursor._everything, cursor._previous)
            cursor._changed, cursor._previous = {}, {}
            cursor._everything = False
            return changes


# The section reads live in controller/sections.py; these names are imported from here too.
__all__ = [
    "Changes",
    "Chunk",
    "Cursor",
    "FleetCache",
    "PagedReader",
    "PrefixReader",
    "RangeReader",
    "SectionRead",
    "default_reader",
    "iter_sections",
    "read_sections",
    "section_of",
    "section_prefixes",
]
