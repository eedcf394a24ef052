"""Placement rules 1-3 (controller/placement.py): which replicas stay where they are, and how
one moves (gone hosts, draining, cordon, make-before-break), pinned with the words of the
reasons and notes an operator reads."""

from __future__ import annotations

import dataclasses

import pytest

from tfleet.controller.placement import (
    place,
)
from tfleet.controller.placement_hold import hold

from tests.unit.placement_support import (
    Case,
    check_case,
    demand,
    host,
    make_input,
    zone_hosts,
)

CASES = [
    # rule 1: stability
    Case(
        "a replica stays on its host even when another host now has more room",
        [host("h1", 500), host("h2", 5000)],
        [demand("m", mem=100)],
        current={"m": "h1"},
        ready={"m": "h1"},
        placed={"m": "h1"},
        free={"h1": 400, "h2": 5000},
    ),
    Case(
        "existing replicas are accounted first: the new model cannot take their memory",
        [host("h1", 1000), host("h2", 450)],
        [demand("old", mem=600), demand("new", mem=420)],
        current={"old": "h1"},
        placed={"old": "h1", "new": "h2"},
        free={"h1": 400, "h2": 30},
    ),
    Case(
        "existing replicas are not rebalanced when spread is uneven",
        zone_hosts("h1:a", "h2:a", "h3:b"),
        [demand("m", 2, spread="zone")],
        current={"m": "h1 h2"},
        placed={"m": "h1 h2"},
    ),
    Case(
        "a cordoned host keeps its replicas",
        [host("h1", cordoned=True), host("h2")],
        [demand("m")],
        current={"m": "h1"},
        placed={"m": "h1"},
    ),
    # rule 2: gone hosts
    Case(
        "a host that is gone loses its replica, which is placed elsewhere at once",
        [host("h1"), host("h2", 2000)],
        [demand("m", 2)],
        current={"m": "h1 dead"},
        ready={"m": "h1 dead"},
        placed={"m": "h1 h2"},
    ),
    # rule 3: draining, make-before-break, mismatch, cordon
    Case(
        "TF Serving unresponsive past the grace: a replacement goes elsewhere, the old replica stays meanwhile",
        [host("h1", unresponsive=True), host("h2")],
        [demand("m")],
        current={"m": "h1"},
        ready={},
        placed={"m": "h1 h2"},
        notes={"m": ["TF Serving on host h1 does not answer; its replica stays until the replica on h2 is ready"]},
    ),
    Case(
        "TF Serving unresponsive: once the replacement is ready the old replica goes",
        [host("h1", unresponsive=True), host("h2")],
        [demand("m")],
        current={"m": "h1 h2"},
        ready={"m": "h2"},
        placed={"m": "h2"},
        free={"h1": 1000, "h2": 900},
    ),
    Case(
        "TF Serving unresponsive with no room elsewhere: the replica stays, the shortfall is explained",
        [host("h1", unresponsive=True), host("h2", 50)],
        [demand("m")],
        current={"m": "h1"},
        placed={"m": "h1"},
        reasons={"m": "replica not placed"},
        notes={"m": ["TF Serving on host h1 does not answer; its replica stays until a replacement can be placed (see reasons)"]},
    ),
    Case(
        "an unresponsive host takes no new replica",
        [host("h1", 5000, unresponsive=True), host("h2")],
        [demand("m")],
        placed={"m": "h2"},
    ),
    Case(
        "TF Serving answers again before the replacement is ready: both stay until rule 6 drops the not-ready one",
        [host("h1"), host("h2")],
        [demand("m")],
        current={"m": "h1 h2"},
        ready={"m": "h1"},
        placed={"m": "h1"},
        free={"h1": 900, "h2": 1000},
    ),
    Case(
        "draining: the replacement is placed and the old replica stays until it is ready",
        [host("h1", draining=True), host("h2")],
        [demand("m")],
        current={"m": "h1"},
        ready={"m": "h1"},
        placed={"m": "h1 h2"},
        notes={"m": ["host h1 is draining; its replica stays until the replica on h2 is ready"]},
    ),
    Case(
        "draining: the replacement is not ready yet, the old replica stays",
        [host("h1", draining=True), host("h2")],
        [demand("m")],
        current={"m": "h1 h2"},
        ready={"m": "h1"},
        placed={"m": "h1 h2"},
        notes={"m": ["host h1 is draining; its replica stays until the replica on h2 is ready"]},
    ),
    Case(
        "draining: the replacement is ready, the old replica is dropped",
        [host("h1", draining=True), host("h2")],
        [demand("m")],
        current={"m": "h1 h2"},
        ready={"m": "h1 h2"},
        placed={"m": "h2"},
        free={"h1": 1000, "h2": 900},
    ),
    Case(
        "draining with no room elsewhere: the old replica stays, and the shortfall is explained",
        [host("h1", draining=True), host("h2", 50)],
        [demand("m", mem=100)],
        current={"m": "h1"},
        ready={"m": "h1"},
        placed={"m": "h1"},
        reasons={"m": "replica not placed: needs 100 MB, largest free host has 50 MB"},
        notes={"m": ["host h1 is draining; its replica stays until a replacement can be placed (see reasons)"]},
    ),
    Case(
        "draining: ready leaving replicas are the ones kept",
        [host("h1", draining=True), host("h2", draining=True), host("h3"), host("h4")],
        [demand("m", 2)],
        current={"m": "h1 h2 h3"},
        ready={"m": "h2 h3"},
        placed={"m": "h2 h3 h4"},
        notes={"m": ["host h2 is draining; its replica stays until the replica on h4 is ready"]},
    ),
    Case(
        "a host that no longer matches the selector is left make-before-break",
        zone_hosts("h1:a", "h2:b"),
        [demand("m", selector={"zone": "b"})],
        current={"m": "h1"},
        ready={"m": "h1"},
        placed={"m": "h1 h2"},
        notes={"m": ["host h1 no longer matches zone=b; its replica stays until the replica on h2 is ready"]},
    ),
    Case(
        "a cordoned host gets no new replica even with the most room",
        [host("h1", 9000, cordoned=True), host("h2", 1000)],
        [demand("m")],
        placed={"m": "h2"},
    ),
    Case(
        "every matching host cordoned or draining",
        [host("h1", cordoned=True, zone="a"), host("h2", draining=True, zone="a"), host("h3", zone="b")],
        [demand("m", selector={"zone": "a"})],
        placed={"m": ""},
        reasons={"m": "replica not placed: all 2 live hosts matching zone=a are cordoned or draining"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_place(case: Case) -> None:
    check_case(case)


def test_moving_to_another_host_takes_two_steps_then_settles() -> None:
    """Drain h1: replace, wait for ready, drop; each plan fed back as the fleet's state."""
    hosts = [host("h1", draining=True), host("h2")]
    data = make_input(hosts, [demand("m")], {"m": "h1"}, {"m": "h1"})
    first = place(data)
    assert first.hosts["m"] == ("h1", "h2")
    loading = dataclasses.replace(data, current={"m": frozenset(first.hosts["m"])})
    assert place(loading) == first
    loaded = dataclasses.replace(loading, ready={"m": frozenset(first.hosts["m"])})
    assert place(loaded).hosts["m"] == ("h2",)
    assert not place(loaded).notes


def test_unresponsive_past_grace() -> None:
    import datetime as dt

    from tfleet.controller.placement import unresponsive_past_grace

    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert not unresponsive_past_grace(None, now, 60)
    assert not unresponsive_past_grace(now - dt.timedelta(seconds=59), now, 60)
    assert unresponsive_past_grace(now - dt.timedelta(seconds=60), now, 60)
    assert unresponsive_past_grace(now, now, 0)


def test_what_a_model_keeps_shares_the_sets_it_was_given() -> None:
    """hold() of a model whose replicas all stay and are ready keeps the ready set it was
    given and one tuple of hosts (one of each per model: at 100,000 models the copies were
    ~25 MB); with a replica not ready, or one leaving, it keeps its own, equal to what the
    rules say."""
    hosts = {h.name: h for h in (host("h1", 1000), host("h2", 1000), host("h3", 1000, draining=True))}
    model = demand("m", replicas=2, mem=100)
    both = frozenset({"h1", "h2"})
    held = hold(model, both, both, hosts)
    assert held.ready_staying is both and held.out is held.stay and held.stay == ("h1", "h2")
    partly = hold(model, both, frozenset({"h1", "h9"}), hosts)
    assert partly.ready_staying == {"h1"} and partly.out == ("h1", "h2")
    leaving = hold(model, frozenset({"h1", "h3"}), frozenset({"h1", "h3"}), hosts)
    assert leaving.stay == ("h1",) and leaving.out == ("h1", "h3") and leaving.ready_staying == {"h1"}
