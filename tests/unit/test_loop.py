"""The one loop (tfleet/loop.py) and the one backoff (tfleet/backoff.py), driven turn by turn
with signals that never block and a fake clock: no thread, no sleep."""

from __future__ import annotations

import random

import pytest

from tfleet.backoff import Backoff
from tfleet.loop import Loop, Outcome
from tfleet.store import Backoff as StoreBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSignal:
    """threading.Event without blocking: wait() records its timeout and lets the fake clock
    run through it (when not set)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._set = False
        self.waits: list[float | None] = []

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if not self._set:
            assert timeout is not None, "the loop would block forever"
            self._clock.now += timeout
        return self._set


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.events.append((level, event, fields))


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class Script:
    """A pass that returns (or raises) the next item of a script and records ``woke``."""

    def __init__(self, *items: object) -> None:
        self.items = list(items)
        self.calls: list[bool] = []

    def __call__(self, woke: bool) -> Outcome | None:
        self.calls.append(woke)
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]


def make(step, *, coalesce: float = 0.0, idle: float | None = None, **kwargs) -> tuple[Loop, FakeSignal, FakeSignal, Clock, Log]:
    clock = Clock()
    wake, stop, log = FakeSignal(clock), FakeSignal(clock), Log()
    loop = Loop("test-loop", step, log=log, coalesce=coalesce, idle=idle, clock=clock, rng=random.Random(1), wake_signal=wake, stop_signal=stop, **kwargs)
    return loop, wake, stop, clock, log


def test_the_first_pass_runs_at_once_and_a_requeue_sets_the_next_wait() -> None:
    step = Script(Outcome("pending", requeue_after=2.5), Outcome("ok"))
    loop, wake, _, _, _ = make(step, idle=30.0)
    assert loop.turn() and loop.turn()
    assert wake.waits == [0.0, 2.5]
    assert step.calls == [False, False]  # neither pass was woken: a requeue came due
    assert loop.timeout() == 30.0  # no requeue asked: the resync


def test_a_requeue_longer_than_idle_is_cut_to_idle_and_without_idle_only_a_wake_runs_a_pass() -> None:
    loop, _, _, _, _ = make(Script(Outcome(requeue_after=500.0)), idle=60.0)
    loop.turn()
    assert loop.timeout() == 60.0
    loop2, _, _, _, _ = make(Script(Outcome()))
    loop2.turn()
    assert loop2.timeout() is None


def test_a_wake_is_coalesced_and_a_requeue_is_not() -> None:
    step = Script(Outcome(requeue_after=1.0), Outcome(), Outcome())
    loop, wake, stop, _, _ = make(step, coalesce=0.2)
    loop.turn()  # requeue came due: no coalescing
    assert stop.waits == []
    loop.wake()
    loop.turn()
    assert stop.waits == [0.2] and step.calls == [False, True]
    assert not wake.is_set()  # cleared before the pass: a wake during it runs another


class WakeWhileWaiting(FakeSignal):
    """A wake signal that a watch sets while the loop waits for it (``arrive``)."""

    arrive = False

    def wait(self, timeout: float | None = None) -> bool:
        if self.arrive:
            self.arrive, self._set = False, True
        return super().wait(timeout)


def test_changes_that_came_during_a_long_pass_are_not_coalesced_again() -> None:
    """A pass that ran at least the coalesce window and was woken meanwhile: the next pass
    runs at once. A short pass woken meanwhile, or a wake while the loop waited, waits the
    window (one pass for a burst)."""
    passes = [(0.5, True), (0.5, False), (0.05, True), (0.05, False), (0.5, False), (0.5, False)]

    def step(woke: bool) -> Outcome:
        seconds, wakes = passes.pop(0)
        clock.now += seconds
        if wakes:
            loop.wake()  # a watch event during the pass
        return Outcome()

    clock = Clock()
    wake, stop = WakeWhileWaiting(clock), FakeSignal(clock)
    loop = Loop("test-loop", step, log=Log(), coalesce=0.2, clock=clock, rng=random.Random(1), wake_signal=wake, stop_signal=stop)
    loop.turn()  # the first pass (no wait): woken during its 0.5 s
    loop.turn()  # woken during a pass longer than the window: at once
    assert stop.waits == []
    wake.arrive = True
    loop.turn()  # woken while waiting: coalesced; this pass is short and woken meanwhile
    assert stop.waits == [0.2]
    loop.turn()  # woken during a pass shorter than the window: coalesced
    assert stop.waits == [0.2, 0.2]
    wake.arrive = True
    loop.turn()  # woken while waiting: coalesced (a long pass, nobody woke it)
    assert stop.waits == [0.2, 0.2, 0.2]
    wake.arrive = True
    loop.turn()  # woken while waiting after a long pass: coalesced (nothing gathered during it)
    assert stop.waits == [0.2, 0.2, 0.2, 0.2]


def test_an_empty_outcome_keeps_the_last_requeue() -> None:
    step = Script(Outcome(requeue_after=3.0), None)
    loop, _, _, _, _ = make(step)
    loop.turn()
    loop.wake()
    loop.turn()
    assert loop.timeout() == 3.0


def test_an_unexpected_error_is_logged_counted_backed_off_and_the_loop_goes_on() -> None:
    failures: list[str] = []
    errors = Counter()
    step = Script(RuntimeError("boom"), RuntimeError("boom"), Outcome())
    loop, _, stop, clock, log = make(step, errors=errors, on_failure=lambda: failures.append("forget"), failure_backoff=Backoff(1.0, 30.0))
    assert loop.turn() and loop.turn()
    assert errors.value == 2 and failures == ["forget", "forget"] and loop.guard.failures == 2
    assert len(stop.waits) == 2 and 0.5 <= stop.waits[0] <= 1.0 and 1.0 <= stop.waits[1] <= 2.0  # growing
    assert [e[0] for e in log.events if e[1] == "pass_failed"] == ["error", "debug"]  # the same error is logged once
    assert loop.timeout() == 0.0  # run again at once after the backoff
    loop.turn()
    assert loop.guard.failures == 0 and ("info", "pass_recovered") in [(e[0], e[1]) for e in log.events]


def test_a_pass_that_asks_to_retry_backs_off_more_each_time_until_one_does_not() -> None:
    step = Script(Outcome("etcd_unavailable", retry=True), Outcome("etcd_unavailable", retry=True), Outcome("ok"))
    loop, _, stop, _, _ = make(step, retry_backoff=Backoff(initial=0.4, cap=5.0, jitter=0))
    loop.turn()
    loop.turn()
    assert stop.waits == [0.4, 0.8] and loop.retries == 2
    loop.turn()
    assert loop.retries == 0


def test_stop_ends_the_loop_before_any_further_pass() -> None:
    step = Script(Outcome(requeue_after=1.0))
    loop, _, _, _, _ = make(step, coalesce=0.2)
    loop.turn()
    loop.stop()
    assert not loop.turn()
    loop.run()  # returns at once
    assert step.calls == [False]


def test_the_beat_is_when_the_last_pass_started() -> None:
    step = Script(Outcome(requeue_after=7.0), Outcome())
    loop, _, _, clock, _ = make(step)
    loop.turn()
    loop.turn()
    assert loop.beat == clock.now == 107.0


def test_one_backoff_class_grows_with_bounded_jitter_and_a_fixed_one_has_none() -> None:
    assert StoreBackoff is Backoff  # the store's watch uses the same class
    rng = random.Random(3)
    jittered = Backoff(initial=1.0, cap=8.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (50, 8.0), (10**9, 8.0)]:
        assert base / 2 <= jittered.delay(attempt, rng) <= base
    fixed = Backoff(initial=0.5, cap=60.0, jitter=0)
    assert [fixed.delay(n, rng) for n in (1, 2, 3, 10)] == [0.5, 1.0, 2.0, 60.0]
    for bad in (dict(initial=0, cap=1), dict(initial=2, cap=1), dict(initial=1, cap=2, jitter=1.5)):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]
