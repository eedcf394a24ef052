"""Placement rules 4-9 (controller/placement.py): where new replicas go (selectors, distinct
hosts, spread, memory), which go on scale-down, in which order; and that the incremental
planner follows one changed model with the full plan's answer."""

from __future__ import annotations

import dataclasses

import pytest

from tfleet.controller.placement import (
    IncrementalPlacer,
    changed_between,
    place,
)

from tests.unit.placement_support import (
    Case,
    check_case,
    demand,
    host,
    hosts_by_name,
    make_input,
    settle,
    zone_hosts,
)

CASES = [
    # rule 4: selector, distinct hosts, spread
    Case(
        "the selector filters hosts",
        zone_hosts("h1:a", "h2:b"),
        [demand("m", selector={"zone": "b"})],
        placed={"m": "h2"},
    ),
    Case(
        "a selector nothing matches",
        zone_hosts("h1:a"),
        [demand("m", selector={"zone": "b"})],
        placed={"m": ""},
        reasons={"m": "replica not placed: no live host matches zone=b"},
    ),
    Case(
        "a selector with two labels needs both",
        [host("h1", zone="a", gpu="yes"), host("h2", zone="a"), host("h3", zone="b", gpu="yes")],
        [demand("m", 2, selector={"zone": "a", "gpu": "yes"})],
        placed={"m": "h1"},
        reasons={"m": "1 of 2 replicas not placed: only 1 host matches gpu=yes, zone=a, wants 2 replicas (one per host)"},
    ),
    Case(
        "never two replicas of one model on one host",
        zone_hosts("h1:a", "h2:a", "h3:b", mem=10_000),
        [demand("m", 3, selector={"zone": "a"})],
        placed={"m": "h1 h2"},
        reasons={"m": "1 of 3 replicas not placed: only 2 hosts match zone=a, wants 3 replicas (one per host)"},
    ),
    Case(
        "fewer live hosts than replicas, no selector",
        [host("h1")],
        [demand("m", 2)],
        placed={"m": "h1"},
        reasons={"m": "1 of 2 replicas not placed: only 1 live host, wants 2 replicas (one per host)"},
    ),
    Case(
        "distinct-host shortfall names the cordoned hosts",
        [host("h1", zone="a"), host("h2", zone="a", cordoned=True)],
        [demand("m", 2, selector={"zone": "a"})],
        placed={"m": "h1"},
        reasons={"m": "only 1 of the 2 live hosts matching zone=a take new replicas (the others are cordoned or draining), wants 2 replicas"},
    ),
    Case(
        "no live hosts at all",
        [],
        [demand("m")],
        placed={"m": ""},
        reasons={"m": "replica not placed: no live hosts"},
    ),
    Case(
        "spread: each zone before a second replica in any zone, even with less memory",
        [host("a1", 5000, zone="a"), host("a2", 5000, zone="a"), host("b1", 500, zone="b")],
        [demand("m", 2, spread="zone")],
        placed={"m": "a1 b1"},
    ),
    Case(
        "spread counts the replicas that stay",
        [host("a1", 5000, zone="a"), host("a2", 5000, zone="a"), host("b1", 500, zone="b")],
        [demand("m", 2, spread="zone")],
        current={"m": "a2"},
        placed={"m": "a2 b1"},
    ),
    Case(
        "spread: hosts without the label form their own value",
        [host("a1", 5000, zone="a"), host("a2", 5000, zone="a"), host("x1", 100)],
        [demand("m", 2, spread="zone")],
        placed={"m": "a1 x1"},
    ),
    Case(
        "spread is a preference: a full zone does not block placement",
        [host("a1", 5000, zone="a"), host("a2", 5000, zone="a"), host("b1", 50, zone="b")],
        [demand("m", 2, spread="zone")],
        placed={"m": "a1 a2"},
    ),
    # rule 5: memory
    Case(
        "never over-commit: the shortfall says how much is missing",
        [host("h1", 512), host("h2", 300)],
        [demand("m", mem=900)],
        placed={"m": ""},
        reasons={"m": "replica not placed: needs 900 MB, largest free host has 512 MB"},
    ),
    Case(
        "memory shortfall among matching hosts names the selector",
        [host("h1", 512, zone="a"), host("h2", 5000, zone="b")],
        [demand("m", mem=900, selector={"zone": "a"})],
        placed={"m": ""},
        reasons={"m": "needs 900 MB, largest free host matching zone=a has 512 MB"},
    ),
    Case(
        "replicas fill a host exactly, not beyond",
        [host("h1", 300)],
        [demand("a", mem=100), demand("b", mem=200), demand("c", mem=1)],
        placed={"a": "h1", "b": "h1", "c": ""},
        reasons={"c": "needs 1 MB, largest free host has 0 MB"},
        free={"h1": 0},
    ),
    Case(
        "an over-committed host keeps its replicas, shows negative free memory, gets nothing new",
        [host("h1", 100), host("h2", 1000)],
        [demand("a", mem=80), demand("b", mem=80), demand("c", mem=10)],
        current={"a": "h1", "b": "h1"},
        placed={"a": "h1", "b": "h1", "c": "h2"},
        free={"h1": -60, "h2": 990},
    ),
    Case(
        "a host with no memory takes nothing",
        [host("h1", 0)],
        [demand("m", mem=1)],
        placed={"m": ""},
        reasons={"m": "needs 1 MB, largest free host has 0 MB"},
    ),
    # rule 6: scale down
    Case(
        "scale down drops not-ready replicas first",
        [host("h1"), host("h2"), host("h3")],
        [demand("m", 2)],
        current={"m": "h1 h2 h3"},
        ready={"m": "h2 h3"},
        placed={"m": "h2 h3"},
    ),
    Case(
        "scale down then drops from the fullest spread value",
        zone_hosts("a1:a", "a2:a", "b1:b"),
        [demand("m", 2, spread="zone")],
        current={"m": "a1 a2 b1"},
        ready={"m": "a1 a2 b1"},
        placed={"m": "a1 b1"},
    ),
    Case(
        "scale down then drops the greatest host name",
        [host("h1"), host("h2"), host("h3")],
        [demand("m", 1)],
        current={"m": "h1 h2 h3"},
        ready={"m": "h1 h2 h3"},
        placed={"m": "h1"},
    ),
    Case(
        "scale down to zero, leaving replicas included",
        [host("h1"), host("h2", draining=True)],
        [demand("m", 0)],
        current={"m": "h1 h2"},
        ready={"m": "h1 h2"},
        placed={"m": ""},
    ),
    Case(
        "scale down drops a draining replica before a staying one",
        [host("h1"), host("h2", draining=True), host("h3")],
        [demand("m", 2)],
        current={"m": "h1 h2 h3"},
        ready={"m": "h1 h2 h3"},
        placed={"m": "h1 h3"},
    ),
    # rule 7: choice of host
    Case(
        "most free memory first",
        [host("h1", 1000), host("h2", 3000), host("h3", 2000)],
        [demand("m")],
        placed={"m": "h2"},
    ),
    Case(
        "equal free memory: smallest host name",
        [host("h3"), host("h1"), host("h2")],
        [demand("m", 2)],
        placed={"m": "h1 h2"},
    ),
    Case(
        "a new replica never counts as ready, even if a stale ready set names its host",
        [host("h1", draining=True), host("h2")],
        [demand("m")],
        current={"m": "h1"},
        ready={"m": "h1 h2"},
        placed={"m": "h1 h2"},
        notes={"m": ["until the replica on h2 is ready"]},
    ),
    # rule 9: order
    Case(
        "rounds: every model's first replica before any model's second",
        [host("h1", 100), host("h2", 100)],
        [demand("a", 2, mem=100), demand("b", 1, mem=100)],
        placed={"a": "h1", "b": "h2"},
        reasons={"a": "1 of 2 replicas not placed: needs 100 MB, largest free host has 0 MB"},
    ),
    Case(
        "rounds count the replicas that stay",
        [host("h1", 100), host("h2", 100)],
        [demand("a", 2, mem=100), demand("z", 1, mem=100)],
        current={"a": "h1"},
        placed={"a": "h1", "z": "h2"},
        reasons={"a": "1 of 2 replicas not placed"},
    ),
    Case(
        "models without a demand are left out; replicas 0 maps to no hosts",
        [host("h1")],
        [demand("zero", 0)],
        current={"gone": "h1", "zero": "h1"},
        placed={"zero": ""},
        free={"h1": 1000},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_place(case: Case) -> None:
    check_case(case)


def test_output_does_not_depend_on_mapping_order() -> None:
    hosts = [host(f"h{i}", 1000 + 100 * (i % 3), zone="ab"[i % 2]) for i in range(8)]
    demands = [demand(f"m{i}", 1 + i % 3, 300, spread="zone" if i % 2 else None) for i in range(10)]
    forward = make_input(hosts, demands, {"m1": "h1 h2"})
    backward = make_input(reversed(hosts), reversed(demands), {"m1": "h2 h1"})
    assert place(forward) == place(backward)


def test_incremental_update_after_one_model_changes() -> None:
    hosts = [host(f"h{i}", 1000, zone="abc"[i % 3]) for i in range(9)]
    data = make_input(hosts, [demand(f"m{i}", 2, 200, spread="zone") for i in range(12)])
    placer = IncrementalPlacer(data)
    settled = settle(data, placer.placement)
    placer.update(settled, set(data.demands), set())
    grown = dataclasses.replace(settled, demands={**settled.demands, "m3": demand("m3", 3, 200, spread="zone")})
    result = placer.update(grown, {"m3"}, set())
    assert result == place(grown)
    changed = {m for m in grown.demands if result.hosts[m] != tuple(sorted(settled.current[m]))}
    assert changed == {"m3"}
    assert set(settled.current["m3"]) < set(result.hosts["m3"])
    assert len({hosts_by_name(hosts)[h].labels["zone"] for h in result.hosts["m3"]}) == 3


def test_changed_between_names_models_and_hosts() -> None:
    old = make_input([host("h1"), host("h2")], [demand("a"), demand("b")], {"a": "h1"}, {})
    new = make_input([host("h1", 500), host("h3")], [demand("a"), demand("c")], {"a": "h1"}, {"a": "h1"})
    assert changed_between(old, new) == ({"a", "b", "c"}, {"h1", "h2", "h3"})
