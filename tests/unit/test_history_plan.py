"""The history recorder's pure batch planning (controller/history.py: plan_batch)."""

from __future__ import annotations

import datetime as dt
import json

from tfleet.controller.history import MAX_ENTRIES_PER_TXN, Change, ModelState, changes_of_events, gap_changes, plan_batch
from tfleet.keyspace import Keyspace
from tfleet.schema import RevisionSpan
from tfleet.store import Delete, KeyValue, Snapshot, WatchEvent

KS = Keyspace()
NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.timezone.utc)


def put(model: str, revision: int, replicas: int = 1) -> Change:
    return Change(model, json.dumps({"base_path": f"/models/{model}", "replicas": replicas}).encode(), revision)


def plan(changes, states, keep=100, cursor=0):
    return plan_batch(changes, states, keyspace=KS, keep=keep, cursor=cursor, now=NOW)


def test_entries_are_numbered_linked_and_the_cursor_moves_to_the_last_revision() -> None:
    states = {"m": ModelState(next_sequence=1)}
    batch = plan([put("m", 10, 1), put("m", 11, 2), Change("m", None, 12)], states)
    entries = [entry for _, entry in batch.entries]
    assert [(e.sequence, e.action, e.revision) for e in entries] == [(1, "create", 10), (2, "update", 11), (3, "delete", 12)]
    assert entries[1].previous == entries[0].new and entries[2].previous == entries[1].new and entries[2].new is None
    assert [key for key, _ in batch.entries] == [KS.history("m", n) for n in (1, 2, 3)]
    assert (batch.cursor, batch.consumed, batch.recorded, batch.prunes) == (12, 3, 3, {})


def test_a_change_that_has_its_entry_is_skipped_but_moves_the_cursor() -> None:
    states = {"m": ModelState(next_sequence=5, known={20: ("update", {"replicas": 2})})}
    batch = plan([put("m", 20), put("m", 21)], states)
    assert [(e.sequence, e.revision, e.previous) for _, e in batch.entries] == [(5, 21, {"replicas": 2})]
    assert (batch.already, batch.cursor) == (1, 21)


def test_changes_older_than_a_full_page_were_recorded_long_ago() -> None:
    states = {"m": ModelState(next_sequence=30, known={100: ("update", {}), 101: ("update", {})}, complete=False)}
    batch = plan([put("m", 50), put("m", 102)], states)
    assert [e.revision for _, e in batch.entries] == [102]
    assert batch.already == 1


def test_retention_prunes_with_one_range_delete_and_skips_entries_it_would_prune() -> None:
    states = {"m": ModelState(next_sequence=1)}
    batch = plan([put("m", r) for r in range(10, 20)], states, keep=3)
    assert [e.sequence for _, e in batch.entries] == [8, 9, 10]
    assert batch.skipped_puts == 7 and batch.pruned == 7
    assert batch.prunes == {"m": Delete(KS.history("m", 0)[:-12] + "0", end=KS.history("m", 8))}
    again = plan([put("m", 20)], states, keep=3)
    assert again.prunes["m"].end == KS.history("m", 9) and again.pruned == 1


def test_a_batch_stops_at_the_transaction_limit_between_revisions() -> None:
    states = {f"m{i}": ModelState(next_sequence=1) for i in range(3)}
    changes = [put(f"m{i % 3}", 100 + i) for i in range(250)]
    batch = plan(changes, states)
    assert len(batch.entries) == MAX_ENTRIES_PER_TXN
    assert batch.cursor == changes[batch.consumed - 1].revision


def test_a_revision_split_across_batches_keeps_the_cursor_below_it() -> None:
    """One etcd transaction may change more models than fit in one of ours."""
    states = {f"m{i}": ModelState(next_sequence=1) for i in range(150)}
    changes = [put(f"m{i}", 500) for i in range(150)]
    batch = plan(changes, states, keep=1)  # every model may need its prune delete: 2 ops per entry
    assert 0 < batch.consumed < 150 and batch.cursor == 499
    done, cursor = batch.consumed, batch.cursor
    while done < 150:
        rest = plan(changes[done:], states, keep=1, cursor=cursor)
        done, cursor = done + rest.consumed, rest.cursor
        assert cursor == (500 if done == 150 else 499)
    few = plan(changes, {f"m{i}": ModelState(next_sequence=1) for i in range(150)})  # far below keep: no prune slots
    assert few.consumed == MAX_ENTRIES_PER_TXN


