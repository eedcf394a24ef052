"""Reading and pruning the history of intents: ``history/<m>/<seq>``, bounded reads only.

The history is a set of append-only keys, one per change of ``models/<m>``; a key is an
ordinary current key, so it survives etcd compaction, unlike etcd's own revisions. Every
read here is bounded: history() pages through it newest first with a limit, entry() reads
one key, history_bounds() two, models_with_history() one per model (a skip scan).

An entry written in the same transaction as its change stores ``"revision": null`` (the
revision a transaction will get is unknowable before it commits); etcd gives the entry key
the very same ``mod_revision`` as the intent write, and _entry_of fills the field in from
it. Entries appended later (by the recorder) store the revision explicitly. History keys
must therefore never be rewritten, only appended or pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tfleet import schema
from tfleet.jsondiff import FieldChange, diff_values  # Registry.diff returns FieldChange
from tfleet.keyspace import InvalidName, Section
from tfleet.ports import KeyReader, NumberedEntry
from tfleet.registry.base import RegistryBase
from tfleet.registry.errors import RegistryError
from tfleet.schema import HistoryCursor, HistoryEntry, ModelIntent, SchemaError, parse
from tfleet.store import Delete, KeyValue

# Retention of the history when no controller has published one (docs/keyspace.md).
DEFAULT_HISTORY_KEEP = 100
# History entries read per etcd range request: a read never grows with the history.
HISTORY_PAGE = 100


def _object_of(raw: bytes) -> dict[str, Any] | None:
    """The stored JSON object, or None if the bytes are not one."""
    try:  # bounded and strict like every reader (a value nested 1,000 deep once failed every pass)
        return schema.decode_object(raw, "intent")
    except SchemaError:
        return None


def normal_form(raw: bytes) -> dict[str, Any] | None:
    """What a history entry records of a stored intent (the CLI's writes here, and the
    history recorder, controller/history.py, for etcdctl changes).

    A valid intent is recorded in full (defaults filled in), so that a diff between a value
    typed by hand with defaults left out and one written by the CLI shows only real changes;
    an invalid one is recorded as written; a value that is not a JSON object as None.
    """
    try:
        return schema.parse(ModelIntent, raw, "intent").model_dump(mode="json")
    except SchemaError:
        return _object_of(raw)


class HistoryReads(RegistryBase):
    """The history part of the Registry: reads, retention and pruning of history keys."""

    def history(self, model: str, *, limit: int | None = None, before: int | None = None) -> list[HistoryEntry]:
        """The model's recorded changes, oldest first (also after a delete).

        limit: only the newest ``limit`` entries; before: only entries with a smaller sequence
        number (to page further back). Read newest first, HISTORY_PAGE keys per request, so
        the caller decides how much of a long history it wants.
        """
        if limit is not None and limit < 1:
            raise RegistryError(f"limit must be at least 1, not {limit}")
        found = [numbered.entry for numbered in self.newest(model, limit=limit, before=before)]
        found.reverse()
        return found

    def newest(self, model: str, *, limit: int | None = None, before: int | None = None) -> Iterable[NumberedEntry]:
        """(sequence, entry) newest first, read page by page only as far as the caller
        iterates; ``revision`` is filled in for entries written with their change."""
        page = min(limit, HISTORY_PAGE) if limit is not None else HISTORY_PAGE
        for count, (sequence, kv) in enumerate(self._scan(model, descending=True, before=before, page=page), start=1):
            yield NumberedEntry(sequence, self._entry_of(kv))
            if limit is not None and count >= limit:
                return  # before the scan asks etcd for another page

    def entry(self, model: str, sequence: int) -> HistoryEntry:
        """History entry ``sequence`` (one key read); a RegistryError that says which entries
        exist when it does not, and that it was pruned when it is older than the oldest kept."""
        try:
            key = self._keys.history(model, sequence)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        kv = self._store.get(key)
        if kv is not None:
            return self._entry_of(kv)
        bounds = self.history_bounds(model)
        if bounds is None:
            raise RegistryError(f"model {model} has no history entry {sequence} (it has no history entries)")
        oldest, newest = bounds
        if sequence < oldest:
            raise RegistryError(
                f"entry {sequence} was pruned: model {model} keeps entries {oldest}..{newest} (retention {self.retention()}); pick one of those"
            )
        raise RegistryError(f"model {model} has no history entry {sequence} (entries: {oldest}..{newest})")

    def history_bounds(self, model: str) -> tuple[int, int] | None:
        """(oldest, newest) sequence numbers kept for the model, or None: two one-key reads."""
        newest = next(self._scan(model, descending=True, page=1), None)
        oldest = next(self._scan(model, descending=False, page=1), None)
        if newest is None or oldest is None:
            return None
        return oldest[0], newest[0]

    def last_valid_intent(self, model: str, *, max_entries: int = 50, page: int = 5) -> ModelIntent | None:
        """The newest valid intent recorded in the model's history, reading ``page`` entries
        at a time and at most ``max_entries`` (what the controller keeps serving while the
        intent in etcd is invalid)."""
        seen = 0
        before: int | None = None
        while seen < max_entries:
            entries = self.history(model, limit=min(page, max_entries - seen), before=before)
            for entry in reversed(entries):
                if entry.new is not None:
                    try:
                        return schema.validate(ModelIntent, entry.new, "new")
                    except SchemaError:
                        continue
            if len(entries) < min(page, max_entries - seen):
                return None
            seen += len(entries)
            before = entries[0].sequence
        return None

    def models_with_history(self) -> Iterator[str]:
        """Every model that has history keys, in key order: one one-key read per model (a
        skip scan), never a read of the entries themselves. For rare, fleet-wide questions
        (the history recorder after a gap: which models may have been deleted in it)."""
        prefix = self._keys.history_prefix()
        start, end = prefix, prefix[:-1] + "0"  # "0" follows "/": the end of the prefix
        while True:
            found = _range(self._store, start, end, limit=1, descending=False)
            if not found:
                return
            name = self._keys.first_segment(found[0].key, Section.HISTORY)
            try:
                self._keys.history_prefix(name)
            except InvalidName:
                self._log.warning("history_key_ignored", key=found[0].key, error="not under history/<model>/")
            else:
                yield name
            start = f"{prefix}{name}0"  # past every key of history/<name>/

    def diff(self, model: str, seq_a: int, seq_b: int) -> list[FieldChange]:
        """What changed from the intent recorded at seq_a to the one recorded at seq_b."""
        a = self.entry(model, seq_a)
        b = self.entry(model, seq_b)
        return diff_values(a.new, b.new)

    def retention(self) -> int:
        """How many entries per model the history keeps: what the leading controller's
        recorder published in its cursor (--history-keep), else DEFAULT_HISTORY_KEEP."""
        kv = self._store.get(self._keys.history_cursor())
        if kv is not None:
            try:
                cursor = parse(HistoryCursor, kv.value, kv.key)
            except SchemaError as exc:
                self._log.warning("history_cursor_unreadable", key=kv.key, error=str(exc))
            else:
                if cursor.keep is not None:
                    return cursor.keep
        return DEFAULT_HISTORY_KEEP

    def prune_op(self, model: str, newest: int, keep: int) -> Delete | None:
        """The range delete that keeps entries newest-keep+1..newest (None: nothing to drop)."""
        floor = newest - keep + 1
        if floor <= 1:
            return None
        start, end = self._keys.history_range(model, None, floor)
        return Delete(start, end=end)

    def prune_history(self, model: str, *, keep: int) -> int:
        """Delete all but the newest ``keep`` history entries (keep >= 1) in one range delete;
        returns how many were deleted. The newest entry is always kept, because the next
        sequence number is counted on from it."""
        if keep < 1:
            raise RegistryError(f"keep must be at least 1 (the newest entry numbers the next change), not {keep}")
        bounds = self.history_bounds(model)
        if bounds is None:
            return 0
        oldest, newest = bounds
        op = self.prune_op(model, newest, keep)
        if op is None:
            return 0
        doomed = max(0, newest - keep + 1 - oldest)
        self._store.txn([], [op])
        if doomed:
            self._log.info("history_pruned", model=model, deleted=doomed, kept=keep)
        return doomed

    def _history_range(self, model: str, first: int | None, before: int | None) -> tuple[str, str]:
        try:
            return self._keys.history_range(model, first, before)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _entry_of(self, kv: KeyValue) -> HistoryEntry:
        try:
            entry = parse(HistoryEntry, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(f"{exc} (history keys are written by tfleet only; restore or delete this one)") from None
        if entry.revision is None:
            # Written in the same transaction as the change: same mod_revision.
            entry = entry.model_copy(update={"revision": kv.mod_revision})
        return entry

    def _newest_sequence(self, model: str) -> int:
        """The highest sequence key (from the key name, so that an unreadable entry value
        cannot stop new changes from being recorded); 0 without entries. One key read."""
        return self._newest_with_revision(model)[0]

    def _newest_with_revision(self, model: str) -> tuple[int, int | None]:
        """(highest sequence, the revision its entry records or None if unreadable); (0, None)."""
        newest = next(self._scan(model, descending=True, page=1), None)
        if newest is None:
            return 0, None
        try:
            revision = self._entry_of(newest[1]).revision
        except RegistryError:
            revision = None
        return newest[0], revision

    def _scan(self, model: str, *, descending: bool, before: int | None = None, page: int = HISTORY_PAGE) -> Iterator[tuple[int, KeyValue]]:
        """(sequence, key) of the model's history keys, newest (or oldest) first, ``page`` keys
        per etcd request, fetched only as far as the caller iterates. A key in the range that
        is not a 12-digit sequence (written by hand) is skipped with a warning."""
        start, end = self._history_range(model, None, before)
        while True:
            kvs = _range(self._store, start, end, limit=page, descending=descending)
            for kv in kvs:
                try:
                    yield self._keys.history_sequence(kv.key, model), kv
                except InvalidName as exc:
                    self._log.warning("history_key_ignored", key=kv.key, error=str(exc))
            if len(kvs) < page:
                return
            page = HISTORY_PAGE
            if descending:
                end = kvs[-1].key
            else:
                start = kvs[-1].key + "\0"


def _range(store: KeyReader, start: str, end: str, *, limit: int, descending: bool) -> list[KeyValue]:
    """At most ``limit`` keys of [start, end), in key order or reversed: ONE etcd range request
    (the store's ``list_range``). The one place the registry reads a bounded range."""
    return list(store.list_range(start, end, limit=limit, descending=descending).items)
