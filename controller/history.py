"""The history recorder: every put and delete of ``models/`` gets its history entry.

The CLI writes a history entry in the same transaction as each intent change it makes
(tfleet/registry.py). Changes made with plain etcdctl have none of their own; the leading
controller records them here, by *replaying etcd's watch* of ``<prefix>/models/`` from a
durable cursor (``<prefix>/historycursor``, docs/keyspace.md), not by looking at whatever
its periodic snapshot happens to show. Hence:

* complete: every revision is seen, so 8,000 quick etcdctl edits give 8,000 entries, and
  edits made while no controller led are replayed by the next leader from the cursor;
* exactly once: each transaction appends a batch of entries AND advances the cursor, fenced
  by leadership (controller/election.py), so a deposed leader writes nothing and its
  successor continues exactly where the last successful batch stopped. Each entry key is
  create-only, and a change whose revision already has an entry (the CLI's own, written with
  the change) is skipped;
* no silent hole: when etcd compacted revisions after the cursor, the watch cannot replay
  them; every model whose intent changed (or was deleted) since the cursor gets one explicit
  ``gap`` entry that names the revisions (docs/keyspace.md, "Gaps");
* bounded: the same transactions prune each touched model's history to the newest ``keep``
  entries with one range delete, and nothing here ever reads a whole history (a model's
  newest STATE_PAGE entries, once per leadership term).

One supervised thread, ``history-recorder``: idle while standby, one *term* per leadership
(read cursor, watch, record, until leadership ends); any exception is logged, counted and
followed by a backoff, and the thread goes on. The planning of a batch (plan_batch) is pure.
"""

from __future__ import annotations

import datetime as dt
import queue
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfleet import schema
from tfleet.controller.election import NotLeader
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.ports import Fence, Store
from tfleet.registry import Registry, RegistryError, normal_form
from tfleet.schema import HistoryCursor, HistoryEntry, HistoryGap, RevisionSpan, SchemaError
from tfleet.store import Backoff, Compare, Delete, Put, Snapshot, WatchEvent

# etcd refuses a transaction with more than --max-txn-ops (128 by default) operations in one
# branch or more compares: entries + prune deletes + the cursor stay below both.
MAX_ENTRIES_PER_TXN = 100
MAX_OPS_PER_TXN = 120
# Newest entries read of a model the first time a term meets it: the revisions already
# recorded (the CLI's, a former leader's), and the value the next entry's "previous" is.
STATE_PAGE = 20
# Models whose state a term keeps in memory (least recently used are read again if needed).
STATE_CACHE = 4096
# Changes taken from the watch before a flush (memory bound of one round).
ROUND_CHANGES = 2000
# Attempts of one batch whose entry keys were taken meanwhile (a concurrent CLI write).
BATCH_ATTEMPTS = 5
NOT_AN_OBJECT = "the stored value is not a JSON object; it is recorded as null"


@dataclass(frozen=True)
class Change:
    """One put (value bytes) or delete (value None) of models/<model> at ``revision``; with
    ``gap`` set, a gap entry: ``value`` is the intent as of ``revision`` after unrecordable
    revisions gap.first..gap.last."""

    model: str
    value: bytes | None
    revision: int
    gap: RevisionSpan | None = None


