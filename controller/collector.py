"""The controller process's cycle collector: pauses that do not grow with the fleet.

Why (docs/operations.md, "The controller's pauses"): CPython's cycle collector runs a
generation when its count of container allocations minus deallocations passes a threshold,
and then scans every object in it. A pass that replaces fleet-sized state (the snapshot's
parsed keys, placement's per-model records, the reports) frees about as many old objects as
it allocates, so the count barely moves while the youngest generation fills with hundreds of
thousands of live objects; the collection that finally comes scans all of them, wherever it
lands. At 100,000 models (bench/scale with a gc callback) the first pass of a host loss
paused 771 ms in one generation-0 collection and, 4 s later, 801 ms in generation 1: ~1.6 s
of the controller's one interpreter lock in the middle of re-placing lost replicas, and
~0.9 s more in smaller collections, finding nothing. A full collection takes ~4.5 s there.

It finds nothing because the controller's state holds no reference cycles: a live run with
``gc.DEBUG_SAVEALL`` (bench/scale at 3,000 models, host loss included) found no cyclic
garbage besides the interpreter's own at import, and at 100,000 models every collection but
one at start-up found none (the full one at exit finds the modules' teardown). So:

* during a pass (``Collector.during_pass``) nothing is collected automatically: a pass's
  allocations are its working set and the state it leaves, not garbage;
* after it, every live object moves to the permanent generation (``gc.freeze``: constant
  time, it joins lists), so the automatic collections between passes scan only what was
  allocated since, and no later collection scans the fleet again. Frozen objects are still
  freed by reference counting when dropped;
* only a cycle that becomes garbage after being frozen, or during a pass, would stay: once
  per ``full_every`` seconds (one hour), after a pass, everything is unfrozen and collected
  once, and the pause is logged (``gc_full_collection``).

Every collection's pause is measured (``tfleet_controller_gc_seconds_total`` per
generation), so an operator sees what the collector takes of the process.
"""

from __future__ import annotations

import gc as _gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from tfleet.logs import Logger

FULL_COLLECT_EVERY = 3600.0  # seconds between full collections (see the module docstring)


class Collections(Protocol):
    """The part of the ``gc`` module the collector drives (a fake in unit tests)."""

    callbacks: list[Callable[[str, dict[str, Any]], None]]

    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def freeze(self) -> None: ...
    def unfreeze(self) -> None: ...
    def collect(self) -> int: ...
    def get_freeze_count(self) -> int: ...


class PauseCounter(Protocol):
    def labels(self, generation: str) -> Any: ...


class Collector:
    """No automatic collection during a pass; what survived it is frozen; everything is
    collected once per ``full_every`` seconds."""

    def __init__(
        self,
        *,
        log: Logger,
        pauses: PauseCounter | None = None,
        full_every: float = FULL_COLLECT_EVERY,
        clock: Callable[[], float] = time.monotonic,
        gc: Collections = _gc,  # type: ignore[assignment]  # (the module satisfies the protocol)
    ) -> None:
        self._log = log
        self._pauses = pauses
        self._full_every = full_every
        self._clock = clock
        self._gc = gc
        self._last_full = clock()
        self._started: float | None = None
        self.full_collections = 0

    def start(self) -> None:
        """Measure every collection's pause from now on (a process-wide callback)."""
        if self._pauses is not None and self._on_collection not in self._gc.callbacks:
            self._gc.callbacks.append(self._on_collection)

    def stop(self) -> None:
        """Stop measuring, and give the frozen objects back to the collector (a process that
        goes on without this controller, e.g. a test run, collects as before)."""
        if self._on_collection in self._gc.callbacks:
            self._gc.callbacks.remove(self._on_collection)
        self._gc.unfreeze()

    @contextmanager
    def during_pass(self) -> Iterator[None]:
        """Around one pass: no automatic collection in it; after it (whatever it raised), a
        full collection when one is due, then everything alive is frozen."""
        self._gc.disable()
        try:
            yield
        finally:
            self._gc.enable()
            self.after_pass()

    def after_pass(self) -> None:
        now = self._clock()
        if now - self._last_full >= self._full_every:
            self._full(now)
        self._gc.freeze()

    def _full(self, now: float) -> None:
        frozen = self._gc.get_freeze_count()
        self._gc.unfreeze()
        started = self._clock()
        collected = self._gc.collect()
        took = self._clock() - started
        self._last_full = now
        self.full_collections += 1
        self._log.info("gc_full_collection", seconds=round(took, 3), collected=collected, frozen_before=frozen)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # (perf_counter, not the injected clock: a pause is measured, never scheduled)
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None and self._pauses is not None:
            self._pauses.labels(str(info.get("generation", "?"))).inc(time.perf_counter() - self._started)
            self._started = None


__all__ = ["Collections", "Collector", "FULL_COLLECT_EVERY"]
