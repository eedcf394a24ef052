"""The typed seams: what the controller, the agent and the CLI need of their collaborators.

Each Protocol names the part of a concrete class its users call, so that a signature states
what a function needs instead of ``Any``, a unit test can pass an in-memory fake of the same
shape, and mypy reports a user that calls something the seam does not offer. The concrete
classes satisfy them structurally (nothing inherits from them):

* the store: ``tfleet.store.EtcdStore`` (KeyReader, KeyWriter, Watcher, Leases; all: Store);
* the election: ``tfleet.controller.election.Election`` (Fence), what the reconciler, the
  history recorder, the schedules and the problems publisher need to write while leading;
* the registry: ``tfleet.registry.Registry`` (IntentRegistry), the intent and history calls
  the controller's reconciler and schedules make;
* TF Serving: ``tfleet.tfs.client.TfsClient`` (ModelServer), the two calls the agent makes
  (a test passes a double of the same shape).

controller/seams.py (checked by mypy in make check) asserts that each concrete class satisfies
its Protocol. This module is pure: it imports only plain value types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tfleet.schema import HistoryEntry, ModelIntent
from tfleet.store.types import Compare, Delete, KeyValue, Page, Put, Snapshot, TxnResult, WatchEvent
from tfleet.tfs.types import ModelConfigSpec, VersionStatus


class KeyReader(Protocol):
    """Reads: one key, a whole prefix at one revision (paged underneath), one bounded window,
    how many keys a prefix holds (without reading them)."""

    def get(self, key: str) -> KeyValue | None: ...

    def list_prefix(self, prefix: str, revision: int | None = None) -> Snapshot: ...

    def list_range(self, start: str, end: str, *, limit: int, descending: bool = False, revision: int | None = None) -> Page: ...

    def count_prefix(self, prefix: str, revision: int | None = None) -> int: ...


class KeyWriter(Protocol):
    """Writes: plain puts and deletes (operator tools, tests) and compare-and-swap transactions."""

    def put(self, key: str, value: bytes, lease: int | None = None) -> int: ...

    def delete(self, key: str) -> bool: ...

    def txn(self, compares: Sequence[Compare], success: Sequence[Put | Delete], failure: Sequence[Put | Delete] = ()) -> TxnResult: ...


class WatchHandle(Protocol):
    """A running watch (tfleet.store.PrefixWatch)."""

    @property
    def alive(self) -> bool: ...

    def restart(self) -> None: ...

    def cancel(self) -> None: ...


class Watcher(Protocol):
    """A supervised watch of a prefix: events in order, a reset with a fresh read after a compaction."""

    def watch_prefix(
        self,
        prefix: str,
        start_revision: int,
        on_events: Callable[[list[WatchEvent]], None],
        on_reset: Callable[[Snapshot], None],
        on_error: Callable[[Exception], None] | None = None,
        list_prefix: Callable[[str], Snapshot] | None = None,
        resume_at_compaction: bool = False,
    ) -> WatchHandle: ...


class Leases(Protocol):
    """Leases: the agent's host record and status keys, the controller's leader key."""

    def grant_lease(self, ttl: int) -> int: ...

    def refresh_lease(self, lease_id: int) -> int: ...

    def revoke_lease(self, lease_id: int) -> None: ...


class Store(KeyReader, KeyWriter, Watcher, Leases, Protocol):
    """Everything a daemon uses of the store."""

    def close(self) -> None: ...


class Fence(Protocol):
    """What a controller component needs of the election to write only while it leads.

    ``fenced_txn`` applies the ops in one transaction that also checks the leader key, so a
    deposed leader writes nothing; it raises NotLeader when this process does not lead."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def fence_revision(self) -> int | None: ...

    def fence(self) -> list[Compare]: ...

    def fenced_txn(self, ops: Sequence[Put | Delete], extra_compares: Sequence[Compare] = ()) -> bool: ...


@dataclass(frozen=True, slots=True)
class NumberedEntry:
    """A history entry with the sequence number its key names (IntentRegistry.newest).

    The key's number, not the entry's own ``sequence`` field: the key is what orders the
    history and what the recorder numbers on from, whatever a hand-edited value says."""

    sequence: int
    entry: HistoryEntry


class IntentRegistry(Protocol):
    """The intent and history calls of the controller (reconciler, schedules, history recorder)."""

    def get_intent(self, model: str) -> tuple[ModelIntent | None, int]: ...

    def apply_intent(self, model: str, intent: ModelIntent, *, author: str | None, expected_revision: int | None = None, source: str = "cli") -> int: ...

    def rollback(self, model: str, *, to_sequence: int | None = None, author: str | None) -> int: ...

    def history(self, model: str, *, limit: int | None = None, before: int | None = None) -> list[HistoryEntry]: ...

    def newest(self, model: str, *, limit: int | None = None, before: int | None = None) -> Iterable[NumberedEntry]: ...

    def last_valid_intent(self, model: str, *, max_entries: int = 50, page: int = 5) -> ModelIntent | None: ...

    def models_with_history(self) -> Iterator[str]: ...

    def await_recorded(self, model: str, revision: int) -> None: ...


class ModelServer(Protocol):
    """What the agent needs of its TF Serving: send the whole model list, ask about one model.

    Both raise TfsError (TfsUnavailable, TfsDeadlineExceeded, or TF Serving's own refusal);
    get_model_status answers None for a model TF Serving does not know (NOT_FOUND)."""

    def reload_config(self, models: Sequence[ModelConfigSpec], timeout: float) -> None: ...

    def get_model_status(self, name: str, timeout: float) -> list[VersionStatus] | None: ...

    def close(self) -> None: ...