@dataclass
class ModelState:
    """What a term knows of one model's history: enough to number, dedupe and link entries."""

    next_sequence: int
    # revision -> (action, new) of the newest entries known, by revision
    known: dict[int, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    complete: bool = True  # False: older entries exist beyond `known`
    pruned_below: int = 1  # sequence numbers below this are known to be pruned already

    def previous(self, revision: int) -> dict[str, Any] | None:
        """The intent the newest entry before ``revision`` recorded (None: none known)."""
        earlier = [r for r in self.known if r < revision]
        return self.known[max(earlier)][1] if earlier else None

    def remember(self, revision: int, action: str, new: dict[str, Any] | None) -> None:
        self.known[revision] = (action, new)
        if len(self.known) > STATE_PAGE:
            del self.known[min(self.known)]
            self.complete = False


@dataclass
class Batch:
    """One transaction's worth: entry puts, prune deletes, and how far it takes the cursor."""

    entries: list[tuple[str, HistoryEntry]] = field(default_factory=list)  # (key, entry)
    prunes: dict[str, Delete] = field(default_factory=dict)  # model -> range delete
    consumed: int = 0  # changes of the input this batch covers
    cursor: int = 0  # revision the cursor may advance to
    recorded: int = 0
    already: int = 0  # changes that had their entry already (the CLI's, written with them)
    gaps: int = 0
    pruned: int = 0
    skipped_puts: int = 0  # entries pruned in the very batch that numbered them


def plan_batch(
    changes: Sequence[Change],
    states: dict[str, ModelState],
    *,
    keyspace: Keyspace,
    keep: int,
    cursor: int,
    now: dt.datetime,
) -> Batch:
    """Plan the next transaction from the front of ``changes`` (ordered by revision).

    Pure: mutates only ``states`` (the caller discards them when the transaction fails).
    A batch ends between two revisions whenever possible, so the cursor can say "everything
    up to here"; only a single revision with more changes than fit in one transaction is
    split, and then the cursor stays just below it (the next batch dedupes what this one
    wrote, because its states know those revisions).
    """
    batch = Batch(cursor=cursor)
    touched: dict[str, int] = {}  # model -> newest sequence numbered in this batch
    prune_slots = 0
    index = 0
    while index < len(changes):
        change = changes[index]
        state = states.get(change.model)
        if state is None:
            break  # the caller loads states for the head of the queue only
        # a model touched first costs a prune slot too, when this batch could push it past keep
        prune_slot = change.model not in touched and state.next_sequence + MAX_ENTRIES_PER_TXN - keep > state.pruned_below
        ops_if_added = len(batch.entries) + 1 + prune_slots + (1 if prune_slot else 0) + 1
        if len(batch.entries) >= MAX_ENTRIES_PER_TXN or ops_if_added > MAX_OPS_PER_TXN:
            break
        index += 1
        batch.consumed = index
        known = state.known.get(change.revision)
        if known is not None and (change.gap is None or known[0] == "gap"):
            batch.already += 1
            _advance(batch, changes, index, change)
            continue
        if change.gap is None and not state.complete and state.known and change.revision < min(state.known):
            # Older than every entry we hold while older entries exist: recorded (or pruned) long ago.
            batch.already += 1
            _advance(batch, changes, index, change)
            continue
        entry = _entry_for(change, state, now)
        key = keyspace.history(change.model, entry.sequence)
        batch.entries.append((key, entry))
        state.remember(change.revision, entry.action, entry.new)
        state.next_sequence += 1
        if prune_slot:
            prune_slots += 1
        touched[change.model] = entry.sequence
        if change.gap is not None:
            batch.gaps += 1
        else:
            batch.recorded += 1
        _advance(batch, changes, index, change)
    # Entries that the same transaction would prune are not written at all (etcd refuses a
    # put inside a range the same transaction deletes); their numbers are used up.
    floors = {model: newest - keep + 1 for model, newest in touched.items()}
    kept = []
    for key, entry in batch.entries:
        if entry.sequence < floors[entry.model]:
            batch.skipped_puts += 1
        else:
            kept.append((key, entry))
    batch.entries = kept
    for model, floor in floors.items():
        state = states[model]
        if floor > state.pruned_below:
            start, end = keyspace.history_range(model, None, floor)
            batch.prunes[model] = Delete(start, end=end)
            batch.pruned += floor - state.pruned_below
            state.pruned_below = floor
    return batch


def _advance(batch: Batch, changes: Sequence[Change], index: int, change: Change) -> None:
    """Move the batch's cursor: to the change's revision when the next change is of a later
    revision (or none is left), else (a revision split across batches) just below it.

    Gap changes (all from one snapshot) move it to the end of the gap only with the last of
    them: a term that ends half-way writes the rest again, deduped by the states."""
    following = changes[index] if index < len(changes) else None
    if change.gap is not None:
        if following is None:
            batch.cursor = max(batch.cursor, change.gap.last)
    elif following is None or following.revision > change.revision:
        batch.cursor = max(batch.cursor, change.revision)
    else:
        batch.cursor = max(batch.cursor, change.revision - 1)


def _entry_for(change: Change, state: ModelState, now: dt.datetime) -> HistoryEntry:
    previous = state.previous(change.revision)
    note = None
    if change.value is None:
        new = None
    else:
        new = normal_form(change.value)
        if new is None:
            note = NOT_AN_OBJECT
    if change.gap is not None:
        action = "gap"
    elif change.value is None:
        action = "delete"
    else:
        action = "create" if previous is None else "update"
    return HistoryEntry(
        sequence=state.next_sequence,
        model=change.model,
        action=action,
        revision=change.revision,
        at=now,
        author=None,
        source="etcd",
        previous=previous,
        new=new,
        revisions=change.gap,
        note=note,
    )


def changes_of_events(events: Sequence[WatchEvent], keyspace: Keyspace, after: int, log: Any = None) -> list[Change]:
    """The changes of intents among watch events newer than ``after``; keys that are not
    ``models/<name>`` are skipped (reported: the controller marks them invalid anyway)."""
    prefix = keyspace.models_prefix()
    found = []
    for event in events:
        if event.mod_revision <= after:
            continue
        try:
            model = keyspace.name_after(event.key, prefix)
        except InvalidName as exc:
            if log is not None:
                log.info("history_key_skipped", key=event.key, revision=event.mod_revision, reason=str(exc))
            continue
        found.append(Change(model, event.value if event.kind == "put" else None, event.mod_revision))
    return found


def gap_changes(snapshot: Snapshot, keyspace: Keyspace, cursor: int) -> list[Change]:
    """One gap change per model whose intent changed after ``cursor``, as of ``snapshot``
    (read after etcd compacted the revisions between). Models deleted within the gap have no
    key here: HistoryRecorder._deleted_in_gap finds them through their history."""
    prefix = keyspace.models_prefix()
    span = RevisionSpan(first=cursor + 1, last=snapshot.revision)
    found = []
    for kv in snapshot.items:
        if kv.mod_revision <= cursor:
            continue
        try:
            model = keyspace.name_after(kv.key, prefix)
        except InvalidName:
            continue
        found.append(Change(model, kv.value, kv.mod_revision, gap=span))
    found.sort(key=lambda change: change.revision)
    return found


class _TermEnded(Exception):
    """The cursor moved under us (another writer): start a new term from etcd's state."""


class HistoryRecorder:
    """Runs the recorder thread; start() once, stop() at shutdown, wake() when elected."""

    def __init__(
        self,
        *,
        store: Store,
        keyspace: Keyspace,
        registry: Registry,
        election: Fence,
        metrics: Any,
        log: Any,
        keep: int,
        now: Callable[[], dt.datetime] = schema.utc_now,
        idle_wait: float = 0.5,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self._store = store
        self._ks = keyspace
        self._registry = registry
        self._election = election
        self._metrics = metrics
        self._log = log
        self._keep = keep
        self._now = now
        self._idle_wait = idle_wait
        self._backoff = backoff or Backoff(initial=0.5, cap=10.0)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="history-recorder", daemon=True)
        self.cursor: int | None = None  # for tests and /metrics: the revision recorded up to
        self._cursor_value: bytes | None = None  # as stored: the next write's compare
        self._last_gap: HistoryGap | None = None
        self._states: OrderedDict[str, ModelState] = OrderedDict()
        self._newest_seen = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._election.is_leader:
                self._wake.wait(self._idle_wait)
                self._wake.clear()
                continue
            try:
                self._term()
                failures = 0
            except NotLeader as exc:
                self._log.info("history_recorder", result="lost_leadership", reason=exc.reason)
            except _TermEnded as exc:
                self._log.warning("history_recorder", result="restarted", reason=str(exc))
                self._stop.wait(self._idle_wait)
            except Exception as exc:  # supervised: report, count, back off, go on
                failures += 1
                self._metrics.history_errors.inc()
                self._log.warning("history_recorder", result="error", error=f"{type(exc).__name__}: {exc}", failures=failures)
                self._stop.wait(self._backoff.delay(failures, self._rng))

    # -- one leadership term -------------------------------------------------------------
    def _term(self) -> None:
        self._election.fence()  # NotLeader when the term is already over
        head = self._read_cursor()
        self._states.clear()
        self._newest_seen = self.cursor or 0  # lag counts changes of models/ seen, not other keys
        self._update_lag()
        inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        watch = self._store.watch_prefix(
            self._ks.models_prefix(),
            (self.cursor or 0) + 1,
            on_events=inbox.put,
            on_reset=inbox.put,
            on_error=lambda error: None,
            resume_at_compaction=True,
        )
        self._log.info("history_recorder", result="started", cursor=self.cursor, head=head, keep=self._keep)
        try:
            while not self._stop.is_set() and self._election.is_leader:
                items = self._take(inbox)
                changes: list[Change] = []
                for item in items:
                    if isinstance(item, Snapshot):
                        self._flush(changes)  # order: everything before the reset first
                        changes = []
                        self._gap(item)
                    else:
                        found = changes_of_events(item, self._ks, self.cursor or 0, self._log)
                        if found:
                            self._newest_seen = max(self._newest_seen, found[-1].revision)
                        changes.extend(found)
                self._update_lag()
                self._flush(changes)
        finally:
            watch.cancel()
            self._metrics.history_lag.set(0)  # a standby records nothing: no lag to report

    def _take(self, inbox: queue.SimpleQueue[object]) -> list[object]:
        """The next round of watch deliveries: wait a little for the first, then take what
        has arrived, up to ROUND_CHANGES events."""
        try:
            first = inbox.get(timeout=self._idle_wait)
        except queue.Empty:
            return []
        items = [first]
        count = len(first) if isinstance(first, list) else 0
        while count < ROUND_CHANGES:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            count += len(item) if isinstance(item, list) else 0
        return items

    def _read_cursor(self) -> int:
        """Load the cursor (0 when absent: replay from etcd's first revision); returns etcd's
        current revision, for the lag gauge."""
        snap = self._store.list_prefix(self._ks.history_cursor())
        kv = snap.get(self._ks.history_cursor())
        self._cursor_value = kv.value if kv is not None else None
        self.cursor, self._last_gap = 0, None
        if kv is not None:
            try:
                cursor = schema.parse(HistoryCursor, kv.value, kv.key)
            except SchemaError as exc:
                # Replaying from the start is safe: recorded revisions are recognised.
                self._log.warning("history_cursor_unreadable", key=kv.key, error=str(exc), action="replaying from revision 1")
            else:
                self.cursor, self._last_gap = cursor.revision, cursor.last_gap
        return snap.revision

    def _update_lag(self) -> None:
        self._metrics.history_lag.set(max(0, self._newest_seen - (self.cursor or 0)))

    # -- writing -------------------------------------------------------------------------
    def _gap(self, snapshot: Snapshot) -> None:
        cursor = self.cursor or 0
        changes = gap_changes(snapshot, self._ks, cursor)
        if cursor == 0:
            # The first recorder ever on an etcd that has compacted (an upgrade: the history so
            # far was written by the CLI and by older controllers from their snapshots). A model
            # whose newest entry already records its current revision needs no gap entry.
            changes = [c for c in changes if c.revision not in self._states_for([c])[c.model].known]
        changes += self._deleted_in_gap(snapshot, cursor)
        span = RevisionSpan(first=cursor + 1, last=snapshot.revision)
        self._last_gap = HistoryGap(revisions=span, at=self._now(), models=len({c.model for c in changes}))
        self._log.warning(
            "history_gap",
            first=span.first,
            last=span.last,
            models=self._last_gap.models,
            reason="etcd compacted these revisions before the recorder read them",
        )
        self._newest_seen = max(self._newest_seen, snapshot.revision)
        if changes:
            self._flush(changes)
        if (self.cursor or 0) < snapshot.revision:
            self._write(Batch(cursor=snapshot.revision))  # nothing changed: only the cursor moves

    def _deleted_in_gap(self, snapshot: Snapshot, cursor: int) -> list[Change]:
        """Gap changes for models deleted within the gap: they have no key to find, but their
        history says they had an intent. Found by a skip scan of history/ (one one-key read per
        model with a history, done only after a gap), then the newest entries of those without
        a key now."""
        present = {k.model for kv in snapshot.items if (k := self._ks.classify(kv.key)).ok}
        span = RevisionSpan(first=cursor + 1, last=snapshot.revision)
        found = []
        for model in self._registry.models_with_history():
            if model in present:
                continue
            state = self._states_for([Change(model, None, snapshot.revision)])[model]
            if state.known and state.known[max(state.known)][1] is not None:
                found.append(Change(model, None, snapshot.revision, gap=span))
        return found

    def _flush(self, changes: list[Change]) -> None:
        start = 0
        while start < len(changes):
            rest = changes[start:]
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                states = self._states_for(rest[:MAX_ENTRIES_PER_TXN])
                snapshot = {model: _copy_state(state) for model, state in states.items()}
                batch = plan_batch(rest, snapshot, keyspace=self._ks, keep=self._keep, cursor=self.cursor or 0, now=self._now())
                if self._write(batch):
                    for model, state in snapshot.items():
                        self._cache(model, state)
                    break
                # An entry number was taken meanwhile (a CLI write): read those models again.
                for model in states:
                    self._states.pop(model, None)
                if attempt == BATCH_ATTEMPTS:
                    raise _TermEnded(f"history entries of {sorted(states)[:3]} kept being taken ({BATCH_ATTEMPTS} attempts)")
            start += batch.consumed

    def _write(self, batch: Batch) -> bool:
        """One fenced transaction: the batch's entries, its prunes and the cursor. False when
        an entry number was taken; _TermEnded when the cursor moved; NotLeader when deposed."""
        cursor_key = self._ks.history_cursor()
        cursor = HistoryCursor(revision=batch.cursor, updated_at=self._now(), keep=self._keep, last_gap=self._last_gap)
        compares = [Compare(key, "version", "==", 0) for key, _ in batch.entries]
        if self._cursor_value is None:
            compares.append(Compare(cursor_key, "version", "==", 0))
        else:
            compares.append(Compare(cursor_key, "value", "==", self._cursor_value))
        value = schema.encode(cursor)
        ops: list[Put | Delete] = [Put(key, schema.encode(entry)) for key, entry in batch.entries]
        ops += list(batch.prunes.values())
        ops.append(Put(cursor_key, value))
        if not self._election.fenced_txn(ops, compares):
            current = self._store.get(cursor_key)
            if (current.value if current is not None else None) != self._cursor_value:
                raise _TermEnded(f"{cursor_key} was changed by someone else")
            return False
        self._cursor_value = value
        self.cursor = batch.cursor
        if batch.recorded:
            self._metrics.history_entries.labels("etcd").inc(batch.recorded)
        if batch.already:
            self._metrics.history_entries.labels("cli").inc(batch.already)
        if batch.gaps:
            self._metrics.history_gaps.inc(batch.gaps)
        if batch.pruned:
            self._metrics.history_pruned.inc(batch.pruned)
        self._metrics.writes.labels("history", "put").inc(len(batch.entries))
        self._update_lag()
        if batch.entries or batch.pruned:
            self._log.info("history_recorded", entries=len(batch.entries), gaps=batch.gaps, pruned=batch.pruned, cursor=batch.cursor)
        return True

    # -- per-model state -----------------------------------------------------------------
    def _states_for(self, changes: Sequence[Change]) -> dict[str, ModelState]:
        states: dict[str, ModelState] = {}
        for change in changes:
            if change.model in states:
                continue
            state = self._states.get(change.model)
            if state is None:
                state = self._load(change.model)
                self._cache(change.model, state)
            states[change.model] = state
        return states

    def _load(self, model: str) -> ModelState:
        """The model's newest STATE_PAGE entries (one range read)."""
        newest = 0
        known: dict[int, tuple[str, dict[str, Any] | None]] = {}
        count = 0
        try:
            for numbered in self._registry.newest(model, limit=STATE_PAGE):
                sequence, entry = numbered.sequence, numbered.entry
                newest = max(newest, sequence)
                count += 1
                if entry.revision is not None:
                    known.setdefault(entry.revision, (entry.action, entry.new))
        except RegistryError as exc:
            # A hand-edited, unreadable entry: number on from the key names, link to nothing.
            self._log.warning("history_unreadable", model=model, error=str(exc))
            newest = self._registry._newest_sequence(model)
            return ModelState(next_sequence=newest + 1, complete=False, pruned_below=max(1, newest - self._keep + 1))
        return ModelState(
            next_sequence=newest + 1,
            known=known,
            complete=count < STATE_PAGE,
            pruned_below=max(1, newest - self._keep + 1),
        )

    def _cache(self, model: str, state: ModelState) -> None:
        self._states[model] = state
        self._states.move_to_end(model)
        while len(self._states) > STATE_CACHE:
            self._states.popitem(last=False)


def _copy_state(state: ModelState) -> ModelState:
    return ModelState(next_sequence=state.next_sequence, known=dict(state.known), complete=state.complete, pruned_below=state.pruned_below)


__all__ = ["Change", "HistoryRecorder", "ModelState", "plan_batch", "changes_of_events", "gap_changes"]
