"""The controller's placement decision: which hosts must hold a replica of which model.

Pure: no I/O, no clock, no randomness. The same input gives the same Placement, whatever the
order of its mappings. Table and property tests: tests/unit/test_placement_*.py; timing:
``python -m bench.placement``.

Three modules: controller/placement_input.py holds the input and result types and the host
filters, controller/placement_hold.py rules 1-3 and 6 (what one model keeps) and the notes of
rule 8; this one places new replicas (rules 4, 5, 7, 9), says why some could not be placed,
and keeps the per-model results between plans (IncrementalPlacer). Callers import from here.

Words used below: a model's *current* hosts hold an assignment now; a current host *stays*
when it is live, matches the model's host_selector and is not draining; it is *leaving* when
it is live but draining or no longer matches the selector; a host *takes new replicas* when it
is live and neither cordoned nor draining.

Rules:

1. Stable. A replica on a host that stays is kept, even if another host now looks better, even
   if its host is cordoned or over-committed, and even if the spread is no longer even: spread
   and memory steer new replicas only, they never move existing ones. Kept replicas are
   accounted in host memory before anything new is placed.
2. A host that is gone (not in ``hosts``) loses its replicas; replacements are placed at once.
3. Make-before-break. Replacements for leaving replicas are placed at once. Leaving replicas
   stay in the output while fewer than ``replicas`` of the staying replicas are ready (in
   ``ready``): ``min(leaving, replicas - ready staying)`` of them are kept, ready ones first,
   then by host name. A new replica never counts as ready in the plan that places it, even if
   ``ready`` (stale) names its host. A host whose labels stopped matching the selector is
   treated like a draining host, so a selector change never drops service. So is a host whose
   TF Serving has not answered for longer than the controller's grace (``unresponsive``, from
   the agent's ``tfs_unresponsive_since``): replacements go elsewhere while its replicas stay
   until they are ready. Once it answers again it is a normal host: replicas it still holds
   stay (rule 1) and surplus ones are scaled down by rule 6 (not-ready first), and replicas
   already moved away do not come back (stability), it only takes new ones. Cordoned hosts
   keep their replicas and get no new ones.
4. Replicas of one model go to distinct hosts that match every host_selector label. With
   ``spread_by``, a new replica goes to the label value holding the fewest replicas of the
   model (staying plus newly placed). Spread is a preference, never a reason to leave a
   replica unplaced: hosts without the label form their own value ``""``.
5. A new replica goes only to a host whose free memory (capacity minus every replica placed
   on it) is at least the model's memory_mb, so a host with memory_mb 0 takes nothing.
   Replicas kept by rule 1 may already over-commit a host (its capacity shrank, a model's
   memory_mb grew): they are not moved, the host takes nothing new, and its
   ``free_memory_mb`` is negative. That is a host fact, not a model shortfall, so it is not
   in ``reasons``.
6. Scale down removes staying replicas one at a time: not-ready ones first, then one on the
   spread value holding the most replicas of the model, then the greatest host name.
   Leaving replicas are dropped first of all (rule 3 keeps none once enough replicas stay
   ready).
7. A new replica goes to the eligible host with, in order: the spread value holding the
   fewest replicas of the model, the most free memory, the smallest name.
8. ``reasons`` explains, in words an operator can act on, why a model has fewer replicas than
   it wants (only models with a shortfall appear). ``notes`` explains moves in progress
   (leaving replicas kept by rule 3); a note is not a problem.
9. Order. New replicas are placed in rounds: every model's n-th replica before any model's
   (n+1)-th, counting replicas that stay; within a round, models by name. A model with no
   replica at all is never starved by another model's third one; under a lasting memory
   shortage the name still breaks ties, which we accept for determinism. A model that fails
   to get a replica gets no more attempts in that plan (free memory only shrinks within it).

Models without a demand (intent deleted) are absent from ``Placement.hosts``: every
assignment of theirs goes. A demanded model with replicas 0 maps to ``()``.

Cost. ``IncrementalPlacer`` keeps the result of rules 1-3 and 6 per model (they depend on
one model and the hosts it holds) and the memory they use per host. A plan then places only
the models with a shortfall, over lazy max-heaps of free memory (one per selector, one per
selector and spread value) whose members come from an index of hosts by label. A full plan
costs O(replicas + new replicas * spread values * log hosts); an update after one model
changes costs O(that model + models with a shortfall), so a fleet where many models cannot
be placed re-plans slower than a healthy one: the output mappings are views of the kept
results with the short models' results over them, not copies (a copy of 100,000 models cost
3.5 ms per update); they hold until the next update, and ``changed`` names what moved. ``update``
returns exactly what ``place`` returns for the same input.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tfleet.controller.placement_hold import Held, held_as_placed, hold, move_notes
from tfleet.controller.placement_input import (
    DEFAULT_UNRESPONSIVE_GRACE,
    HostInfo,
    ModelDemand,
    Placement,
    PlacementInput,
    SelectorKey,
    changed_between,
    plural,
    selector_text,
    spread_value,
    unresponsive_past_grace,
)

__all__ = [
    "DEFAULT_UNRESPONSIVE_GRACE",
    "HostInfo",
    "IncrementalPlacer",
    "ModelDemand",
    "Placement",
    "PlacementInput",
    "SelectorKey",
    "changed_between",
    "place",
    "unresponsive_past_grace",
]


def place(data: PlacementInput) -> Placement:
    """The full plan for one snapshot of the fleet."""
    return IncrementalPlacer(data).placement


# -- rules 4, 5, 7: where new replicas may go ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pool:
    """The live hosts one (selector, spread_by) pair can use, grouped by spread value."""

    matching: int  # live hosts matching the selector
    taking: int  # of those, hosts that take new replicas
    groups: Mapping[str, tuple[str, ...]]  # spread value -> hosts that take new replicas


class _Run:
    """The mutable state of one placement pass: free memory and lazy max-heaps over it.

    Within a pass free memory only shrinks, so a heap entry can only overstate a host's free
    memory; ``top`` re-files such stale entries as it meets them instead of updating every
    heap a host belongs to on each placement.
    """

    def __init__(self, free: dict[str, int]) -> None:
        self.free = free
        self._heaps: dict[tuple[SelectorKey, str | None, str], list[tuple[int, str]]] = {}

    def top(self, key: tuple[SelectorKey, str | None, str], members: Iterable[str], taken: Collection[str]) -> tuple[int, str] | None:
        """(free MB, host) of the host with the most free memory not in ``taken``, or None."""
        free = self.free
        heap = self._heaps.get(key)
        if heap is None:
            heap = self._heaps[key] = [(-free[name], name) for name in members]
            heapq.heapify(heap)
        skipped = []
        best = None
        while heap:
            negative, name = heap[0]
            if -negative != free[name]:
                heapq.heapreplace(heap, (-free[name], name))
            elif name in taken:
                skipped.append(heapq.heappop(heap))
            else:
                best = (-negative, name)
                break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return best


class IncrementalPlacer:
    """``place`` with memory: after a change, re-plans in time proportional to the change.

    ``placement`` is the plan for the last input. ``update`` must be told every model whose
    demand, current or ready entry changed (added and removed ones included) and every host
    that appeared, disappeared or changed; everything else is taken as unchanged. Inputs are
    treated as immutable: pass a new PlacementInput (it may share unchanged mappings' values).
    """

    def __init__(self, data: PlacementInput) -> None:
        self._data = data
        self._held: dict[str, Held] = {}
        self._base_out: dict[str, tuple[str, ...]] = {}  # model -> hosts kept by rules 1-3, 6
        self._base_notes: dict[str, tuple[str, ...]] = {}  # notes of models without a shortfall
        self._short: set[str] = set()  # models with fewer staying replicas than wanted
        self._used: dict[str, int] = {}  # host -> MB of the replicas kept
        self._base_free: dict[str, int] = {}  # live host -> free MB after the kept replicas
        self._holders: dict[str, set[str]] = {}  # host -> models whose current names it
        self._by_label: dict[tuple[str, str], set[str]] = {}  # (label, value) -> live hosts
        self._pools: dict[tuple[SelectorKey, str | None], _Pool] = {}
        for name, host in data.hosts.items():
            self._index_host(name, host)
            self._base_free[name] = host.memory_mb
        for model, holders in data.current.items():
            for holder in holders:
                self._holders.setdefault(holder, set()).add(model)
        for model in data.demands:
            self._account(model)
        self.placement = self._plan()
        self.changed: frozenset[str] = frozenset(self.placement.hosts)  # (everything is new)

    def update(self, data: PlacementInput, changed_models: Collection[str], changed_hosts: Collection[str]) -> Placement:
        """Re-plan for ``data``; equal to ``place(data)`` when the changed sets are complete.

        The returned placement's ``hosts`` and ``notes`` are views of the placer (copying
        them would cost the fleet on every update): valid until the next update. ``changed``
        then names the models whose hosts or reasons differ from the previous placement."""
        old, self._data = self._data, data
        previous = self.placement
        # Models that now hold exactly what the previous plan placed (its own new replicas
        # came back): their rule 1-3 result is known without hold(), and their hosts and
        # reasons stay as they were, so they are neither re-accounted nor compared below.
        settled = self._settle(changed_models, old, data, previous, changed_hosts)
        affected = set(changed_models)
        for host in changed_hosts:
            affected.update(self._holders.get(host, ()))
        affected.difference_update(settled)
        # Only these can change: the models re-accounted and those placed in rounds (a model
        # becomes short only by being re-accounted).
        before = {model: (previous.hosts.get(model), previous.reasons.get(model)) for model in affected | self._short}
        for model in affected:
            self._forget(model)
        for host in changed_hosts:
            self._refresh_host(host, old.hosts.get(host), data.hosts.get(host))
        for model in changed_models:
            self._refresh_holders(model, old.current.get(model, frozenset()), data.current.get(model, frozenset()))
        for model in sorted(affected):
            self._account(model)
        self.placement = self._plan()
        now = self.placement
        self.changed = frozenset(m for m, entry in before.items() if (now.hosts.get(m), now.reasons.get(m)) != entry)
        return self.placement

    def _settle(self, models: Collection[str], old: PlacementInput, data: PlacementInput, previous: Placement, changed_hosts: Collection[str]) -> set[str]:
        """Of ``models``, those whose current hosts are now the ones the previous plan placed
        them on (and perhaps gone hosts, which rule 2 ignores: the deletes of lost hosts'
        assignments wait for a later pass), with the same demand, as many hosts as they want,
        none leaving and none of those hosts changed: their Held is placement_hold.held_as_placed, recorded
        here (what ``_forget`` then ``_keep`` would do, as the difference of two Helds).
        The others are re-accounted by the caller. One loop over locals: at 30,000 models the
        echo of re-placing lost hosts' replicas settles ~5,600 models, and the calls and
        attribute reads of doing it model by model were most of the update."""
        settled: set[str] = set()
        held_of, base_out, used, base_free = self._held, self._base_out, self._used, self._base_free
        reasons, placed_of = previous.reasons, previous.hosts
        demands, was_demands, currents, readies, live = data.demands, old.demands, data.current, data.ready, data.hosts
        for model in models:
            held = held_of.get(model)
            if held is None or held.leaving or model in reasons:
                continue
            demand, was = demands.get(model), was_demands.get(model)
            if demand is None or was is None or (demand is not was and demand != was) or held.memory_mb != demand.memory_mb:
                continue
            placed, current = placed_of.get(model), currents.get(model)
            if placed is None or current is None or len(placed) != demand.replicas or len(current) < len(placed):
                continue
            # (the other current hosts must be gone: rule 2 skips them; while hosts are being
            # lost, their assignments' deletes wait for a later pass, reconciler._gone_deletes_wait)
            if len(current) > len(placed) and any(name in live for name in current if name not in placed):
                continue
            for name in placed:
                if name not in current or name in changed_hosts:
                    break
            else:
                memory, out = held.memory_mb, held.out
                for host in out:
                    if host not in placed:
                        used[host] -= memory
                        if host in base_free:
                            base_free[host] += memory
                for host in placed:
                    if host not in out:
                        used[host] = used.get(host, 0) + memory
                        base_free[host] -= memory
                held_of[model] = held_as_placed(placed, readies.get(model, ()), memory)
                base_out[model] = placed
                self._short.discard(model)
                self._base_notes.pop(model, None)
                settled.add(model)
        return settled

    # -- bookkeeping of what stays ---------------------------------------------------------------

    def _index_host(self, name: str, host: HostInfo) -> None:
        for pair in host.labels.items():
            self._by_label.setdefault(pair, set()).add(name)

    def _unindex_host(self, name: str, host: HostInfo) -> None:
        for pair in host.labels.items():
            members = self._by_label.get(pair)
            if members is not None:
                members.discard(name)
                if not members:
                    del self._by_label[pair]

    def _refresh_host(self, name: str, old: HostInfo | None, new: HostInfo | None) -> None:
        if old == new:
            return
        if old is None or new is None or (old.labels, old.takes_new) != (new.labels, new.takes_new):
            self._pools.clear()  # membership may change; pools are cheap to rebuild on demand
        if old is not None:
            self._unindex_host(name, old)
        if new is None:
            self._base_free.pop(name, None)
            return
        self._index_host(name, new)
        self._base_free[name] = new.memory_mb - self._used.get(name, 0)

    def _refresh_holders(self, model: str, old: frozenset[str], new: frozenset[str]) -> None:
        for host in old - new:
            holders = self._holders.get(host)
            if holders is not None:
                holders.discard(model)
                if not holders:
                    del self._holders[host]
        for host in new - old:
            self._holders.setdefault(host, set()).add(model)

    def _forget(self, model: str) -> None:
        held = self._held.pop(model, None)
        self._base_out.pop(model, None)
        self._base_notes.pop(model, None)
        self._short.discard(model)
        if held is None:
            return
        for host in held.out:
            self._used[host] -= held.memory_mb
            if host in self._base_free:
                self._base_free[host] += held.memory_mb

    def _account(self, model: str) -> None:
        data = self._data
        demand = data.demands.get(model)
        if demand is None:
            return
        held = hold(demand, data.current.get(model, ()), data.ready.get(model, ()), data.hosts)
        self._held[model] = held
        self._base_out[model] = held.out
        for host in held.out:
            self._used[host] = self._used.get(host, 0) + held.memory_mb
            self._base_free[host] -= held.memory_mb
        if len(held.stay) < demand.replicas:
            self._short.add(model)
        else:
            notes = move_notes(held, (), demand)
            if notes:
                self._base_notes[model] = notes

    # -- new replicas ----------------------------------------------------------------------------

    def _pool(self, selector: SelectorKey, spread_by: str | None) -> _Pool:
        pool = self._pools.get((selector, spread_by))
        if pool is None:
            pool = self._pools[(selector, spread_by)] = self._build_pool(selector, spread_by)
        return pool

    def _build_pool(self, selector: SelectorKey, spread_by: str | None) -> _Pool:
        hosts = self._data.hosts
        if selector:
            sets = sorted((self._by_label.get(pair, set()) for pair in selector), key=len)
            matching: Iterable[str] = sets[0].intersection(*sets[1:])
        else:
            matching = hosts.keys()
        count = 0
        groups: dict[str, list[str]] = {}
        for name in matching:
            count += 1
            host = hosts[name]
            if host.takes_new:
                groups.setdefault(spread_value(host, spread_by), []).append(name)
        return _Pool(count, sum(map(len, groups.values())), {value: tuple(names) for value, names in groups.items()})

    def _largest_free(self, run: _Run, selector: SelectorKey, taken: Collection[str]) -> tuple[int, str] | None:
        """(free MB, host) of the roomiest host matching the selector that takes new replicas
        and is not in ``taken``, over one heap per selector whatever the spread."""
        members = self._pool(selector, None).groups.get("", ())
        return run.top((selector, None, ""), members, taken)

    def _choose(self, run: _Run, demand: ModelDemand, taken: list[str]) -> str | None:
        """Rule 7: the host for one more replica, or None when no eligible host has room."""
        selector, spread_by = demand.selector_key, demand.spread_by
        roomiest = self._largest_free(run, selector, taken)
        if roomiest is None or roomiest[0] < demand.memory_mb:
            return None  # no spread value can do better than the roomiest host of all
        if not spread_by:
            return roomiest[1]
        hosts = self._data.hosts
        counts = Counter(spread_value(hosts[name], spread_by) for name in taken)
        best: tuple[int, int, str] | None = None
        for value, members in self._pool(selector, spread_by).groups.items():
            top = run.top((selector, spread_by, value), members, taken)
            if top is None or top[0] < demand.memory_mb:
                continue
            key = (counts[value], -top[0], top[1])
            if best is None or key < best:
                best = key
        assert best is not None  # the roomiest host is in one of the groups
        return best[2]

    def _shortfall(self, run: _Run, demand: ModelDemand, taken: list[str]) -> str:
        """Rule 8: why the model has fewer replicas than it wants, for an operator."""
        pool = self._pool(demand.selector_key, None)
        wanted = demand.replicas
        prefix = "replica not placed: " if wanted == 1 else f"{wanted - len(taken)} of {wanted} replicas not placed: "
        selector = selector_text(demand.selector_key)
        matching = f" matching {selector}" if selector else ""
        if pool.matching == 0:
            return prefix + (f"no live host matches {selector}" if selector else "no live hosts")
        if pool.taking == 0:
            return prefix + f"all {plural(pool.matching, 'live host')}{matching} are cordoned or draining"
        hosts = self._data.hosts
        holding = sum(1 for name in taken if hosts[name].takes_new)
        if holding >= pool.taking:
            others = pool.matching - pool.taking
            if others:
                return prefix + (
                    f"only {pool.taking} of the {pool.matching} live hosts{matching} take new replicas "
                    f"(the others are cordoned or draining), wants {plural(wanted, 'replica')} (one per host)"
                )
            verb = "matches" if pool.taking == 1 else "match"
            where = f"{plural(pool.taking, 'host')} {verb} {selector}" if selector else plural(pool.taking, "live host")
            return prefix + f"only {where}, wants {plural(wanted, 'replica')} (one per host)"
        roomiest = self._largest_free(run, demand.selector_key, taken)
        largest = 0 if roomiest is None else max(0, roomiest[0])
        return prefix + f"needs {demand.memory_mb} MB, largest free host{matching} has {largest} MB"

    def _plan(self) -> Placement:
        """Rules 4, 5, 7, 9 on top of what stays: place the models with a shortfall, in rounds."""
        demands = self._data.demands
        run = _Run(dict(self._base_free))
        taken: dict[str, list[str]] = {model: list(self._held[model].stay) for model in self._short}
        rounds = [(len(taken[model]), model) for model in self._short]
        heapq.heapify(rounds)
        while rounds:
            held_count, model = heapq.heappop(rounds)
            demand = demands[model]
            host = self._choose(run, demand, taken[model])
            if host is None:
                continue  # free memory only shrinks: no later round can do better
            taken[model].append(host)
            run.free[host] -= demand.memory_mb
            if held_count + 1 < demand.replicas:
                heapq.heappush(rounds, (held_count + 1, model))
        hosts: dict[str, tuple[str, ...]] = {}  # the short models' results, over _base_out
        notes: dict[str, tuple[str, ...]] = {}  # the same over _base_notes
        reasons: dict[str, tuple[str, ...]] = {}
        for model in self._short:
            held, demand = self._held[model], demands[model]
            placed = taken[model][len(held.stay) :]
            if placed:
                hosts[model] = tuple(sorted(held.out + tuple(placed)))
            if len(taken[model]) < demand.replicas:
                reasons[model] = (self._shortfall(run, demand, taken[model]),)
            model_notes = move_notes(held, placed, demand)
            if model_notes:
                notes[model] = model_notes
        return Placement(_Overlay(self._base_out, hosts), reasons, run.free, _Overlay(self._base_notes, notes))


class _Overlay(Mapping[str, tuple[str, ...]]):
    """A read-only mapping: ``top`` over ``base``.

    The placer's output without a copy of its per-model maps: an update costs the change,
    not the fleet. It reads the placer's live ``base``, so it holds until the next update."""

    __slots__ = ("_base", "_top")

    def __init__(self, base: Mapping[str, tuple[str, ...]], top: Mapping[str, tuple[str, ...]]) -> None:
        self._base, self._top = base, top

    def __getitem__(self, key: str) -> tuple[str, ...]:
        value = self._top.get(key)
        return value if value is not None else self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._top or key in self._base

    def get(self, key: str, default: Any = None) -> Any:
        """(Mapping.get goes through __getitem__ and a KeyError: a planned model reads its
        hosts here, and at 30,000 models an echo pass asks for ~5,600.)"""
        value = self._top.get(key)
        return value if value is not None else self._base.get(key, default)

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from (key for key in self._top if key not in self._base)

    def __len__(self) -> int:
        return len(self._base) + sum(1 for key in self._top if key not in self._base)

    def __repr__(self) -> str:
        return repr(dict(self))
