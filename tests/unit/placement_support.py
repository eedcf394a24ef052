"""Builders of placement inputs, the table case type, and the invariants every plan must
satisfy: shared by the rule tables (test_placement_keeping.py, test_placement_choosing.py)
and the properties (test_placement_properties.py) of controller/placement.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field


from tfleet.controller.placement import (
    HostInfo,
    IncrementalPlacer,
    ModelDemand,
    Placement,
    PlacementInput,
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


def settle(data: PlacementInput, plan: Placement) -> PlacementInput:
    """The fleet after it did what the plan says and every replica became ready."""
    held = {model: frozenset(hosts) for model, hosts in plan.hosts.items()}
    return dataclasses.replace(data, current=held, ready=held)


def hosts_by_name(hosts: list[HostInfo]) -> dict[str, HostInfo]:
    return {h.name: h for h in hosts}


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


def check_case(case: Case) -> None:
    """The plan of the case's fleet is what it expects, satisfies every invariant, and the
    incremental planner returns the same plan."""
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