def test_a_model_without_loaded_state_ends_the_batch() -> None:
    batch = plan([put("m", 10), put("x", 11)], {"m": ModelState(next_sequence=1)})
    assert batch.consumed == 1 and batch.cursor == 10


def test_gap_entries_cover_the_revisions_and_move_the_cursor_with_the_last() -> None:
    snapshot = Snapshot(
        900,
        (
            KeyValue(KS.model("a"), b'{"base_path": "/a"}', 5, 700, 3, 0),
            KeyValue(KS.model("quiet"), b'{"base_path": "/q"}', 5, 50, 1, 0),
            KeyValue(KS.model("b"), b"[1]", 5, 650, 2, 0),
        ),
    )
    changes = gap_changes(snapshot, KS, cursor=100)
    assert [(c.model, c.revision, c.gap) for c in changes] == [("b", 650, RevisionSpan(first=101, last=900)), ("a", 700, RevisionSpan(first=101, last=900))]
    states = {"a": ModelState(next_sequence=4, known={90: ("update", {"base_path": "/old"})}), "b": ModelState(next_sequence=1)}
    batch = plan(changes, states, cursor=100)
    entries = {e.model: e for _, e in batch.entries}
    assert entries["a"].action == "gap" and entries["a"].previous == {"base_path": "/old"} and entries["a"].revisions.last == 900
    assert entries["b"].new is None and "not a JSON object" in (entries["b"].note or "")
    assert (batch.gaps, batch.cursor) == (2, 900)
    # written once: planned again (a term that ended half-way), the known gap entries are skipped
    assert plan(changes, states, cursor=100).entries == []


def test_events_outside_models_or_already_seen_are_not_changes() -> None:
    events = [
        WatchEvent("put", KS.model("m"), b"{}", 5),
        WatchEvent("put", KS.models_prefix() + "a/b", b"{}", 6),
        WatchEvent("delete", KS.model("m"), b"", 7),
    ]
    assert changes_of_events(events, KS, after=0) == [Change("m", b"{}", 5), Change("m", None, 7)]
    assert changes_of_events(events, KS, after=5) == [Change("m", None, 7)]


# -- the recorder's bounded inbox (controller/history.py WatchInbox) ---------------------------


def _events(n: int, start: int = 1) -> list[WatchEvent]:
    return [WatchEvent("put", f"/tfleet/models/m{i}", b"{}", i) for i in range(start, start + n)]


def test_the_watch_inbox_holds_at_most_its_limit_and_takes_in_rounds() -> None:
    from tfleet.controller.history import WatchInbox

    inbox = WatchInbox(limit=10)
    assert inbox.put(_events(6), timeout=0)
    assert not inbox.put(_events(6, 7), timeout=0)  # full: the watch's thread would wait here
    assert inbox.events == 6
    assert inbox.take(0, max_events=100) == [_events(6)]
    assert inbox.put(_events(6, 7), timeout=0) and inbox.put(_events(4, 13), timeout=0)  # room again, nothing lost
    assert [len(item) for item in inbox.take(0, max_events=5)] == [6]  # at least one delivery a round
    assert [len(item) for item in inbox.take(0, max_events=5)] == [4]
    assert inbox.take(0, max_events=5) == []


def test_the_watch_inbox_lets_a_huge_delivery_into_an_empty_inbox_and_close_releases_a_waiting_put() -> None:
    from tfleet.controller.history import WatchInbox

    inbox = WatchInbox(limit=10)
    assert inbox.put(_events(50), timeout=0)  # already in memory: waiting would never end
    assert not inbox.put(_events(1, 51), timeout=0)
    inbox.close()
    assert not inbox.put(_events(1, 51))  # would block forever without close: returns at once, dropped
    assert inbox.events == 0 and inbox.take(0, max_events=5) == []
