"""The one supervised loop every daemon runs: wake, coalesce, pass, requeue, back off.

controller-runtime's reconcile handler in a few lines. A watch (or a timer) calls ``wake()``;
the loop waits for that, or for the requeue time the last pass asked for, or for ``idle``
seconds (the periodic resync, the net under every watch). After a wake it waits a
``coalesce`` window so that a burst of changes costs one pass (not when the wake came
during the last pass and that pass took at least the window: those changes have gathered
that long already), then calls the pass with
``woke`` (True: somebody called wake(); False: a requeue or the resync came due). The pass
returns its outcome, which says what the loop does next:

* ``requeue_after``: run again after that many seconds even without a wake (None: only
  after a wake or the resync);
* ``retry``: the pass could not do its work (etcd unreachable): run again after the loop's
  jittered exponential backoff, which grows while passes keep asking to retry;
* no outcome at all (None): nothing was due; keep waiting for the last requeue.

An exception nobody expected is the pass guard's (tfleet/passguard.py): logged once with its
traceback, counted in ``tfleet_<daemon>_pass_errors_total``, then the loop backs off, calls
``on_failure`` (forget what the failed pass may have half-updated) and runs again. The loop
never dies of a pass; only ``stop()`` ends ``run()``.

Everything the loop touches is injected: the wake and stop signals (threading.Event by
default; tests pass ones that never block), the clock and the random source. ``turn()`` is
one iteration, so a unit test drives the loop without a thread.

Used by: the agent's loop (agent/app.py), the controller's (controller/app.py), the
dashboard's state thread (controller/dashboard/server.py), the history recorder
(controller/history.py) and ``tfleet routes render --watch`` (tfleet/cli/routes.py).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge

from tfleet.backoff import Backoff
from tfleet.logs import Logger
from tfleet.passguard import DEFAULT_BACKOFF, PassGuard

# Backoff of passes that ask to retry (etcd unreachable): quick at first, a few seconds at most.
RETRY_BACKOFF = Backoff(initial=0.5, cap=5.0)


class Signal(Protocol):
    """What the loop needs of threading.Event (a test passes one that never blocks)."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Result(Protocol):
    """What the loop reads of a pass's outcome (each reconciler has its own Outcome type)."""

    @property
    def requeue_after(self) -> float | None: ...

    @property
    def retry(self) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    """A pass's outcome, controller-runtime style: what happened, and when to run again."""

    result: str = "ok"
    requeue_after: float | None = None  # seconds; None: wait for a wake or the resync
    retry: bool = False  # could not do its work: run again after the loop's backoff


class Loop:
    """One supervised loop; ``run()`` in the thread that owns it, ``wake()``/``stop()`` from any."""

    def __init__(
        self,
        name: str,
        step: Callable[[bool], Result | None],
        *,
        log: Logger,
        errors: Counter | None = None,
        failing: Gauge | None = None,
        coalesce: float = 0.0,
        idle: float | None = None,
        failure_backoff: Backoff = DEFAULT_BACKOFF,
        retry_backoff: Backoff = RETRY_BACKOFF,
        on_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        wake_signal: Signal | None = None,
        stop_signal: Signal | None = None,
    ) -> None:
        """errors/failing: the pass guard's Counter and Gauge (or None); idle: the longest wait
        without a wake (None: wait for a wake or a requeue)."""
        if coalesce < 0 or (idle is not None and idle <= 0):
            raise ValueError(f"loop {name}: coalesce must be >= 0 and idle > 0, got {coalesce}, {idle}")
        self.name = name
        self._step = step
        self._rng = rng or random.Random()
        self.guard = PassGuard(name, log, errors, failing, backoff=failure_backoff, rng=self._rng)
        self._coalesce = coalesce
        self._idle = idle
        self._retry_backoff = retry_backoff
        self._on_failure = on_failure
        self._clock = clock
        self._wake: Signal = wake_signal if wake_signal is not None else threading.Event()
        self._stop: Signal = stop_signal if stop_signal is not None else threading.Event()
        self._requeue: float | None = 0.0  # the first pass runs at once
        self._retries = 0
        self.beat = clock()  # when the last pass started (for /healthz)
        self._took = 0.0  # how long the last pass ran

    # -- from any thread ------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Ask run() to return; safe from a signal handler or another thread."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` unless stopped meanwhile (for a pass that must pause); True
        when stopped."""
        return self._stop.wait(seconds)

    @property
    def retries(self) -> int:
        """Consecutive passes that asked to retry (0 after one that did not)."""
        return self._retries

    @property
    def requeue(self) -> float | None:
        """The requeue time asked for by the last pass (seconds from the end of its turn)."""
        return self._requeue

    # -- the loop -------------------------------------------------------------------------
    def _run_step(self, woke: bool) -> Result | None:
        try:
            return self._step(woke)
        finally:
            self._took = self._clock() - self.beat

    def run(self) -> None:
        while self.turn():
            pass

    def timeout(self) -> float | None:
        """How long the next turn waits for a wake."""
        requeue = None if self._requeue is None else max(0.0, self._requeue)
        if requeue is None:
            return self._idle
        return requeue if self._idle is None else min(requeue, self._idle)

    def turn(self) -> bool:
        """Wait, then run one pass; False once stopped."""
        # Changes that came in while a pass of at least the coalesce window ran have had that
        # window: the next pass takes them at once. (At 100,000 models a host loss runs
        # passes of 1-4 s back to back; the window added 0.1 s of nothing to each.)
        gathered = self._wake.is_set() and self._took >= self._coalesce
        woke = self._wake.wait(self.timeout())
        if self._stop.is_set():
            return False
        if woke and self._coalesce and not gathered:
            # let a burst of changes land: one pass for all of them
            if self._stop.wait(self._coalesce):
                return False
        self._wake.clear()
        self.beat = self._clock()
        try:
            outcome = self._run_step(woke)
        except Exception as exc:  # noqa: BLE001 - a pass never stops the loop (tfleet/passguard.py)
            # Back off even if watch events keep waking the loop; then run again at once (the
            # owner's on_failure makes that a full pass: the failed one may have left caches
            # half-updated).
            delay = self.guard.failed(exc)
            if self._on_failure is not None:
                self._on_failure()
            self._stop.wait(delay)
            self._requeue = 0.0
            return not self._stop.is_set()
        if outcome is None:
            return True  # no pass was due: keep the requeue asked for by the last one
        self.guard.succeeded()
        if outcome.retry:
            self._retries += 1
            self._stop.wait(self._retry_backoff.delay(self._retries, self._rng))
            self._requeue = 0.0
        else:
            self._retries = 0
            self._requeue = outcome.requeue_after
        return not self._stop.is_set()
