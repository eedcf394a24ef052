"""A pass's write transactions, a few in flight at once.

A pass that re-places 20,000 replicas writes ~77,500 keys in ~775 transactions of 100, and
each waits for etcd to commit it (~2.5 ms on this machine's disk, measured with 100 puts of
400 bytes); the pass used to wait for each in turn while etcd's core had nothing else to do
and the controller's had the next batch to encode. With several in flight, etcd commits
while the pass encodes and announces the next (and etcd batches concurrent proposals into
one fsync). Four, not two: with two, the pass's thread still slept ~29 % of a host loss at
100,000 models waiting for a slot (/proc schedstat of the thread during bench/scale's loss:
4.97 s on a core and 0.74 s waiting for one in an 8.0 s window); with four, 24 %, ~340 us a
moved model instead of ~375, and etcd wrote 0.82 WAL fsyncs per transaction instead of 0.90.

Why the order of one pass's transactions does not matter: every key is written at most once
per pass, and every write was decided from the same snapshot; the writes' echoes are
announced before they are sent, whatever order they land in. Passes never overlap: ``drain``
waits for every transaction of the pass before the pass ends (the reconciler calls it in a
``finally``). A failure is raised once the others have finished: their outcome is unknown
either way (a transaction refused for the fence fails them all), and the reconciler then
plans the pass's models again from what etcd holds (everything after a refused fence: a new
term).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
DEFAULT_DEPTH = 4


class TxnPipeline(Generic[T]):
    """Runs ``send(batch)`` for each submitted batch, at most ``depth`` at once; depth 1 sends
    in the caller's thread (no pool)."""

    def __init__(
        self,
        send: Callable[[Sequence[T]], object],
        depth: int = DEFAULT_DEPTH,
        clock: Callable[[], float] = time.perf_counter,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self._send = send
        self._depth = depth
        self._pool = ThreadPoolExecutor(depth, thread_name_prefix="controller-txn") if depth > 1 else None
        self._in_flight: deque[Future[object]] = deque()
        self._clock = clock
        # told each transaction's seconds, from its send to its answer (in the sending
        # thread): etcd's commit as the controller sees it, which an operator compares with
        # etcd's own handling time to tell a slow etcd from a busy controller process
        self._observe = observe
        # seconds the caller waited for transactions (a free slot, or drain), since it was
        # last reset: what a pass's log line says of etcd's share of its time
        self.waited = 0.0

    def submit(self, batch: Sequence[T]) -> None:
        """Send batch; first wait until fewer than depth are in flight. Raises the failure of a
        transaction that finished (after waiting for the others: see ``drain``)."""
        if self._pool is None:
            started = self._clock()
            try:
                self._timed_send(batch)
            finally:
                self.waited += self._clock() - started
            return
        if len(self._in_flight) >= self._depth:
            started = self._clock()
            try:
                while len(self._in_flight) >= self._depth:
                    self._landed(self._in_flight.popleft())
            finally:
                self.waited += self._clock() - started
        self._in_flight.append(self._pool.submit(self._timed_send, batch))

    def _timed_send(self, batch: Sequence[T]) -> object:
        if self._observe is None:
            return self._send(batch)
        started = self._clock()
        try:
            return self._send(batch)
        finally:
            self._observe(self._clock() - started)

    def drain(self) -> None:
        """Wait for every transaction in flight; raise the first failure among them."""
        first: BaseException | None = None
        started = self._clock()
        while self._in_flight:
            error = self._in_flight.popleft().exception()
            first = first or error
        self.waited += self._clock() - started
        if first is not None:
            raise first

    def _landed(self, future: Future[object]) -> None:
        error = future.exception()
        if error is not None:
            try:
                self.drain()
            except BaseException:  # noqa: BLE001, S110 - the first failure is the one raised
                pass
            raise error


__all__ = ["DEFAULT_DEPTH", "TxnPipeline"]
