"""A model's history for the dashboard: a bounded read of its newest entries, never the cache."""

from __future__ import annotations

from typing import Any, Protocol

from tfleet import schema
from tfleet.controller.dashboard.state import _iso
from tfleet.jsondiff import diff_values
from tfleet.keyspace import Keyspace, Section
from tfleet.ports import KeyReader
from tfleet.schema import HistoryEntry, SchemaError
from tfleet.store import Snapshot

HISTORY_LIMIT = 20
HISTORY_LIMIT_MAX = 200


def build_history(snapshot: Snapshot, keyspace: Keyspace, model: str, limit: int = HISTORY_LIMIT, total: int | None = None) -> dict[str, Any]:
    """The newest ``limit`` history entries of a model (newest first), each with its changes.

    total: how many entries the model has, when the read that gave ``snapshot`` knows it
    (default: the entries in ``snapshot``)."""
    keyspace.history_prefix(model)  # InvalidName for a name no key can have
    entries: list[dict[str, Any]] = []
    for kv in reversed(snapshot.items):
        if len(entries) >= limit:
            break
        if not _of_model(keyspace, kv.key, model):
            continue
        try:
            entry = schema.parse(HistoryEntry, kv.value, kv.key)
        except SchemaError as exc:
            entries.append({"key": kv.key, "error": str(exc)})
            continue
        changes = [{"path": c.path, "old": c.old, "new": c.new} for c in diff_values(entry.previous, entry.new)]
        entries.append(
            {
                "sequence": entry.sequence,
                "action": entry.action,
                # null in the entry: written with the change, so the entry key has its revision
                "revision": entry.revision if entry.revision is not None else kv.mod_revision,
                "at": _iso(entry.at),
                "author": entry.author,
                "source": entry.source,
                "changes": changes,
            }
        )
    if total is None:
        total = sum(1 for kv in snapshot.items if _of_model(keyspace, kv.key, model))
    return {"model": model, "revision": snapshot.revision, "total": total, "entries": entries}


def _of_model(keyspace: Keyspace, key: str, model: str) -> bool:
    """A key under history/<model>/ (a malformed sequence too: it is shown with its error)."""
    parsed = keyspace.classify(key)
    return parsed.section is Section.HISTORY and parsed.model == model


class HistoryReader(Protocol):
    """What the dashboard's history endpoint reads (PagedHistoryReader; a test passes its own)."""

    def newest(self, model: str, limit: int) -> tuple[Snapshot, int | None]: ...


class PagedHistoryReader:
    """The newest entries of one model's history in ONE bounded, descending range read of its
    well-formed sequence keys (Keyspace.history_range), and their count (count_prefix): the
    response never grows with the history."""

    def __init__(self, store: KeyReader, keyspace: Keyspace) -> None:
        self._store = store
        self._ks = keyspace

    def newest(self, model: str, limit: int) -> tuple[Snapshot, int | None]:
        """(a snapshot holding the newest ``limit`` entries in key order, how many keys the
        model's history has)."""
        start, end = self._ks.history_range(model)
        page = self._store.list_range(start, end, limit=limit, descending=True)
        total = self._store.count_prefix(self._ks.history_prefix(model), revision=page.revision)
        return Snapshot(page.revision, tuple(reversed(page.items))), total


def default_history_reader(store: KeyReader, keyspace: Keyspace) -> PagedHistoryReader:
    return PagedHistoryReader(store, keyspace)
