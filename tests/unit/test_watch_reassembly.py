"""The watch stream's reassembly of etcd's fragments (tfleet/store/watch_stream.py): whatever
way etcd splits a response, every event is delivered once, in order, and a revision's events
are always delivered together (a pass never sees half a transaction)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tfleet.store import WatchEvent
from tfleet.store.watch_stream import Reassembly


def _events(sizes: list[int]) -> list[WatchEvent]:
    """Revisions 1, 2, ... with that many events each."""
    return [WatchEvent("put", f"/k/{revision}/{i}", b"v", revision) for revision, size in enumerate(sizes, start=1) for i in range(size)]


def test_a_fragment_holds_back_the_revision_that_may_go_on() -> None:
    revision_1, revision_2 = _events([2, 3])[:2], _events([2, 3])[2:]
    reassembly = Reassembly()
    assert reassembly.add([*revision_1, revision_2[0]], fragment=True) == revision_1
    assert reassembly.add(revision_2[1:2], fragment=True) == []
    assert reassembly.add(revision_2[2:], fragment=False) == revision_2


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=10),
)
def test_any_split_delivers_every_event_once_in_order_and_never_splits_a_revision(sizes: list[int], cuts: list[int]) -> None:
    events = _events(sizes)
    points = sorted({c for c in cuts if c < len(events)})
    pieces = [events[a:b] for a, b in zip([0, *points], [*points, len(events)], strict=True)]
    reassembly = Reassembly()
    delivered = [reassembly.add(piece, fragment=i < len(pieces) - 1) for i, piece in enumerate(pieces)]

    assert [e for batch in delivered for e in batch] == events
    owner = {e.mod_revision: i for i, batch in enumerate(delivered) for e in batch}
    assert all(owner[e.mod_revision] == i for i, batch in enumerate(delivered) for e in batch)
