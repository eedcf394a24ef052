"""Tests of the controller's pure placement planner (controller/placement.py).

Table cases pin each rule of the module docstring and the words of its reasons and notes;
hypothesis properties check the invariants on random fleets, and that the incremental
planner returns exactly what a full plan returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfleet.controller.placement import (
    HostInfo,
    IncrementalPlacer,
    ModelDemand,
    Placement,
    PlacementInput,
    changed_between,
    place,
)


def host(name: str, mem: int = 1000, *, cordoned: bool = False, draining: bool = False, unresponsive: bool = False, **labels: str) -> HostInfo:
    return HostInfo(name, labels, mem, cordoned, draining, unresponsive)


def demand(name: str, replicas: int = 1, mem: int = 100, selector: dict[str, str] | None = None, spread: str | None = None) -> ModelDemand:
    return ModelDemand(name, replicas, mem, selector or {}, spread)


def hosts_set(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset(value.split()) if isinstance(value, str) else frozenset(value)


def make_input(hosts: Iterable[HostInfo], demands: Iterable[ModelDemand], current: dict | None = None, ready: dict | None = None) -> PlacementInput:
    """current/ready: model -> space-separated host names."""
    return PlacementInput(
        {h.name: h for h in hosts},
        {d.name: d for d in demands},
        {m: hosts_set(v) for m, v in (current or {}).items()},
        {m: hosts_set(v) for m, v in (ready or {}).items()},
    )


@dataclass
class Case:
    name: str
    hosts: list[HostInfo]
    demands: list[ModelDemand]
    current: dict[str, str] = field(default_factory=dict)
    ready: dict[str, str] = field(default_factory=dict)
    # expectations: model -> space-separated hosts (exact)
    placed: dict[str, str] = field(default_factory=dict)
    # model -> substring of its only reason; models absent here must have no reason
    reasons: dict[str, str] = field(default_factory=dict)
    # model -> substrings, one per note, in order; models absent here must have no note
    notes: dict[str, list[str]] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)


def zone_hosts(*specs: str, mem: int = 1000) -> list[HostInfo]:
    """'h1:a' -> host h1 in zone a; 'h1' -> host h1 without a zone label."""
    result = []
    for spec in specs:
        name, _, zone = spec.partition(":")
        result.append(host(name, mem, **({"zone": zone} if zone else {})))
    return result


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
    data = make_input(case.hosts, case.demands, case.current, case.ready)
    result = place(data)
    for model, expected in case.placed.items():
        assert result.hosts[model] == tuple(sorted(expected.split())), model
    assert set(result.hosts) == {d.name for d in case.demands}
    assert set(result.reasons) == set(case.reasons)
    for model, text in case.reasons.items():
        assert len(result.reasons[model]) == 1
        assert text in result.reasons[model][0]
    assert set(result.notes) == set(case.notes)
    for model, texts in case.notes.items():
        assert len(result.notes[model]) == len(texts)
        for note, text in zip(result.notes[model], texts, strict=True):
            assert text in note
    for name, free in case.free.items():
        assert result.free_memory_mb[name] == free
    check_invariants(data, result)
    assert IncrementalPlacer(make_input([], [])).update(data, set(data.demands) | set(data.current) | set(data.ready), set(data.hosts)) == result


def test_output_does_not_depend_on_mapping_order() -> None:
    hosts = [host(f"h{i}", 1000 + 100 * (i % 3), zone="ab"[i % 2]) for i in range(8)]
    demands = [demand(f"m{i}", 1 + i % 3, 300, spread="zone" if i % 2 else None) for i in range(10)]
    forward = make_input(hosts, demands, {"m1": "h1 h2"})
    backward = make_input(reversed(hosts), reversed(demands), {"m1": "h2 h1"})
    assert place(forward) == place(backward)


def settle(data: PlacementInput, plan: Placement) -> PlacementInput:
    """The fleet after it did what the plan says and every replica became ready."""
    held = {model: frozenset(hosts) for model, hosts in plan.hosts.items()}
    return dataclasses.replace(data, current=held, ready=held)


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


def hosts_by_name(hosts: list[HostInfo]) -> dict[str, HostInfo]:
    return {h.name: h for h in hosts}


def test_changed_between_names_models_and_hosts() -> None:
    old = make_input([host("h1"), host("h2")], [demand("a"), demand("b")], {"a": "h1"}, {})
    new = make_input([host("h1", 500), host("h3")], [demand("a"), demand("c")], {"a": "h1"}, {"a": "h1"})
    assert changed_between(old, new) == ({"a", "b", "c"}, {"h1", "h2", "h3"})


# -- invariants and properties ----------------------------------------------------------------


def check_invariants(data: PlacementInput, result: Placement) -> None:
    """What must hold for every input (used by the table cases and the properties)."""
    hosts = data.hosts
    used: dict[str, int] = {name: 0 for name in hosts}
    new_on: set[str] = set()
    assert set(result.hosts) == set(data.demands)
    assert set(result.free_memory_mb) == set(hosts)
    for model, placed in result.hosts.items():
        want = data.demands[model]
        current = data.current.get(model, frozenset())
        ready = data.ready.get(model, frozenset())
        assert list(placed) == sorted(set(placed)), "sorted, one replica per host"
        selector = want.host_selector.items()
        staying = [h for h in placed if not (hosts[h].draining or hosts[h].unresponsive) and all(hosts[h].labels.get(k) == v for k, v in selector)]
        assert len(staying) <= max(0, want.replicas), model
        for name in placed:
            assert name in hosts, "only live hosts"
            used[name] += want.memory_mb
            if name not in current:
                new_on.add(name)
                assert hosts[name].takes_new, f"{model}: new replica on cordoned/draining {name}"
                assert all(hosts[name].labels.get(k) == v for k, v in selector), f"{model}: selector"
        # make-before-break: never fewer ready replicas than min(wanted, ready now)
        ready_now = {h for h in current & ready if h in hosts}
        assert len(ready_now & set(placed)) >= min(max(0, want.replicas), len(ready_now)), model
        assert (model in result.reasons) == (len(staying) < want.replicas), f"{model}: a reason exactly when replicas are missing"
    for name, info in hosts.items():
        assert result.free_memory_mb[name] == info.memory_mb - used[name]
        if name in new_on:
            assert result.free_memory_mb[name] >= 0, f"new replica over-commits {name}"


def current_staying(data: PlacementInput, model: str, result: Placement) -> set[str]:
    want = data.demands[model]
    return {
        h
        for h in result.hosts[model]
        if not (data.hosts[h].draining or data.hosts[h].unresponsive) and all(data.hosts[h].labels.get(k) == v for k, v in want.host_selector.items())
    }


HOST_NAMES = [f"h{i}" for i in range(7)]
MODEL_NAMES = [f"m{i}" for i in range(7)]


@st.composite
def host_infos(draw: st.DrawFn, name: str) -> HostInfo:
    labels = {}
    zone = draw(st.sampled_from(["a", "b", None]))
    if zone:
        labels["zone"] = zone
    if draw(st.booleans()):
        labels["rack"] = draw(st.sampled_from(["r1", "r2"]))
    state = draw(st.sampled_from(["ok", "ok", "ok", "cordoned", "draining", "unresponsive"]))
    return HostInfo(name, labels, draw(st.integers(0, 10)) * 100, state == "cordoned", state == "draining", state == "unresponsive")


@st.composite
def demands_of(draw: st.DrawFn, name: str) -> ModelDemand:
    selector = draw(st.sampled_from([{}, {}, {"zone": "a"}, {"zone": "b"}, {"rack": "r1"}, {"zone": "a", "rack": "r2"}]))
    spread = draw(st.sampled_from([None, None, "zone", "rack"]))
    return ModelDemand(name, draw(st.integers(0, 4)), draw(st.integers(1, 6)) * 100, selector, spread)


@st.composite
def holdings(draw: st.DrawFn) -> tuple[frozenset[str], frozenset[str]]:
    current = draw(st.frozensets(st.sampled_from(HOST_NAMES + ["gone1", "gone2"]), max_size=5))
    ready = draw(st.frozensets(st.sampled_from(sorted(current)), max_size=5)) if current else frozenset()
    if draw(st.integers(0, 9)) == 0:  # a stale ready set naming a host without an assignment
        ready |= {draw(st.sampled_from(HOST_NAMES))}
    return current, ready


@st.composite
def placement_inputs(draw: st.DrawFn) -> PlacementInput:
    host_names = draw(st.lists(st.sampled_from(HOST_NAMES), unique=True, max_size=len(HOST_NAMES)))
    model_names = draw(st.lists(st.sampled_from(MODEL_NAMES), unique=True, max_size=len(MODEL_NAMES)))
    hosts = {name: draw(host_infos(name)) for name in host_names}
    demands = {name: draw(demands_of(name)) for name in model_names}
    current, ready = {}, {}
    for name in MODEL_NAMES:
        if draw(st.booleans()):
            current[name], ready[name] = draw(holdings())
    return PlacementInput(hosts, demands, current, ready)


@st.composite
def mutated(draw: st.DrawFn, data: PlacementInput) -> PlacementInput:
    """A few models and hosts redrawn, added or removed; the rest shared with data."""
    hosts, demands = dict(data.hosts), dict(data.demands)
    current, ready = dict(data.current), dict(data.ready)
    for name in draw(st.lists(st.sampled_from(HOST_NAMES), max_size=2, unique=True)):
        if draw(st.booleans()):
            hosts[name] = draw(host_infos(name))
        else:
            hosts.pop(name, None)
    for name in draw(st.lists(st.sampled_from(MODEL_NAMES), max_size=2, unique=True)):
        what = draw(st.sampled_from(["demand", "holding", "remove"]))
        if what == "demand":
            demands[name] = draw(demands_of(name))
        elif what == "holding":
            current[name], ready[name] = draw(holdings())
        else:
            demands.pop(name, None)
    if draw(st.booleans()):  # the fleet caught up with the last plan
        plan = place(data)
        for name, placed in plan.hosts.items():
            current[name] = ready[name] = frozenset(placed)
    return PlacementInput(hosts, demands, current, ready)


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_invariants_hold_for_any_fleet(data: PlacementInput) -> None:
    check_invariants(data, place(data))


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_order_of_mappings_does_not_matter(data: PlacementInput) -> None:
    flipped = PlacementInput(
        dict(reversed(data.hosts.items())),
        dict(reversed(data.demands.items())),
        dict(reversed(data.current.items())),
        dict(reversed(data.ready.items())),
    )
    assert place(flipped) == place(data)


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_stable_once_the_fleet_caught_up(data: PlacementInput) -> None:
    first = place(data)
    second = place(settle(data, first))
    # Without moves in progress, feeding a plan back (all ready) changes nothing at all.
    if not first.notes:
        assert second == first
    # Replicas on hosts they may stay on are never moved by a re-plan.
    for model in first.hosts:
        keepable = current_staying(data, model, first)
        assert keepable <= set(second.hosts[model]), model
    # Each further round only finishes moves (drops a leaving replica); then nothing changes.
    plan, leaving = second, sum(len(n) for n in first.notes.values())
    for _ in range(leaving + 1):
        following = place(settle(data, plan))
        if following == plan:
            break
        plan = following
    assert place(settle(data, plan)) == plan


@PROPERTY_SETTINGS
@given(st.data())
def test_incremental_equals_full_plan(draw: st.DataObject) -> None:
    data = draw.draw(placement_inputs())
    placer = IncrementalPlacer(data)
    assert placer.placement == place(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        new = draw.draw(mutated(data))
        models, hosts = changed_between(data, new)
        assert placer.update(new, models, hosts) == place(new)
        data = new


def test_unresponsive_past_grace() -> None:
    import datetime as dt

    from tfleet.controller.placement import unresponsive_past_grace

    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert not unresponsive_past_grace(None, now, 60)
    assert not unresponsive_past_grace(now - dt.timedelta(seconds=59), now, 60)
    assert unresponsive_past_grace(now - dt.timedelta(seconds=60), now, 60)
    assert unresponsive_past_grace(now, now, 0)
