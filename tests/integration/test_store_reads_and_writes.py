"""EtcdStore's reads and writes against a real etcd (never a mock): get/put/delete and
revisions, paged prefix reads at one revision (also while writing, across a compaction),
bounded ranges, size limits and quota errors, compare-and-swap transactions.

Tests that stop, pause or compact etcd use a private instance (private_etcd, etcd_factory);
the rest share the session etcd and keep apart through the `prefix` fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.helpers import wait_until
from tfleet.etcd_local import LocalEtcd
from tfleet.store import (
    Compare,
    Delete,
    EtcdSettings,
    EtcdStore,
    KeyValue,
    Page,
    Put,
    QuotaExceeded,
    RevisionCompacted,
    TxnResult,
    ValueTooLarge,
)
from tests.integration.store_support import WAIT, store_on


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
