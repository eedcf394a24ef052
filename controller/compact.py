"""Equal parsed values share one object: the controller's memory at 100,000 models.

A parsed pydantic document costs 5 to 12 times its JSON bytes (measured with
bench/cache_memory.py: a 180-byte agent status held 2 KB, a 460-byte route table 4.6 KB), and
most of it repeats: the same ``{"1": {"state": "AVAILABLE", ...}}`` in 200,000 statuses, the
same version policy and rollout defaults in every intent, the same two assignments per model,
the same replica entries and endpoints per host in reports and route tables, and every
pydantic object's own set of the fields it was given (728 bytes from 5 fields on).

``Interner.compact`` makes a freshly parsed value share what it has in common with the values
already held: equal sub-documents (models, dicts, lists, timestamps) become one object, equal
strings one string, equal field sets one set. The value is still an instance of its pydantic
class and equal to what was parsed (tests/unit/test_compact.py): readers see no difference.

Why sharing is safe: parsed documents are frozen models, and tfleet never changes a parsed
value in place (it builds new documents: planner.py, routing.py); the cache already shares
each parsed value between the controller's snapshot and the dashboard's. A shared dict or
list inside a document is as read-only as the document.

The table forgets what nothing else holds any more (a count of references, checked when the
table has doubled since the last check), so it grows with what is held, never with history.

What is not put in the table: an entry and its key cost ~150-250 bytes, so a value that no
other document holds costs more shared than not. A census of the table by holders (a
converged fleet of 20,000 models, bench/cache_memory.py's --own-times fleet) found 13.1 MB of
keys and slots, more than half of them such entries: the parts of every route table, which
the fleet cache reads only for a digest and drops (entries nothing held but which kept their
values alive until the next prune: keyfile.py parses them with kept=False), and each report's
replica list, 98 % held by that report alone (its hosts are the model's own: ``alone``; its
entries are still shared). Each container's key is one flat tuple, its kind first (not
(kind, tuple(parts)): 48 bytes less an entry). With the three, 5.4 MB; at 100,000 models the
controller's objects went from 623 to 516 MB (``python -m bench.cache_memory --models 100000
--hosts 1000 --own-times``; 34 MB of it parsed objects the table kept alive: pydantic's
validate_json line in tracemalloc's --top, 161 -> 127 MB). Agent
statuses' times are not put in the table either (keyfile._parse_status: each has its own).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")
_SCALARS = (int, bool, type(None))
_MIN_PRUNE = 8192
# one key object each for the scalars most documents hold (keys are kept as long as the values)
_SCALAR_KEYS = {key: key for key in [(type(None), None), (bool, True), (bool, False), *((int, i) for i in range(-1, 1025))]}


class Interner:
    """One table of shared values (a process needs one: ``compact`` below)."""

    def __init__(self) -> None:
        self._table: dict[Any, Any] = {}
        self._prune_at = _MIN_PRUNE
        self.pruned = 0
        # The last field set and time shared (a pass's reports have the same fields and the
        # same updated_at object): compared first, before a key is made for the table. Each
        # memo holds its value, so _prune clears them first (the table forgets what nothing
        # else holds). Each is replaced whole and read once (the watch thread compacts what
        # it parses while the pass compacts its reports). Planning a report: compacting its
        # fields ~6 -> ~3 us.
        self._last_fields: set[str] = set()
        self._last_time: tuple[Any, Any] = (None, None)

    def __len__(self) -> int:
        return len(self._table)

    def compact(self, value: T, *, whole: bool = True, alone: Collection[str] = ()) -> T:
        """value, or an equal value that shares its parts with the values held already.

        ``value`` must be freshly parsed (nobody else holds it yet): its own sub-documents
        may be replaced by equal shared ones in place. whole=False: share only its parts (a
        document that is rarely equal to another as a whole, e.g. a model's report, would
        only cost its table entry). alone (a document's fields, whole=False): those fields'
        lists and dicts share their items but are kept as they are, for values no other
        document holds (a report's replica list: its hosts are the model's own)."""
        if alone and isinstance(value, BaseModel):
            self._fields(value, (), alone)
            shared: Any = value
        else:
            shared, _ = self._node(value, whole)
        if len(self._table) >= self._prune_at:
            self._prune()
        return shared  # type: ignore[no-any-return]

    def compact_fields(self, value: BaseModel, skip: Collection[str]) -> None:
        """compact(value, whole=False) for a fresh document, but for the fields named in skip,
        which the caller built from values already shared (planner._report: a report's replica
        entries and rollout state come from lru caches of shared values): walking them again
        would only find them shared, at a third of the cost of compacting the report."""
        self._fields(value, skip, ())
        if len(self._table) >= self._prune_at:
            self._prune()

    # -- internals ---------------------------------------------------------------------------
    def _fields(self, value: BaseModel, skip: Collection[str], alone: Collection[str]) -> None:
        """A document's fields shared (but those in skip; those in alone only in their parts)."""
        fields = value.__dict__
        for name, item in fields.items():
            kind = type(item)
            if kind in _SCALARS or name in skip:
                continue  # (a scalar is its own shared form: _node gives it back)
            last_time, last_shared = self._last_time  # (one read: another thread may replace it)
            if kind is str:
                shared = sys.intern(item)
            elif item is last_time:
                shared = last_shared
            else:
                shared, _ = self._node(item, name not in alone)
                if kind is dt.datetime:
                    self._last_time = (item, shared)
            if shared is not item:
                fields[name] = shared
        self._share_fields_set(value)

    def _share_fields_set(self, value: BaseModel) -> set[str]:
        """A document's set of the fields it was given, shared with equal sets."""
        fields_set = value.__pydantic_fields_set__
        shared_set = self._last_fields
        if fields_set is not shared_set and fields_set != shared_set:
            shared_set = self._last_fields = self._share((set, frozenset(fields_set)), fields_set)
        if shared_set is not fields_set:
            object.__setattr__(value, "__pydantic_fields_set__", shared_set)
        return shared_set

    def _share(self, key: Any, value: Any) -> Any:
        return self._table.setdefault(key, value)

    def _node(self, value: Any, whole: bool = True) -> tuple[Any, Any]:
        """(the shared form of value, its key: equal keys mean equal values)."""
        kind = type(value)
        if kind is str:
            shared = sys.intern(value)
            return shared, shared
        if kind is float:
            return value, (kind, repr(value))  # (-0.0 == 0.0, yet they are written apart)
        if kind in _SCALARS:
            scalar = (kind, value)
            return value, _SCALAR_KEYS.get(scalar, scalar)
        # A container's key is one flat tuple, its kind first and then its parts' keys: 48
        # bytes less than (kind, tuple(parts)) for each of the ~400,000 entries at 100,000
        # models (the kind tells the layouts apart: dict, list or a model class)
        if kind is dict:
            parts: list[Any] = [dict]
            for k, v in value.items():
                k2, kk = self._node(k)
                v2, vk = self._node(v)
                if k2 is not k or v2 is not v:
                    value[k2] = v2
                parts += (kk, vk)
            key: Any = tuple(parts)
        elif kind is list:
            keys: list[Any] = [list]
            for i, item in enumerate(value):
                shared_item, item_key = self._node(item)
                if shared_item is not item:
                    value[i] = shared_item
                keys.append(item_key)
            key = tuple(keys)
        elif kind is dt.datetime:
            # (not the value itself: the key must not hold it. A naive copy and the offset, not
            # its isoformat: 48 bytes less for each distinct time, and an agent's status each
            # holds its own; equal instants at different offsets stay apart)
            key = (kind, value.replace(tzinfo=None), value.utcoffset())
        elif isinstance(value, BaseModel) and value.__pydantic_extra__ is None and value.__pydantic_private__ is None:
            fields = value.__dict__
            parts = [kind, id(self._share_fields_set(value))]
            for name, item in fields.items():
                shared_item, item_key = self._node(item)
                if shared_item is not item:
                    fields[name] = shared_item
                parts.append(item_key)
            key = tuple(parts)
        else:  # anything else is kept as it is, unshared
            return value, id(value)
        # A shared node's key is its id (an int: other keys are strings and tuples), valid as
        # long as the entries whose keys hold it: they hold the node itself.
        if not whole:
            return value, id(value)
        shared = self._share(key, value)
        return shared, id(shared)

    def _prune(self) -> None:
        """Forget the values only the table holds (their parents first: repeated until none).

        No lock (pure planners use the table too, and may not import threading): the GIL
        makes each table operation atomic, and a value shared by another thread just while
        its entry goes stays correct (it is only no longer shared with later equal ones)."""
        table = self._table
        self._last_fields, self._last_time = set(), (None, None)  # (the memos hold entries too)
        while True:
            # (keys only, a list of pointers: a copy of the items would cost the table again)
            dead = [key for key in list(table) if _refcount(table, key) <= _DEAD]
            for key in dead:
                table.pop(key, None)  # (another thread may be pruning too)
            self.pruned += len(dead)
            if not dead:
                break
        self._prune_at = max(_MIN_PRUNE, 2 * len(table))


def _refcount(table: dict[Any, Any], key: Any) -> int:
    return sys.getrefcount(table.get(key))


def _dead_refcount() -> int:
    """The reference count _prune sees for a value only the table holds (CPython's count
    includes the table's reference and the call's: measured, not assumed)."""
    return _refcount({0: object()}, 0)


_DEAD = _dead_refcount()

# The process's one table: the fleet cache's parsed values share it (controller/snapshot.py).
INTERNER = Interner()


def compact(value: T, *, whole: bool = True, alone: Collection[str] = ()) -> T:
    return INTERNER.compact(value, whole=whole, alone=alone)


def compact_fields(value: BaseModel, skip: Collection[str]) -> None:
    INTERNER.compact_fields(value, skip)


__all__ = ["INTERNER", "Interner", "compact", "compact_fields"]
