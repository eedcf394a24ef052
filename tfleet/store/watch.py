"""PrefixWatch: a watch of one prefix that survives etcd restarts, partitions and compactions.

It knows nothing of members or clients: EtcdStore hands it a function that opens one
stream (on the best member) and one that re-reads the prefix after a compaction.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable

from tfleet.store.settings import Backoff
from tfleet.store.types import RevisionCompacted, Snapshot, StoreError, WatchEvent

_log = logging.getLogger("tfleet.store")


class _Compacted(Exception):
    """The watch's next revision was compacted away: the owner must re-read the prefix."""

    def __init__(self, compacted_revision: int) -> None:
        super().__init__(f"revision compacted (etcd compacted up to {compacted_revision})")
        self.compacted_revision = compacted_revision


_RESTART = object()
_STOP = object()
# Responses of the stream queued for the watch's thread: beyond them the client's thread waits
# (and with it the gRPC stream and etcd's sending), so a slow consumer (the history recorder
# replaying a long history) holds a bounded amount of it in memory, and nothing is dropped.
STREAM_BUFFER = 16
_SLOT_WAIT = 0.5  # seconds between looks, while waiting for room, at whether the stream was dropped


class PrefixWatch:
    """A watch of one prefix that survives etcd restarts, partitions and compactions.

    One background thread, named "watch:<prefix>", owns the stream and calls the
    callbacks, one at a time. Responses of the etcd client arrive through a queue tagged
    with the stream's generation, so nothing from a dropped stream is ever delivered.
    After a connection error the watch resumes from the last delivered revision + 1, so no
    event is lost or repeated; when that revision was compacted, on_reset gets a fresh
    snapshot and the watch continues after it.
    """

    def __init__(
        self,
        *,
        prefix: str,
        start_revision: int,
        open_stream: Callable[[str, int, Callable[[object], None]], Callable[[], None]],
        list_prefix: Callable[[str], Snapshot],
        list_at: Callable[[str, int], Snapshot] | None = None,
        translate_error: Callable[[str, int, object], BaseException],
        on_events: Callable[[list[WatchEvent]], None],
        on_reset: Callable[[Snapshot], None],
        on_error: Callable[[Exception], None] | None,
        backoff: Backoff,
        rng: random.Random,
        join_timeout: float,
    ) -> None:
        self.prefix = prefix
        self.revision = start_revision - 1
        self.restarts = 0
        self._open_stream = open_stream
        self._list_prefix = list_prefix
        self._list_at = list_at
        self._compacted_at: int | None = None
        self._translate_error = translate_error
        self._on_events = on_events
        self._on_reset = on_reset
        self._on_error = on_error
        self._backoff = backoff
        self._rng = rng
        self._join_timeout = join_timeout
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._slots = threading.Semaphore(STREAM_BUFFER)  # stream items in _inbox (control items take none)
        self._stopping = threading.Event()
        self._generation = 0
        self._opened_once = False
        self._needs_reset = False
        self._close_lock = threading.Lock()
        self._close_stream: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch:{prefix}", daemon=True)

    def __repr__(self) -> str:
        return f"PrefixWatch({self.prefix!r}, revision={self.revision}, restarts={self.restarts})"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def restart(self) -> None:
        """Drop the current stream and resume from revision + 1, e.g. when it looks hung."""
        self._inbox.put(_RESTART)

    def cancel(self) -> None:
        """Stop the watch; no callback runs after this returns (unless the join timed out)."""
        self._stopping.set()
        self._inbox.put(_STOP)
        self._close_current_stream()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                _log.warning("watch %r did not stop within %.1fs", self.prefix, self._join_timeout)

    def _start(self) -> None:
        self._thread.start()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._needs_reset:
                    self._reset()
                if self._stream():
                    failures = 0
            except _Compacted as exc:
                _log.info("watch %r: %s; re-reading the prefix", self.prefix, exc)
                self._needs_reset = True
                self._compacted_at = exc.compacted_revision
            except Exception as exc:  # supervised: report, back off, carry on
                if self._stopping.is_set():
                    break
                failures += 1
                self._report(exc)
                self._pause(self._backoff.delay(failures, self._rng))
        self._close_current_stream()

    def _stream(self) -> bool:
        """Open one stream and pump it until it fails (raises) or is restarted/stopped.

        Returns True when the stream was opened, so the caller can reset its backoff.
        """
        self._generation += 1
        generation = self._generation

        def deliver(item: object) -> None:
            # the client's thread: wait for room, unless the stream was dropped meanwhile
            while not self._slots.acquire(timeout=_SLOT_WAIT):
                if self._stopping.is_set() or generation != self._generation:
                    return
            self._inbox.put((generation, item))

        close = self._open_stream(self.prefix, self.revision + 1, deliver)
        with self._close_lock:
            self._close_stream = close
        if self._stopping.is_set():
            self._close_current_stream()
            return True
        if self._opened_once:
            self.restarts += 1
        self._opened_once = True
        try:
            self._pump(generation)
        finally:
            self._close_current_stream()
        return True

    def _pump(self, generation: int) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP or item is _RESTART:
                return
            assert isinstance(item, tuple)
            self._slots.release()
            item_generation, payload = item
            if item_generation != generation:
                continue  # left over from a dropped stream
            if payload is None or isinstance(payload, BaseException):
                raise self._translate_error(self.prefix, self.revision, payload)
            self._deliver(payload)

    def _deliver(self, events: list[WatchEvent]) -> None:
        """Events of whole revisions (the stream reassembles etcd's fragments)."""
        events = [e for e in events if e.mod_revision > self.revision]
        if not events:
            return  # nothing new
        try:
            self._on_events(events)
        except Exception:
            _log.exception("watch %r: on_events raised; events up to revision %d are skipped", self.prefix, events[-1].mod_revision)
        self.revision = max(self.revision, events[-1].mod_revision)

    def _reset(self) -> None:
        snapshot = self._reset_snapshot()
        try:
            self._on_reset(snapshot)
        except Exception:
            _log.exception("watch %r: on_reset raised", self.prefix)
        self.revision = snapshot.revision
        self._needs_reset = False
        self._compacted_at = None

    def _reset_snapshot(self) -> Snapshot:
        """The prefix at the compaction revision when the owner asked for it (list_at), so
        that every event after it is still delivered and only the compacted revisions are
        lost; at the current revision otherwise, or when that revision is gone as well."""
        at = self._compacted_at
        if self._list_at is not None and at is not None and at > self.revision:
            try:
                return self._list_at(self.prefix, at)
            except RevisionCompacted:
                _log.info("watch %r: revision %d was compacted as well; reading the current one", self.prefix, at)
        return self._list_prefix(self.prefix)

    def _report(self, exc: Exception) -> None:
        if not isinstance(exc, StoreError):
            _log.exception("watch %r: unexpected error", self.prefix, exc_info=exc)
            exc = StoreError(f"etcd watch {self.prefix!r} failed: {type(exc).__name__}: {exc}")
        else:
            _log.info("watch %r interrupted: %s", self.prefix, exc)
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:
            _log.exception("watch %r: on_error raised", self.prefix)

    def _pause(self, seconds: float) -> None:
        """Back off, but wake at once for cancel() or restart(); stale stream items are dropped."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                return
            if item is _STOP:
                self._stopping.set()
                return
            if item is _RESTART:
                return
            self._slots.release()  # a stale stream item, dropped

    def _close_current_stream(self) -> None:
        with self._close_lock:
            close, self._close_stream = self._close_stream, None
        if close is not None:
            close()
