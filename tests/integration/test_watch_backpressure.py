"""A slow watch consumer holds back the stream instead of queueing it (tfleet/store/watch.py
STREAM_BUFFER), and loses nothing: what bounds the history recorder's memory on a first
start that replays a long history (controller/history.py WatchInbox)."""

from __future__ import annotations

import threading
import time

from tests.helpers import wait_until
from tfleet.store import EtcdStore, WatchEvent
from tfleet.store.watch import STREAM_BUFFER

WAIT = 20.0
WRITES = 4 * STREAM_BUFFER


def test_a_slow_consumer_holds_back_the_stream_and_every_event_arrives_in_order(store: EtcdStore, prefix: str) -> None:
    start = store.put(f"{prefix}start", b"0")
    gate, armed = threading.Event(), threading.Event()
    got: list[WatchEvent] = []

    def on_events(events: list[WatchEvent]) -> None:
        got.extend(events)
        if armed.is_set():
            assert gate.wait(WAIT * 2), "the test never opened the gate"

    watch = store.watch_prefix(prefix, start + 1, on_events, lambda snapshot: None)
    try:
        revisions = [store.put(f"{prefix}live", b"1")]
        wait_until(lambda: got, WAIT, message="the watch did not start")  # live: one response per write from now on
        armed.set()
        revisions += [store.put(f"{prefix}k{i:03d}", str(i).encode()) for i in range(WRITES)]
        wait_until(lambda: len(got) > 1, WAIT, message="the first delivery did not arrive")
        # The consumer is stuck in a delivery: the responses behind it fill the
        # buffer, then the client's thread waits (without the bound the queue would grow to
        # about WRITES). Watched for a while, since growth would come late, not early.
        deadline = time.monotonic() + 2.0
        peak = 0
        while time.monotonic() < deadline:
            peak = max(peak, watch._inbox.qsize())
            assert peak <= STREAM_BUFFER, f"{peak} responses queued behind a slow consumer"
            time.sleep(0.02)
        gate.set()
        wait_until(lambda: len(got) >= WRITES + 1, WAIT, message=f"{len(got)} of {WRITES + 1} events arrived")
        assert [event.mod_revision for event in got] == revisions  # all of them, once, in order
    finally:
        gate.set()
        watch.cancel()
