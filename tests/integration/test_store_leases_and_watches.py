"""EtcdStore's leases and PrefixWatch against a real etcd (never a mock): lease refresh, expiry
and revocation; watches that deliver in order, resume after restarts and frozen members
without loss or duplicates, and reset from a fresh snapshot after a compaction.

Tests that stop, pause or compact etcd use a private instance (private_etcd, etcd_factory);
the rest share the session etcd and keep apart through the `prefix` fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.helpers import wait_until
from tfleet.etcd_local import LocalEtcd
from tfleet.store import (
    EtcdSettings,
    EtcdStore,
    LeaseLost,
    Put,
    StoreError,
    StoreUnavailable,
)
from tests.integration.store_support import FAST_TIMEOUT, WAIT, Recorder, store_on


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


def test_refresh_leases_renews_many_on_one_stream_and_reports_gone_ones(store: EtcdStore, prefix: str) -> None:
    kept = [store.grant_lease(2) for _ in range(3)]
    gone = store.grant_lease(60)
    for lease in kept:
        store.put(f"{prefix}k{lease:x}", b"1", lease=lease)
    store.revoke_lease(gone)
    # renewed every 0.5 s for longer than the 2 s TTL: the keys outlive it
    until = time.monotonic() + 3.5
    while time.monotonic() < until:
        ttls = store.refresh_leases([*kept, gone, kept[0]])  # (a repeated ID is renewed once)
        assert ttls.keys() == {*kept, gone}
        assert ttls[gone] == 0
        assert all(ttls[lease] >= 1 for lease in kept), ttls
        threading.Event().wait(0.5)
    assert all(store.get(f"{prefix}k{lease:x}") is not None for lease in kept)
    assert store.refresh_leases([]) == {}


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


def test_a_watch_far_behind_catches_up_in_fragments_each_revision_whole(etcd_factory: Callable[..., LocalEtcd], prefix: str) -> None:
    """etcd catches a watcher that starts (or resumes) far behind up with up to 1,000
    revisions in ONE response. The store asks for fragments, which etcd cuts at its
    --max-request-bytes + 512 KiB (576 KiB here), and puts each revision back together.
    Without them this catch-up (~2.5 MB) exceeds the watching store's receive limit (1 MiB
    here; 16 MiB by default, against tens of MiB of a controller's transactions): the stream
    fails, the watch resumes at the same revision, fails again, and never delivers anything."""
    server = etcd_factory(extra_args=["--max-request-bytes=65536"])
    value = b"x" * 1000
    with store_on(server) as writer, EtcdStore(EtcdSettings((server.client_url,), call_timeout=FAST_TIMEOUT), max_receive_bytes=1024 * 1024) as watcher:
        start = writer.list_prefix(prefix).revision + 1
        # 60 transactions of 40 puts (~41 KB each): a fragment mostly ends inside a revision
        revisions = [writer.txn([], [Put(f"{prefix}{r:02d}/{i:02d}", value) for i in range(40)]).revision for r in range(60)]
        recorder = Recorder()
        watch = recorder.watch(watcher, prefix, start)
        try:
            wait_until(lambda: watch.revision == revisions[-1], WAIT, message=f"caught up to {revisions[-1]}; got {watch!r}, errors {recorder.errors}")
        finally:
            watch.cancel()

    assert recorder.keys() == [f"{prefix}{r:02d}/{i:02d}" for r in range(60) for i in range(40)]
    batch_of = {e.mod_revision: n for n, batch in enumerate(recorder.batches) for e in batch}
    assert all(batch_of[e.mod_revision] == n for n, batch in enumerate(recorder.batches) for e in batch)  # never split
    assert recorder.errors == [] and watch.restarts == 0


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
