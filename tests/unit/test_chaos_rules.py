"""The chaos soak's schedule and invariant rules (bench/chaos/schedule.py, invariants.py), on hand-made timelines."""

from __future__ import annotations

from bench.chaos import (
    FAULT_KINDS,
    FaultRecord,
    Timeline,
    WriteRecord,
    check_intents,
    check_unloads,
    check_zero_available,
    make_schedule,
)

HOSTS = ("h1", "h2", "h3")


def registered(timeline: Timeline) -> Timeline:
    """Every host registered at revision 1; a revision clock where revision 10 * t is
    committed at time t (one read every 0.5 s, answered at once)."""
    for host in HOSTS:
        timeline.host_events[host].append((1, True))
    timeline.clock += [(i / 2, i / 2, i * 5) for i in range(400)]
    return timeline


def test_same_seed_same_schedule_and_another_seed_differs() -> None:
    first = make_schedule(5, 40, FAULT_KINDS, hosts=4, models=8, ttl=6)
    assert first == make_schedule(5, 40, FAULT_KINDS, hosts=4, models=8, ttl=6)
    assert first != make_schedule(6, 40, FAULT_KINDS, hosts=4, models=8, ttl=6)
    assert {f.kind for f in first} <= set(FAULT_KINDS)
    only = make_schedule(5, 20, ("tfs_hang",), hosts=4, models=8, ttl=6)
    assert {f.kind for f in only} == {"tfs_hang"}
    assert all(f.hold > 6 for f in make_schedule(1, 20, ("agent_freeze",), hosts=4, models=8, ttl=6)), "an agent freeze outlives the lease"


def test_unload_of_an_assigned_version_by_a_healthy_host_is_a_violation() -> None:
    timeline = registered(Timeline())
    timeline.assignments[("h1", "m")] = [(10, frozenset({1}))]
    timeline.unloads.append((50.0, "h1", "m", 1))
    found = check_unloads(timeline, HOSTS, since=0.0, grace=10, lookback=30, lag=5)
    assert [v.kind for v in found] == ["healthy_unload"]


def test_unload_after_the_assignment_dropped_the_version_is_fine() -> None:
    timeline = registered(Timeline())
    timeline.assignments[("h1", "m")] = [(10, frozenset({1})), (490, frozenset({2}))]
    timeline.unloads.append((50.0, "h1", "m", 1))
    # the simulator's clock may be a little ahead of our reads (within `lag`)
    timeline.assignments[("h2", "m")] = [(10, frozenset({1})), (520, None)]
    timeline.unloads.append((50.0, "h2", "m", 1))
    assert check_unloads(timeline, HOSTS, since=0.0, grace=10, lookback=30, lag=5) == []
    # a change the revision clock cannot place before the unload: no reads while etcd was frozen
    frozen = registered(Timeline())
    frozen.clock = [c for c in frozen.clock if not 45 <= c[0] <= 70]
    frozen.assignments[("h1", "m")] = [(10, frozenset({1, 2})), (560, frozenset({2})), (600, frozenset({1, 2}))]
    frozen.unloads.append((50.0, "h1", "m", 1))
    assert check_unloads(frozen, HOSTS, since=0.0, grace=10, lookback=30, lag=5) == []
    frozen.clock = registered(Timeline()).clock  # with the reads, revision 560 is 6 s after the unload
    assert [v.kind for v in check_unloads(frozen, HOSTS, since=0.0, grace=10, lookback=30, lag=5)] == ["healthy_unload"]


def test_unload_on_a_faulted_host_or_one_that_lost_its_lease_is_not_counted() -> None:
    timeline = registered(Timeline())
    timeline.faults.append(FaultRecord("tfs_restart", "h1", start=40.0, end=41.0))
    timeline.host_events["h2"] += [(300, False), (450, True)]
    for host in ("h1", "h2"):
        timeline.assignments[(host, "m")] = [(10, frozenset({1}))]
        timeline.unloads.append((50.0, host, "m", 1))
    assert check_unloads(timeline, HOSTS, since=0.0, grace=10, lookback=30, lag=5) == []
    # once the grace is over, the host counts again
    timeline.unloads.append((90.0, "h1", "m", 1))
    assert [v.at for v in check_unloads(timeline, HOSTS, since=0.0, grace=10, lookback=30, lag=5)] == [90.0]


def samples(timeline: Timeline, start: float, end: float, state: dict) -> None:
    at = start
    while at <= end:
        timeline.samples.append((at, state))
        at += 0.5


