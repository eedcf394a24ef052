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

One supervised thread, ``history-recorder``, runs the one loop (tfleet/loop.py): idle while
standby, one *term* per leadership (read cursor, watch, record, until leadership ends); any
exception is logged, counted and followed by a backoff, and the thread goes on. The planning
of a batch (plan_batch, controller/history_plan.py) is pure.

Bounded memory: the watch hands its deliveries to a WatchInbox that holds at most
INBOX_EVENTS events; when it is full the watch's thread waits (and with it the store's watch
stream, tfleet/store/watch.py, and etcd's sending), so a first start on a never-compacted
etcd, which replays every revision since 1, is read as fast as it is recorded instead of
being queued in memory. Nothing is dropped: the watch resumes where the recorder took it.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from tfleet import schema
from tfleet.backoff import Backoff
from tfleet.controller.election import NotLeader
from tfleet.controller.history_plan import (
    MAX_ENTRIES_PER_TXN,
    MAX_OPS_PER_TXN,
    NOT_AN_OBJECT,
    STATE_PAGE,
    Batch,
    Change,
    ModelState,
    changes_of_events,
    copy_state,
    gap_changes,
    plan_batch,
)
from tfleet.controller.metrics import ControllerMetrics
from tfleet.keyspace import Keyspace
from tfleet.logs import Logger
from tfleet.loop import Loop, Outcome
from tfleet.registry import Registry, RegistryError
from tfleet.schema import HistoryAction, HistoryCursor, HistoryGap, RevisionSpan, SchemaError
from tfleet.store import Compare, Delete, Put, Snapshot, WatchEvent
from tfleet.ports import Fence, Store

# Models whose state a term keeps in memory (least recently used are read again if needed).
STATE_CACHE = 4096
# Changes taken from the watch before a flush (memory bound of one round).
ROUND_CHANGES = 2000
# Events the watch may queue for the recorder; beyond them the watch waits (its thread and stream).
INBOX_EVENTS = 2 * ROUND_CHANGES
# Attempts of one batch whose entry keys were taken meanwhile (a concurrent CLI write).
BATCH_ATTEMPTS = 5

# What the watch delivers: a list of events, or a fresh read after a compaction.
Delivery = list[WatchEvent] | Snapshot


class WatchInbox:
    """The watch's deliveries (lists of events, or a Snapshot after a compaction) on their way
    to the recorder, at most ``limit`` events of them: ``put`` (the watch's thread) waits while
    the inbox is full, so a replay of a long history is never all in memory. A delivery larger
    than the limit is let into an empty inbox (it is already in memory, and waiting would never
    end). ``close`` (the term ended) releases a waiting ``put``, which drops its delivery: the
    next term starts a new watch from the durable cursor, so nothing is lost."""

    def __init__(self, limit: int = INBOX_EVENTS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._limit = limit
        self._cond = threading.Condition()
        self._items: deque[tuple[Delivery, int]] = deque()
        self._events = 0
        self._closed = False

    @property
    def events(self) -> int:
        with self._cond:
            return self._events

    def put(self, item: Delivery, timeout: float | None = None) -> bool:
        """Queue one delivery, waiting while the inbox is full; False when it was closed (or
        ``timeout`` passed) first, and the delivery is dropped."""
        size = len(item) if isinstance(item, list) else 1
        with self._cond:
            admitted = self._cond.wait_for(lambda: self._closed or not self._items or self._events + size <= self._limit, timeout)
            if self._closed or not admitted:
                return False
            self._items.append((item, size))
            self._events += size
            self._cond.notify_all()
            return True

    def deliver(self, item: Delivery) -> None:
        """The watch's callback (on_events and on_reset): ``put`` without a timeout."""
        self.put(item)

    def take(self, timeout: float, max_events: int) -> list[Delivery]:
        """The deliveries queued now, up to about ``max_events`` events (at least one delivery),
        after waiting up to ``timeout`` seconds for the first."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or bool(self._items), timeout)
            taken: list[Delivery] = []
            count = 0
            while self._items and (not taken or count < max_events):
                item, size = self._items.popleft()
                taken.append(item)
                count += size if isinstance(item, list) else 0
                self._events -= size
            if taken:
                self._cond.notify_all()
            return taken

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._events = 0
            self._cond.notify_all()


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
        metrics: ControllerMetrics,
        log: Logger,
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
        # Standby: a turn every idle_wait (or at once when elected: wake()). Leading: one term
        # per turn. An error retries after the backoff; the loop's guard is the net under that.
        self._loop = Loop("history-recorder", self._turn, log=log, retry_backoff=self._backoff, rng=self._rng)
        self._thread = threading.Thread(target=self._loop.run, name="history-recorder", daemon=True)
        self.cursor: int | None = None  # for tests and /metrics: the revision recorded up to
        self._cursor_value: bytes | None = None  # as stored: the next write's compare
        self._last_gap: HistoryGap | None = None
        self._states: OrderedDict[str, ModelState] = OrderedDict()
        self._newest_seen = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._loop.wake()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _turn(self, woke: bool) -> Outcome:
        """One turn of the recorder's loop: a whole term while leading, else a look later."""
        if not self._election.is_leader:
            return Outcome("standby", requeue_after=self._idle_wait)
        try:
            self._term()
        except NotLeader as exc:
            self._log.info("history_recorder", result="lost_leadership", reason=exc.reason)
            return Outcome("lost_leadership", requeue_after=0.0)
        except _TermEnded as exc:
            self._log.warning("history_recorder", result="restarted", reason=str(exc))
            return Outcome("restarted", requeue_after=self._idle_wait)
        except Exception as exc:  # supervised: report, count, back off (the loop's retry), go on
            self._metrics.history_errors.inc()
            self._log.warning("history_recorder", result="error", error=f"{type(exc).__name__}: {exc}", failures=self._loop.retries + 1)
            return Outcome("error", retry=True)
        return Outcome("ok", requeue_after=0.0)

    # -- one leadership term -------------------------------------------------------------
    def _term(self) -> None:
        self._election.fence()  # NotLeader when the term is already over
        head = self._read_cursor()
        self._states.clear()
        self._newest_seen = self.cursor or 0  # lag counts changes of models/ seen, not other keys
        self._update_lag()
        inbox = WatchInbox()
        watch = self._store.watch_prefix(
            self._ks.models_prefix(),
            (self.cursor or 0) + 1,
            on_events=inbox.deliver,
            on_reset=inbox.deliver,
            on_error=lambda error: None,
            resume_at_compaction=True,
        )
        self._log.info("history_recorder", result="started", cursor=self.cursor, head=head, keep=self._keep)
        try:
            while not self._loop.stopping and self._election.is_leader:
                items = inbox.take(self._idle_wait, ROUND_CHANGES)
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
            inbox.close()  # before cancel: a watch thread waiting in put() lets go
            watch.cancel()
            self._metrics.history_lag.set(0)  # a standby records nothing: no lag to report

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
                snapshot = {model: copy_state(state) for model, state in states.items()}
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
        known: dict[int, tuple[HistoryAction, dict[str, Any] | None]] = {}
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


# The pure half's names stay importable from here (tests/unit/test_history_plan.py).
__all__ = [
    "MAX_ENTRIES_PER_TXN",
    "MAX_OPS_PER_TXN",
    "NOT_AN_OBJECT",
    "STATE_PAGE",
    "Batch",
    "Change",
    "HistoryRecorder",
    "ModelState",
    "WatchInbox",
    "changes_of_events",
    "gap_changes",
    "plan_batch",
]
