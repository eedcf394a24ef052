"""An in-memory etcd of our own store interface, for pure tests of the fleet cache.

It keeps every revision (so a read can be pinned to one), compacts, and hands a watch's
events to the test to deliver in chunks of its choosing (the test plays the network).
Integration tests use a real etcd instead (tests/integration/test_fleetcache.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tfleet.store import KeyValue, Snapshot, StoreError, WatchEvent


@dataclass(frozen=True)
class Page:
    revision: int
    items: tuple[KeyValue, ...]
    more: bool


class FakeWatch:
    def __init__(self, etcd: FakeEtcd, prefix: str, start: int, on_events, on_reset, on_error, list_prefix) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.revision = start - 1  # last delivered
        self.on_events = on_events
        self.on_reset = on_reset
        self.on_error = on_error
        self.list_prefix = list_prefix or etcd.list_prefix
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def restart(self) -> None:
        """A broken stream: the error is reported; the watch resumes from revision + 1."""
        self.on_error(StoreError("etcd watch interrupted (fake)"))

    def pump(self, revisions: int) -> None:
        """Deliver the events of up to ``revisions`` more revisions as one watch response
        (etcd keeps revisions from the compaction revision on)."""
        if self.revision + 1 < self.etcd.compacted:  # what PrefixWatch does on a compaction
            snapshot = self.list_prefix(self.prefix)
            self.on_reset(snapshot)
            self.revision = snapshot.revision
            return
        last = min(self.etcd.revision, self.revision + revisions)
        events = [e for e in self.etcd.log if self.revision < e.mod_revision <= last and e.key.startswith(self.prefix)]
        if events:
            self.on_events(events)
        self.revision = last

    def drain(self) -> None:
        while self.revision < self.etcd.revision:
            self.pump(1_000_000)


class FakeEtcd:
    def __init__(self, *, pinned_reads: bool = True) -> None:
        self.revision = 1
        self.compacted = 0
        self.log: list[WatchEvent] = []
        self.items: dict[str, KeyValue] = {}
        self.pinned_reads = pinned_reads
        self.watches: list[FakeWatch] = []
        self.reads = 0
        self.before_read: Callable[[], None] | None = None  # a write racing a section read

    # -- writes --------------------------------------------------------------------------
    def txn(self, ops: list[tuple[str, bytes | None]]) -> int:
        self.revision += 1
        for key, value in ops:
            if value is None:
                if self.items.pop(key, None) is not None:
                    self.log.append(WatchEvent("delete", key, b"", self.revision))
            else:
                old = self.items.get(key)
                self.items[key] = KeyValue(key, value, old.create_revision if old else self.revision, self.revision, (old.version if old else 0) + 1, 0)
                self.log.append(WatchEvent("put", key, value, self.revision))
        return self.revision

    def put(self, key: str, value: bytes) -> int:
        return self.txn([(key, value)])

    def delete(self, key: str) -> int:
        return self.txn([(key, None)])

    def compact(self, revision: int | None = None) -> None:
        self.compacted = max(self.compacted, revision or self.revision)

    # -- reads ---------------------------------------------------------------------------
    def at(self, revision: int) -> dict[str, KeyValue]:
        state: dict[str, KeyValue] = {}
        for event in self.log:
            if event.mod_revision > revision:
                break
            if event.kind == "delete":
                state.pop(event.key, None)
            else:
                state[event.key] = KeyValue(event.key, event.value, 0, event.mod_revision, 0, 0)
        return state

    def list_prefix(self, prefix: str, revision: int | None = None) -> Snapshot:
        if self.before_read is not None:
            self.before_read()
        self.reads += 1
        if revision is not None and not self.pinned_reads:
            raise TypeError("this store cannot pin a revision")
        if revision is not None and revision < self.compacted:
            raise StoreError(f"revision {revision} compacted")
        at = revision or self.revision
        state = self.at(at) if revision is not None else self.items
        return Snapshot(at, tuple(kv for key, kv in state.items() if key.startswith(prefix)))

    def last_key(self, prefix: str) -> KeyValue | None:
        keys = sorted(k for k in self.items if k.startswith(prefix))
        return self.items[keys[-1]] if keys else None

    def list_page(self, prefix: str, start_after: str | None = None, limit: int = 100, revision: int | None = None) -> Page:
        keys = sorted(k for k in self.items if k.startswith(prefix) and (start_after is None or k > start_after))
        return Page(self.revision, tuple(self.items[k] for k in keys[:limit]), len(keys) > limit)

    def list_range(self, start: str, end: str, *, limit: int, descending: bool = False, revision: int | None = None) -> Page:
        keys = sorted((k for k in self.items if start <= k < end), reverse=descending)
        return Page(self.revision, tuple(self.items[k] for k in keys[:limit]), len(keys) > limit)

    def count_prefix(self, prefix: str, revision: int | None = None) -> int:
        return sum(1 for k in self.items if k.startswith(prefix))

    def watch_prefix(self, prefix: str, start_revision: int, on_events, on_reset, on_error=None, list_prefix=None) -> FakeWatch:
        watch = FakeWatch(self, prefix, start_revision, on_events, on_reset, on_error or (lambda e: None), list_prefix)
        self.watches.append(watch)
        return watch