def test_zero_available_while_a_healthy_host_held_the_model_is_a_violation() -> None:
    timeline = registered(Timeline())
    timeline.intents["m"] = [(0.0, 2)]
    samples(timeline, 1.0, 5.0, {"h1": {"m": frozenset({1})}, "h2": {"m": frozenset({1})}, "h3": {}})
    samples(timeline, 5.5, 8.0, {"h1": {}, "h2": {}, "h3": {}})
    found = check_zero_available(timeline, HOSTS, since=0.0, grace=10)
    assert [(v.kind, v.at) for v in found] == [("zero_available", 5.5)]


def test_zero_available_is_allowed_when_the_serving_hosts_were_faulted_or_too_few_are_healthy() -> None:
    timeline = registered(Timeline())
    timeline.intents["m"] = [(0.0, 2)]
    timeline.intents["single"] = [(0.0, 1)]
    timeline.faults.append(FaultRecord("tfs_restart", "h1", start=5.2, end=6.0))
    timeline.faults.append(FaultRecord("tfs_hang", "h2", start=5.2, end=6.0))
    samples(timeline, 1.0, 5.0, {"h1": {"m": frozenset({1}), "single": frozenset({1})}, "h2": {"m": frozenset({1})}, "h3": {}})
    samples(timeline, 5.5, 8.0, {"h1": {}, "h2": None, "h3": {}})
    assert check_zero_available(timeline, HOSTS, since=0.0, grace=10) == []
    # a blip shorter than the sampling rule allows is not a violation either
    blip = registered(Timeline())
    blip.intents["m"] = [(0.0, 2)]
    samples(blip, 1.0, 5.0, {"h1": {"m": frozenset({1})}, "h2": {}, "h3": {}})
    blip.samples.append((5.5, {"h1": {}, "h2": {}, "h3": {}}))
    samples(blip, 6.0, 8.0, {"h1": {}, "h2": {"m": frozenset({1})}, "h3": {}})
    assert check_zero_available(blip, HOSTS, since=0.0, grace=10) == []


def doc(version: int) -> dict:
    return {"model_version_policy": {"specific": {"versions": [version]}}, "replicas": 2}


def test_intents_must_be_the_last_write_and_every_change_has_a_history_entry() -> None:
    timeline = Timeline()
    timeline.writes += [WriteRecord("m", 1.0, "ok", doc(1), 10), WriteRecord("m", 2.0, "ok", doc(2), 12), WriteRecord("m", 3.0, "unknown", doc(3))]
    history = {"m": {10: doc(1), 12: doc(2)}}
    assert check_intents(timeline, {"m": (12, doc(2))}, history) == []
    assert check_intents(timeline, {"m": (15, doc(3))}, history) == [], "a write with an unknown outcome may have applied"
    lost = check_intents(timeline, {"m": (10, doc(1))}, history)
    assert [v.kind for v in lost] == ["intent_lost"]
    missing = check_intents(timeline, {"m": (12, doc(2))}, {"m": {10: doc(1)}})
    assert [v.kind for v in missing] == ["history_missing"]
    timeline.model_revisions["m"] |= {10, 12, 13}
    assert [v.detail for v in check_intents(timeline, {"m": (12, doc(2))}, history)] == [
        "model m: no history entry for the change at revision 13 seen on the watch"
    ]
    timeline.model_revisions["m"] = {10, 12}
    timeline.history_deletes.append((4.0, "/tfleet/history/m/000000000001", "m", 1, 2))
    assert [v.kind for v in check_intents(timeline, {"m": (12, doc(2))}, history)] == ["history_deleted"]


def test_history_pruned_by_the_retention_is_not_a_loss() -> None:
    timeline = Timeline()
    timeline.writes += [WriteRecord("m", float(i), "ok", doc(i), 10 + i) for i in range(1, 6)]
    timeline.history_deletes += [(9.0, "/tfleet/history/m/000000000001", "m", 1, 4), (9.0, "/tfleet/history/m/000000000002", "m", 2, 5)]
    history = {"m": {13: doc(3), 14: doc(4), 15: doc(5)}}
    assert check_intents(timeline, {"m": (15, doc(5))}, history, keep=3) == []
    assert [v.kind for v in check_intents(timeline, {"m": (15, doc(5))}, history, keep=4)] == ["history_deleted"] * 2 + ["history_missing"] * 2
