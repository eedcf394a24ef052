"""Shared by the EtcdStore / PrefixWatch tests (test_store_*.py): stores on a given etcd, a
recorder of what a watch delivers, and the private_etcd / private_store fixtures (registered
in tests/integration/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tfleet.etcd_local import LocalEtcd
from tfleet.store import (
    EtcdSettings,
    EtcdStore,
    Snapshot,
    WatchEvent,
)


# Margins hold on two busy shared cores: generous deadlines, never fixed sleeps.
WAIT = 15.0
FAST_TIMEOUT = 1.0  # call_timeout of stores on private etcd instances


def store_on(server: LocalEtcd, **settings: object) -> EtcdStore:
    settings.setdefault("call_timeout", FAST_TIMEOUT)
    return EtcdStore(EtcdSettings((server.client_url,), **settings))  # type: ignore[arg-type]


@dataclass
class Recorder:
    """Collects what a PrefixWatch delivers; on_error can be held at a gate.

    Holding the watch thread in on_error keeps the watch down while the test writes, so the
    test decides exactly which writes happen between disconnect and resumption.
    """

    batches: list[list[WatchEvent]] = field(default_factory=list)
    resets: list[Snapshot] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    gate: threading.Event | None = None
    first_error: threading.Event = field(default_factory=threading.Event)
    _busy: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self) -> None:
        assert self._busy.acquire(blocking=False), "callbacks ran concurrently"
        self.threads.add(threading.current_thread().name)

    def on_events(self, events: list[WatchEvent]) -> None:
        self._enter()
        try:
            self.batches.append(events)
        finally:
            self._busy.release()

    def on_reset(self, snapshot: Snapshot) -> None:
        self._enter()
        try:
            self.resets.append(snapshot)
        finally:
            self._busy.release()

    def on_error(self, error: Exception) -> None:
        self._enter()
        try:
            self.errors.append(error)
            self.first_error.set()
            if self.gate is not None:
                assert self.gate.wait(WAIT * 2), "test never opened the gate"
        finally:
            self._busy.release()

    @property
    def events(self) -> list[WatchEvent]:
        return [event for batch in self.batches for event in batch]

    def keys(self) -> list[str]:
        return [event.key for event in self.events]

    def watch(self, store: EtcdStore, prefix: str, start_revision: int):  # noqa: ANN201
        return store.watch_prefix(prefix, start_revision, self.on_events, self.on_reset, self.on_error)


@pytest.fixture
def private_etcd(etcd_factory: Callable[..., LocalEtcd]) -> LocalEtcd:
    return etcd_factory()


@pytest.fixture
def private_store(private_etcd: LocalEtcd) -> Iterator[EtcdStore]:
    with store_on(private_etcd) as etcd_store:
        yield etcd_store
