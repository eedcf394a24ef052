"""Placement rules 1-3, 6 and the notes of rule 8 (controller/placement.py): what one model
keeps of its current hosts before anything new is placed, and what its moves wait for.

Each function depends on one model and the hosts it holds, which is what lets
IncrementalPlacer keep the result per model and redo only the models that changed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tfleet.controller.placement_input import HostInfo, ModelDemand, matches, selector_text, spread_value

_DRAINING = "draining"
_UNRESPONSIVE = "unresponsive"
_MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class Held:
    """What one model keeps before anything new is placed (depends on that model only)."""

    stay: tuple[str, ...]  # replicas that count (sorted)
    leaving: tuple[tuple[str, str], ...]  # (host, why) kept until enough replicas are ready
    ready_staying: frozenset[str]
    out: tuple[str, ...]  # sorted stay + kept leaving hosts
    memory_mb: int


def scale_down(stay: list[str], keep: int, ready: Collection[str], spread_by: str | None, hosts: Mapping[str, HostInfo]) -> list[str]:
    """Rule 6: drop staying replicas until ``keep`` remain; not-ready first, then the fullest
    spread value, then the greatest name. A heap per class keeps this O(n log n)."""
    value = {host: spread_value(hosts[host], spread_by) for host in stay}
    counts = Counter(value.values())
    rank = {host: index for index, host in enumerate(sorted(stay))}
    remaining = set(stay)
    excess = len(stay) - keep
    for wanted_ready in (False, True):
        by_value: dict[str, list[str]] = {}
        for host in sorted(stay):
            if (host in ready) is wanted_ready:
                by_value.setdefault(value[host], []).append(host)
        heap = [(-counts[v], -rank[names[-1]], v) for v, names in by_value.items()]
        heapq.heapify(heap)
        while excess and heap:
            _, _, v = heapq.heappop(heap)
            remaining.discard(by_value[v].pop())
            counts[v] -= 1
            excess -= 1
            if by_value[v]:
                heapq.heappush(heap, (-counts[v], -rank[by_value[v][-1]], v))
    return sorted(remaining)


def hold(demand: ModelDemand, current: Collection[str], ready: Collection[str], hosts: Mapping[str, HostInfo]) -> Held:
    """Rules 1, 2, 3 and 6 for one model: which current hosts stay, and which leaving ones wait."""
    wanted = max(0, demand.replicas)
    selector = demand.selector_key
    stay: list[str] = []
    leaving: list[tuple[str, str]] = []
    for name in current:
        host = hosts.get(name)
        if host is None:
            continue  # rule 2: the host is gone
        if host.draining:
            leaving.append((name, _DRAINING))
        elif host.unresponsive:
            leaving.append((name, _UNRESPONSIVE))
        elif not matches(host, selector):
            leaving.append((name, _MISMATCH))
        else:
            stay.append(name)
    stay = scale_down(stay, wanted, ready, demand.spread_by, hosts) if len(stay) > wanted else sorted(stay)
    ready_staying = _ready_staying(stay, ready)
    kept = min(len(leaving), max(0, wanted - len(ready_staying)))
    staying = tuple(stay)
    if not leaving:  # (nearly every model: what stays is all it holds)
        return Held(staying, (), ready_staying, staying, demand.memory_mb)
    leaving.sort(key=lambda item: (item[0] not in ready, item[0]))
    leaving = sorted(leaving[:kept])
    out = tuple(sorted(stay + [name for name, _ in leaving]))
    return Held(staying, tuple(leaving), ready_staying, out, demand.memory_mb)


def _ready_staying(stay: Sequence[str], ready: Collection[str]) -> frozenset[str]:
    """The staying hosts that are ready: the ready set itself when it is exactly those (one
    set per model, shared with the placement input: at 100,000 models ~20 MB of sets)."""
    found = [name for name in stay if name in ready]
    if isinstance(ready, frozenset) and len(found) == len(ready):
        return ready
    return frozenset(found)


def held_as_placed(placed: tuple[str, ...], ready: Collection[str], memory_mb: int) -> Held:
    """hold() of a model whose current hosts are now exactly ``placed`` (sorted, as many as
    it wants), the hosts the previous plan gave it with none of them leaving, when neither
    its demand nor any of those hosts changed since: each of them stays (it stayed, or was
    chosen as a host that takes new replicas and matches the selector), none is scaled down
    and none leaves, so only readiness is read again. What makes the echo of a plan's own
    new replicas cost O(replicas) and not the whole of rules 1-3 (IncrementalPlacer.update;
    tests/unit/test_placement_properties.py checks it equals place)."""
    return Held(placed, (), _ready_staying(placed, ready), placed, memory_mb)


def move_notes(held: Held, placed: Collection[str], demand: ModelDemand) -> tuple[str, ...]:
    """Rule 8: one note per leaving replica kept by rule 3, saying what it waits for."""
    if not held.leaving:
        return ()
    if len(held.stay) + len(placed) < demand.replicas:
        until = "its replica stays until a replacement can be placed (see reasons)"
    else:
        waiting = [name for name in held.stay if name not in held.ready_staying] + list(placed)
        until = f"its replica stays until {_hosts_text(waiting)} ready"
    notes = []
    for name, why in held.leaving:
        if why == _DRAINING:
            what = f"host {name} is draining"
        elif why == _UNRESPONSIVE:
            what = f"TF Serving on host {name} does not answer"
        else:
            what = f"host {name} no longer matches {selector_text(demand.selector_key)}"
        notes.append(f"{what}; {until}")
    return tuple(notes)


def _hosts_text(hosts: Iterable[str]) -> str:
    names = sorted(hosts)
    return f"the replica on {names[0]} is" if len(names) == 1 else f"the replicas on {', '.join(names)} are"
