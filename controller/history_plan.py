"""The history recorder's pure half: which entries, prunes and cursor one transaction writes.

controller/history.py runs the recorder (its thread, the watch, the fenced writes); this
module decides from plain values, so its table tests (tests/unit/test_history_plan.py) need
no etcd: ``plan_batch`` plans the next transaction from the front of the queued changes,
``changes_of_events`` and ``gap_changes`` turn watch events and a post-compaction snapshot
into changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tfleet.keyspace import InvalidName, Keyspace
from tfleet.logs import Logger
from tfleet.registry import normal_form
from tfleet.schema import HistoryAction, HistoryEntry, RevisionSpan
from tfleet.store import Delete, Snapshot, WatchEvent

# etcd refuses a transaction with more than --max-txn-ops (128 by default) operations in one
# branch or more compares: entries + prune deletes + the cursor stay below both.
MAX_ENTRIES_PER_TXN = 100
MAX_OPS_PER_TXN = 120
# Newest entries read of a model the first time a term meets it: the revisions already
# recorded (the CLI's, a former leader's), and the value the next entry's "previous" is.
STATE_PAGE = 20
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
    known: dict[int, tuple[HistoryAction, dict[str, Any] | None]] = field(default_factory=dict)
    complete: bool = True  # False: older entries exist beyond `known`
    pruned_below: int = 1  # sequence numbers below this are known to be pruned already

    def previous(self, revision: int) -> dict[str, Any] | None:
        """The intent the newest entry before ``revision`` recorded (None: none known)."""
        earlier = [r for r in self.known if r < revision]
        return self.known[max(earlier)][1] if earlier else None

    def remember(self, revision: int, action: HistoryAction, new: dict[str, Any] | None) -> None:
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
    action: HistoryAction
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


def changes_of_events(events: Sequence[WatchEvent], keyspace: Keyspace, after: int, log: Logger | None = None) -> list[Change]:
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


def copy_state(state: ModelState) -> ModelState:
    return ModelState(next_sequence=state.next_sequence, known=dict(state.known), complete=state.complete, pruned_below=state.pruned_below)
