"""The rolling resync: the whole fleet planned again every interval, a bounded slice per pass.

The incremental planner (controller/incremental.py) plans only what changed. The net under it
used to be a full plan every ``--full-plan-interval``: about 1.4 s of CPU at 10,000 models,
during which every change-driven pass waited (a change's p99 went from ~0.2 s to 2.3 s when
one landed in its window). A rolling resync spreads the same work over the interval instead:
each pass also plans a slice of the names, paced so that every name is planned once per
interval, and never more than ``slice_max`` names in one pass. A change then waits behind at
most one slice, not behind the fleet.

A cycle takes the names present when it starts (one list of names per interval: a copy of
keys, not a plan); a name added during the cycle is planned by its own change, and the next
cycle takes it. When passes are too rare to keep the pace with ``slice_max`` names each,
``due_in`` says when the next slice is owed, for the loop to run a pass then.

The net's pace has a ceiling too (``rate``: names per second, the controller's
--full-plan-rate): a cycle lasts the interval or ``names / rate`` seconds, whichever is
longer; a fleet of up to rate x interval names (15,000 at the defaults) keeps the interval.
Planning a model costs ~0.2 ms of the controller's one interpreter, so a minute's cycle of
100,000 models held a third of a core (~1,700 models a second) all the time, on an idle
fleet too. The hosts' cycle lasts at least as long as the models' (``take``'s
``at_least``): a host's turn re-accounts every replica it holds in placement (200 at
100,000 models on 1,000 hosts), so a minute's cycle of 1,000 hosts was ~3,400 re-accounted
replicas a second, more than the models' own turns at the rate. With both, the cycle of
100,000 models is 400 s and the net's CPU is bounded whatever the fleet's size: the idle
pass thread of bench/scale's controller 0.35 -> 0.11-0.13 s a second, 0.294 -> 0.057 in
memory (bench/resync_pass.py; docs/operations.md, "The net's cost at 100,000 models"), and
~0.045 once ``due_in`` stopped calling the loop back for the few names owed at a pass's end
(a pass every ~60 ms, each with a pass's fixed cost; now one per slice, every 2 s there).

Pure: the clock is passed in. tests/unit/test_resync.py pins the pacing and the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

# At most this many names per pass: about 70 ms of planning at 0.14 ms a model (a full plan
# measured 1.4 s at 10,000 models, bench/controller_plan.py).
SLICE_MAX = 500
# Every model and host planned again this often (seconds), by default: the controller's
# --full-plan-interval (controller/settings.py), the minute the periodic full plan had.
FULL_PLAN_EVERY = 60.0
# At most this many names a second, by default (see the module's docstring): --full-plan-rate.
RATE_MAX = 250.0
# The loop is not asked to come back sooner than this for a slice.
MIN_DUE_IN = 0.05


class RollingResync:
    def __init__(self, interval: float, slice_max: int = SLICE_MAX, rate: float | None = None) -> None:
        """rate: at most this many names a second (None: the interval alone sets the pace)."""
        if interval <= 0 or slice_max < 1 or (rate is not None and rate <= 0):
            raise ValueError("the resync interval and rate must be positive and a slice at least one name")
        self.interval = interval
        self.slice_max = slice_max
        self.rate = rate
        self.span = interval  # this cycle's length: the interval, or longer for the rate
        self._start = 0.0
        self._names: list[str] | None = None  # this cycle's names (None: taken at the next take)
        self._done = 0  # how many of them were handed out

    def restart(self, now: float) -> None:
        """Everything was just planned (a full plan): the next cycle starts now."""
        self._start, self._names, self._done = now, None, 0

    def take(self, now: float, names: Callable[[], Iterable[str]], at_least: float = 0.0) -> list[str]:
        """The names owed by now (at most ``slice_max``); ``names`` is called once per cycle.
        at_least: a cycle that begins now lasts at least this long (the hosts' cycle follows
        the models': a host's turn re-reads every replica it holds)."""
        if self._names is not None and self._done >= len(self._names):
            if now - self._start < self.span:
                return []  # this cycle is done; the next starts when its span has passed
            self._start, self._names = now, None
        if self._names is None:
            self._names, self._done = list(names()), 0
            self.span = max(self.interval, at_least, 0.0 if self.rate is None else len(self._names) / self.rate)
        owed = self._owed(now)
        due = self._names[self._done : self._done + min(owed, self.slice_max)]
        self._done += len(due)
        return due

    def due_in(self, now: float) -> float | None:
        """Seconds until the next slice is owed: the next ``slice_max`` names (or the rest of
        the cycle) all owed; at once when they are already (passes came too rarely). None
        when this cycle is done (the next one starts an interval after this one did: the
        app's periodic resync pass comes by then).

        Not when the first of them is owed: a pass ends a little after its take, a few names
        are owed by then, and asking the loop back at once for those made the net a pass
        every ~60 ms of ~15 names at 100,000 models (250 a second), each with a pass's fixed
        cost: ~16 passes a second on an idle fleet (bench/scale, session 14)."""
        if self._names is None:
            return None  # a cycle that has not begun: the next pass begins it
        left = len(self._names) - self._done
        if left <= 0:
            return None
        target = self._done + min(left, self.slice_max)
        if self._done + self._owed(now) >= target:
            return MIN_DUE_IN
        # the moment the next slice_max names (or the rest) are owed
        return max(MIN_DUE_IN, self._start + target * self.span / len(self._names) - now)

    def _owed(self, now: float) -> int:
        assert self._names is not None
        elapsed = min(1.0, max(0.0, (now - self._start) / self.span))
        return max(0, math.ceil(len(self._names) * elapsed) - self._done)


__all__ = ["FULL_PLAN_EVERY", "RATE_MAX", "RollingResync", "SLICE_MAX"]
