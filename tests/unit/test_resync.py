"""The rolling resync's pacing (controller/resync.py): every name once per interval, never
more than a slice per pass, and when the next slice is owed."""

from __future__ import annotations

import pytest

from tfleet.controller.resync import MIN_DUE_IN, RollingResync

NAMES = [f"m{i}" for i in range(100)]


def test_names_are_owed_in_proportion_to_the_time_passed() -> None:
    resync = RollingResync(60.0, slice_max=1000)
    resync.restart(0.0)
    assert resync.take(0.0, lambda: NAMES) == []  # nothing owed at the start of a cycle
    assert resync.take(6.0, lambda: NAMES) == NAMES[:10]
    assert resync.take(6.0, lambda: NAMES) == []
    assert resync.take(30.0, lambda: NAMES) == NAMES[10:50]
    assert resync.take(61.0, lambda: NAMES) == NAMES[50:]
    assert resync.due_in(61.0) is None  # the cycle is done


def test_a_pass_takes_at_most_a_slice_and_is_asked_back_at_once_when_behind() -> None:
    resync = RollingResync(60.0, slice_max=30)
    resync.restart(0.0)
    taken = []
    for _ in range(4):
        taken += resync.take(600.0, lambda: NAMES)  # long idle: the whole cycle is owed
        assert len(taken) <= 30 * (_ + 1)
        if len(taken) < len(NAMES):
            assert resync.due_in(600.0) == MIN_DUE_IN
    assert taken == NAMES and resync.take(600.0, lambda: NAMES) == []


def test_due_in_says_when_the_next_slice_is_owed() -> None:
    resync = RollingResync(100.0, slice_max=10)
    resync.restart(0.0)
    assert resync.due_in(0.0) is None  # the cycle's names are taken by the next pass
    assert resync.take(1.0, lambda: NAMES) == ["m0"]
    # the next 10 names (up to m10) are all owed at t = 11 s
    assert resync.due_in(1.0) == pytest.approx(10.0)
    assert resync.take(11.0, lambda: NAMES) == NAMES[1:11]


def test_names_owed_since_the_take_do_not_call_the_loop_back_before_a_slice_is_owed() -> None:
    """A pass asks when the net is due next after its own work, when a few names are owed
    again already: the answer is still the next whole slice, not at once (which made the
    net a pass every ~60 ms of a few names each, each pass with its fixed cost)."""
    resync = RollingResync(400.0, slice_max=500, rate=250.0)
    names = [f"m{i}" for i in range(100_000)]
    resync.restart(0.0)
    assert resync.take(0.0, lambda: names) == []
    assert len(resync.take(2.0, lambda: names)) == 500
    # 20 ms later (the pass's own time) 5 more are owed: come back when 500 are
    assert resync.due_in(2.02) == pytest.approx(1.98)
    assert len(resync.take(4.0, lambda: names)) == 500
    # a loop that came back late finds a whole slice waiting: at once
    assert resync.due_in(7.0) == MIN_DUE_IN


def test_a_new_cycle_takes_the_names_present_when_it_starts() -> None:
    resync = RollingResync(10.0, slice_max=1000)
    resync.restart(0.0)
    assert resync.take(5.0, lambda: ["a", "b"]) == ["a"]
    assert resync.take(9.0, lambda: ["a", "b", "c"]) == ["b"]  # this cycle's names: taken at its first pass
    assert resync.take(9.5, lambda: ["a", "b", "c"]) == []  # done until the interval has passed
    assert resync.take(15.0, lambda: ["a", "b", "c"]) == []  # a new cycle begins: nothing owed yet
    assert resync.take(20.0, lambda: ["a", "b", "c"]) == ["a", "b"]
    assert resync.take(25.0, lambda: []) == ["c"]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        RollingResync(0.0)
    with pytest.raises(ValueError):
        RollingResync(10.0, slice_max=0)


def test_a_rate_stretches_the_cycle_of_a_large_fleet_and_keeps_a_small_ones_interval() -> None:
    """--full-plan-rate: at most `rate` names a second. 100 names at 2 a second take 50 s, not
    the 10 s interval; the pace is then 2 a second whatever the passes' timing."""
    resync = RollingResync(10.0, slice_max=1000, rate=2.0)
    resync.restart(0.0)
    assert resync.take(0.0, lambda: NAMES) == []
    assert resync.span == 50.0
    assert resync.take(5.0, lambda: NAMES) == NAMES[:10]  # 2 a second, not 10
    assert resync.due_in(5.0) == pytest.approx(45.0)  # the rest (a slice) is all owed at the span's end
    assert resync.take(25.0, lambda: NAMES) == NAMES[10:50]
    assert resync.take(49.0, lambda: NAMES) == NAMES[50:98]
    assert resync.take(50.0, lambda: NAMES) == NAMES[98:]
    assert resync.take(60.0, lambda: NAMES) == []  # a span after the last one began: the next begins
    assert resync.take(65.0, lambda: NAMES) == NAMES[:10]  # at the same pace
    small = RollingResync(10.0, slice_max=1000, rate=2.0)
    small.restart(0.0)
    assert small.take(0.0, lambda: NAMES[:5]) == [] and small.span == 10.0  # 5 names: 2.5 s at the rate
    assert small.take(10.0, lambda: NAMES[:5]) == NAMES[:5]


def test_a_rate_must_be_positive() -> None:
    for rate in (0.0, -1.0):
        with pytest.raises(ValueError):
            RollingResync(10.0, rate=rate)


def test_a_cycle_lasts_at_least_what_it_is_told() -> None:
    """The hosts' cycle follows the models' (a host's turn re-accounts every replica it holds):
    at_least stretches a cycle that begins now, not one under way."""
    hosts = RollingResync(10.0, slice_max=1000)
    hosts.restart(0.0)
    assert hosts.take(0.0, lambda: NAMES[:20], at_least=40.0) == [] and hosts.span == 40.0
    assert hosts.take(10.0, lambda: NAMES[:20], at_least=80.0) == NAMES[:5]  # 20 names over 40 s
    assert hosts.span == 40.0
    assert hosts.take(5.0 + 40.0, lambda: NAMES[:20], at_least=0.0) == NAMES[5:20]
    assert hosts.take(50.0, lambda: NAMES[:20], at_least=0.0) == [] and hosts.span == 10.0  # the next cycle: the interval
