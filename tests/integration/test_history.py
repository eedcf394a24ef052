"""The history recorder (controller/history.py) and bounded history reads, against real etcd.

Each test runs its own etcd (etcd_factory): the recorder replays the watch from revision 1
when no cursor exists, and one test compacts etcd, which must not touch the shared server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.integration.agent_harness import stop_running
from tests.integration.controller_harness import RunningController, start_controller
from tfleet.keyspace import Keyspace
from tfleet.registry import Registry, RegistryError
from tfleet.schema import HistoryCursor, HistoryEntry, ModelIntent, encode, parse
from tfleet.store import EtcdSettings, EtcdStore, Put

PREFIX = "/hist"
KEYS = Keyspace(PREFIX)


@pytest.fixture
def etcd(etcd_factory: Any) -> Any:
    return etcd_factory()


@pytest.fixture
def store(etcd: Any) -> Iterator[EtcdStore]:
    etcd_store = EtcdStore(EtcdSettings((etcd.client_url,)))
    yield etcd_store
    etcd_store.close()


@pytest.fixture
def controllers(etcd: Any) -> Iterator[Any]:
    started: list[RunningController] = []

    def start(controller_id: str = "c1", keep: int = 100, lease_ttl: int = 4) -> RunningController:
        started.append(start_controller(controller_id, etcd.client_url, PREFIX, lease_ttl=lease_ttl, history_keep=keep))
        return started[-1]

    yield start
    stop_running(*started)


def value(i: int, model: str = "m") -> bytes:
    return json.dumps({"base_path": f"/models/{model}", "replicas": i % 100, "description": f"edit {i}"}).encode()


def entries(store: EtcdStore, model: str = "m") -> list[HistoryEntry]:
    return Registry(store, KEYS).history(model)


def cursor(store: EtcdStore) -> HistoryCursor | None:
    kv = store.get(KEYS.history_cursor())
    return parse(HistoryCursor, kv.value, kv.key) if kv is not None else None


def recorded_up_to(store: EtcdStore, revision: int) -> bool:
    found = cursor(store)
    return found is not None and found.revision >= revision


def test_quick_etcdctl_edits_each_get_their_entry_in_order(store: EtcdStore, controllers: Any) -> None:
    leader = controllers(keep=5000)
    wait_until(lambda: leader.is_leader, 15, message="controller did not lead")
    revisions = [store.put(KEYS.model("m"), value(i)) for i in range(2000)]
    started = time.monotonic()
    wait_until(lambda: recorded_up_to(store, revisions[-1]), 60, message="the recorder did not catch up")
    caught_up = time.monotonic() - started
    found = entries(store)
    assert [e.revision for e in found] == revisions
    assert [e.sequence for e in found] == list(range(1, 2001))
    assert [e.new["description"] for e in found] == [f"edit {i}" for i in range(2000)]  # type: ignore[index]
    assert {e.source for e in found} == {"etcd"} and found[0].action == "create" and found[1].action == "update"
    assert found[1].previous == found[0].new  # linked to the entry before
    assert caught_up < 30, f"2,000 edits took {caught_up:.1f} s to record"
    metrics = leader.controller.metrics
    assert metrics.history_entries.labels("etcd")._value.get() == 2000


def test_retention_keeps_the_newest_n_and_counts_the_pruned(store: EtcdStore, controllers: Any) -> None:
    leader = controllers(keep=50)
    wait_until(lambda: leader.is_leader, 15, message="controller did not lead")
    revisions = [store.put(KEYS.model("m"), value(i)) for i in range(300)]
    wait_until(lambda: recorded_up_to(store, revisions[-1]), 60, message="the recorder did not catch up")
    found = entries(store)
    assert [e.sequence for e in found] == list(range(251, 301))
    assert [e.revision for e in found] == revisions[-50:]
    assert cursor(store).keep == 50  # type: ignore[union-attr]
    assert leader.controller.metrics.history_pruned._value.get() == 250
    registry = Registry(store, KEYS)
    assert registry.retention() == 50
    with pytest.raises(RegistryError, match=r"^entry 3 was pruned: model m keeps entries 251..300 \(retention 50\); pick one of those$"):
        registry.rollback("m", to_sequence=3, author="alice")
    registry.rollback("m", author="alice")  # undo the last change, with only the newest entries left
    assert registry.get_intent("m")[0].description == "edit 298"  # type: ignore[union-attr]


def test_edits_while_no_controller_leads_are_replayed(store: EtcdStore, controllers: Any) -> None:
    before = [store.put(KEYS.model("m"), value(i)) for i in range(5)]
    before.append(store.delete(KEYS.model("m")) and store.put(KEYS.model("other"), value(0, "other")))
    first = controllers("c1")
    wait_until(lambda: recorded_up_to(store, before[-1]), 30, message="the first controller did not record")
    assert [e.revision for e in entries(store)][:5] == before[:5]
    assert [e.action for e in entries(store)] == ["create"] + ["update"] * 4 + ["delete"]
    assert len(entries(store, "other")) == 1
    first.stop()

    meanwhile = [store.put(KEYS.model("m"), value(i)) for i in range(10, 13)]
    second = controllers("c2")
    wait_until(lambda: recorded_up_to(store, meanwhile[-1]), 30, message="the next controller did not replay")
    found = entries(store)
    assert [e.revision for e in found[-3:]] == meanwhile
    assert found[-3].action == "create" and found[-3].previous is None  # after the delete
    assert [e.sequence for e in found] == list(range(1, 10))
    assert second.is_leader


@pytest.mark.parametrize("how", ["resign", "leader_key_deleted"])
def test_leader_failover_mid_stream_loses_and_duplicates_nothing(store: EtcdStore, controllers: Any, how: str) -> None:
    """resign: the leader stops cleanly; leader_key_deleted: its term ends under it (as when its
    lease expires), so its next fenced transaction fails and whoever wins next continues."""
    first = controllers("c1", keep=1000)
    wait_until(lambda: first.is_leader, 15, message="c1 did not lead")
    second = controllers("c2", keep=1000)
    revisions: list[int] = []

    def edit() -> None:
        for i in range(600):
            revisions.append(store.put(KEYS.model("m"), value(i)))
            if i % 50 == 0:
                time.sleep(0.01)

    writer = threading.Thread(target=edit)
    writer.start()
    wait_until(lambda: recorded_up_to(store, revisions[10] if len(revisions) > 10 else 10**9), 30, message="nothing recorded")
    if how == "resign":
        first.stop()  # c2 takes over while the edits go on
    else:
        store.delete(KEYS.leader())  # c1's fence no longer holds; c1 or c2 wins the next campaign
    writer.join(60)
    wait_until(lambda: second.is_leader or first.is_leader, 15, message="nobody took over")
    wait_until(lambda: recorded_up_to(store, revisions[-1]), 60, message="the new leader did not catch up")
    found = entries(store)
    assert [e.revision for e in found] == revisions
    assert [e.sequence for e in found] == list(range(1, 601))


def test_cli_writes_are_not_recorded_twice_and_garbage_is_recorded_as_null(store: EtcdStore, controllers: Any) -> None:
    leader = controllers()
    wait_until(lambda: leader.is_leader, 15, message="controller did not lead")
    registry = Registry(store, KEYS)
    a = registry.apply_intent("m", ModelIntent(base_path="/models/m", replicas=1), author="alice")
    b = store.put(KEYS.model("m"), value(2))
    c = registry.apply_intent("m", ModelIntent(base_path="/models/m", replicas=3), author="bob")
    d = store.put(KEYS.model("m"), b"{not json")
    e = store.put(KEYS.model("m"), b'{"base_path": "/m", "replicas": -2}')
    wait_until(lambda: recorded_up_to(store, e), 30, message="the recorder did not catch up")
    found = entries(store)
    assert [(x.revision, x.source, x.author) for x in found] == [
        (a, "cli", "alice"),
        (b, "etcd", None),
        (c, "cli", "bob"),
        (d, "etcd", None),
        (e, "etcd", None),
    ]
    assert found[3].new is None and found[3].note and "not a JSON object" in found[3].note
    assert found[4].new == {"base_path": "/m", "replicas": -2}  # schema-invalid: recorded as written
    registry.rollback("m", to_sequence=3, author="alice")
    assert registry.get_intent("m")[0].replicas == 3  # type: ignore[union-attr]
    assert leader.controller.metrics.history_entries.labels("cli")._value.get() == 2


def test_compaction_past_the_cursor_writes_one_gap_entry_per_changed_model_then_recording_goes_on(store: EtcdStore, controllers: Any) -> None:
    first = controllers("c1")
    store.put(KEYS.model("doomed"), value(1, "doomed"))
    start = store.put(KEYS.model("m"), value(1))
    store.put(KEYS.model("quiet"), value(1, "quiet"))
    wait_until(lambda: recorded_up_to(store, start + 1), 30, message="nothing recorded")
    first.stop()
    # (the cursor may have moved past start + 1 over revisions without a models/ change: the
    # controller's own writes; the gap begins right after wherever it stopped)
    stopped_at = cursor(store).revision  # type: ignore[union-attr]
    store.delete(KEYS.model("doomed"))
    lost = [store.put(KEYS.model("m"), value(i)) for i in range(2, 6)]
    assert stopped_at < lost[0] - 1  # (the delete of doomed, just before, was not recorded)
    store.compact(lost[-1])
    kept = store.put(KEYS.model("m"), value(6))  # after the compaction: still in etcd's history

    second = controllers("c2")
    wait_until(lambda: recorded_up_to(store, kept), 30, message="no gap recorded")
    found = entries(store)
    assert [e.action for e in found] == ["create", "gap", "update"]
    gap = found[1]
    # The gap names exactly the compacted revisions; the edit after the compaction revision
    # is replayed as its own entry, not folded into the gap.
    assert gap.revisions is not None and (gap.revisions.first, gap.revisions.last) == (stopped_at + 1, lost[-1])
    assert gap.revision == lost[-1] and gap.new is not None and gap.new["description"] == "edit 5"
    assert gap.previous == found[0].new
    assert (found[2].revision, found[2].previous, found[2].new["description"]) == (kept, gap.new, "edit 6")  # type: ignore[index]
    assert [e.action for e in entries(store, "quiet")] == ["create"]  # unchanged since the cursor: no gap
    deleted = entries(store, "doomed")[-1]  # deleted within the gap: found through its history
    assert (deleted.action, deleted.new, deleted.revisions) == ("gap", None, gap.revisions)
    last_gap = cursor(store).last_gap  # type: ignore[union-attr]
    assert last_gap is not None and last_gap.models == 2 and last_gap.revisions == gap.revisions
    assert second.controller.metrics.history_gaps._value.get() == 2

    then = store.put(KEYS.model("m"), value(7))
    wait_until(lambda: recorded_up_to(store, then), 30, message="recording did not go on after the gap")
    assert [(e.action, e.revision) for e in entries(store)][-1] == ("update", then)


class CountingStore(EtcdStore):
    """Counts the keys etcd returns to any read, whatever method asked."""

    keys_read = 0

    def _call(self, what: str, action: Any, **options: Any) -> Any:
        response = super()._call(what, action, **options)
        kvs = getattr(response, "kvs", None)
        if kvs is not None:
            self.keys_read += len(kvs)
        return response


def test_a_cli_write_reads_no_whole_history(etcd: Any, store: EtcdStore) -> None:
    model = "big"
    entry = HistoryEntry(sequence=0, model=model, action="update", revision=1, at="2026-11-27T15:00:00Z", source="etcd", new={"base_path": "/models/big"})
    for start in range(1, 5001, 100):
        store.txn([], [Put(KEYS.history(model, n), encode(entry.model_copy(update={"sequence": n}))) for n in range(start, start + 100)])
    store.put(KEYS.history_cursor(), encode(HistoryCursor(revision=0, updated_at="2026-11-27T15:00:00Z", keep=10_000)))
    counting = CountingStore(EtcdSettings((etcd.client_url,)))
    try:
        registry = Registry(counting, KEYS)
        registry.apply_intent(model, ModelIntent(base_path="/models/big", replicas=2), author="alice")
        assert counting.keys_read <= 5, f"an apply read {counting.keys_read} keys"
        counting.keys_read = 0
        assert [e.sequence for e in registry.history(model, limit=3)] == [4999, 5000, 5001]
        registry.rollback(model, author="alice")
        registry.diff(model, 17, 5002)
        assert counting.keys_read <= 15, f"history/rollback/diff read {counting.keys_read} keys"
    finally:
        counting.close()


def test_first_recorder_on_a_compacted_etcd_adds_gaps_only_where_the_history_lacks_the_current_value(store: EtcdStore, controllers: Any) -> None:
    """An upgrade: no cursor yet, etcd compacted, histories written by the CLI so far."""
    registry = Registry(store, KEYS, recorder_wait=0)
    registry.apply_intent("recorded", ModelIntent(base_path="/models/recorded"), author="alice")
    unrecorded = store.put(KEYS.model("etcdctl"), value(1, "etcdctl"))
    store.compact(unrecorded)
    later = store.put(KEYS.model("later"), value(1, "later"))  # after the compaction revision
    controllers()
    wait_until(lambda: recorded_up_to(store, later), 30, message="the recorder did not start")
    assert [e.action for e in entries(store, "recorded")] == ["create"]
    [gap] = entries(store, "etcdctl")
    assert (gap.action, gap.revision, gap.revisions.first, gap.revisions.last) == ("gap", unrecorded, 1, unrecorded)  # type: ignore[union-attr]
    [created] = entries(store, "later")  # replayed exactly: etcd still holds its revision
    assert (created.action, created.revision) == ("create", later)
