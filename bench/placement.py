"""Placement benchmark: full plan and incremental re-plan, against a plain-Python floor.

    python -m bench.placement [--models 10000] [--hosts 1000] [--runs 5] [--samples 300] [--seed 7]

Measured in one run, on one machine, so that the ratios mean something:

* floor: one plain Python pass over every model x replica that builds the output mapping
  (``{model: tuple(sorted(hosts))}``), the least any planner has to do;
* full plan of a fleet with nothing placed yet (every replica new: the worst case), and of the
  same fleet once it caught up (every replica stays, ready): p50 of --runs;
* incremental re-plan after ONE model's intent changes (replicas up or down, memory, selector,
  new model, deleted model), then after the fleet catches up with it (current/ready of the
  touched models change): p50/p99 of --samples, and how many assignments changed
  (should be about the changed model's replicas);
* draining one host: the incremental re-plan and the assignments it adds.

The fleet: hosts in 3 zones and 50 racks, every 10th with a GPU; models with 1-3 replicas of
256-4096 MB, some with a zone or gpu selector, some spread by zone or rack, and a few that
cannot be placed (a zone that does not exist, 200 GB) so that every plan carries reasons.
Every --check-every-th incremental result is compared with a full plan (outside the timing).

Targets (issue): full plan under 1 s, incremental under 20 ms, on a 2-core machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from tfleet.controller.placement import HostInfo, IncrementalPlacer, ModelDemand, Placement, PlacementInput, place


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def make_hosts(count: int) -> dict[str, HostInfo]:
    hosts = {}
    for i in range(count):
        labels = {"zone": "abc"[i % 3], "rack": f"r{i % 50:02d}"}
        if i % 10 == 0:
            labels["gpu"] = "yes"
        name = f"host-{i:04d}"
        hosts[name] = HostInfo(name, labels, 65_536 if i % 4 else 32_768)
    return hosts


def make_demand(rng: random.Random, name: str) -> ModelDemand:
    roll = rng.random()
    selector = {"zone": rng.choice("abc")} if roll < 0.10 else {"gpu": "yes"} if roll < 0.15 else {}
    spread = rng.choices([None, "zone", "rack"], weights=[50, 40, 10])[0]
    return ModelDemand(name, rng.randint(1, 3), 128 * rng.randint(2, 32), selector, spread)


def make_demands(rng: random.Random, count: int) -> dict[str, ModelDemand]:
    demands = {f"model-{i:05d}": make_demand(rng, f"model-{i:05d}") for i in range(count - 10)}
    for i in range(5):  # cannot be placed: they keep reasons in every plan
        demands[f"nozone-{i}"] = ModelDemand(f"nozone-{i}", 2, 512, {"zone": "z"})
        demands[f"huge-{i}"] = ModelDemand(f"huge-{i}", 1, 200_000)
    return demands


def caught_up(data: PlacementInput, plan: Placement, models: set[str] | None = None) -> PlacementInput:
    """The fleet after it applied the plan and every replica became ready (all models, or some)."""
    current, ready = dict(data.current), dict(data.ready)
    for model in plan.hosts if models is None else models:
        held = frozenset(plan.hosts.get(model, ()))
        current[model] = ready[model] = held
    return dataclasses.replace(data, current=current, ready=ready)


def frozen(placement: Placement) -> Placement:
    """A copy that later updates of the placer do not change."""
    return dataclasses.replace(placement, hosts=dict(placement.hosts), notes=dict(placement.notes))


def changes(before: Placement, after: Placement) -> int:
    """Assignments added or removed between two plans."""
    total = 0
    for model in before.hosts.keys() | after.hosts.keys():
        total += len(set(before.hosts.get(model, ())) ^ set(after.hosts.get(model, ())))
    return total


def change_one_model(rng: random.Random, data: PlacementInput, step: int) -> tuple[PlacementInput, str, str]:
    """One intent change, cycling through the kinds an operator makes."""
    demands = dict(data.demands)
    names = sorted(name for name in demands if name.startswith("model-"))
    kind = ("replicas+1", "replicas-1", "memory", "selector", "new model", "delete")[step % 6]
    name = rng.choice(names)
    old = demands[name]
    if kind == "replicas+1":
        demands[name] = dataclasses.replace(old, replicas=old.replicas + 1)
    elif kind == "replicas-1":
        demands[name] = dataclasses.replace(old, replicas=max(0, old.replicas - 1))
    elif kind == "memory":
        demands[name] = dataclasses.replace(old, memory_mb=old.memory_mb + 512)
    elif kind == "selector":
        demands[name] = dataclasses.replace(old, host_selector={"zone": rng.choice("abc")})
    elif kind == "new model":
        name = f"added-{step:05d}"
        demands[name] = make_demand(rng, name)
    else:
        del demands[name]
    return dataclasses.replace(data, demands=demands), name, kind


def bench(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    hosts = make_hosts(args.hosts)
    demands = make_demands(rng, args.models)
    cold = PlacementInput(hosts, demands, {}, {})

    cold_times = []
    for _ in range(args.runs):
        elapsed, first = timed(lambda: place(cold))
        cold_times.append(elapsed)
    settled = caught_up(cold, first)
    replicas = sum(len(hosts_) for hosts_ in settled.current.values())
    warm_times, floor_times = [], []
    for _ in range(args.runs):
        warm_times.append(timed(lambda: place(settled))[0])
        floor_times.append(timed(lambda: {model: tuple(sorted(held)) for model, held in settled.current.items()})[0])
    floor = statistics.median(floor_times)

    placer = IncrementalPlacer(settled)
    assert placer.placement == place(settled), "incremental start differs from the full plan"
    data = settled
    intent_times, catchup_times, counts = [], [], []
    by_kind: dict[str, list[int]] = {}
    for step in range(args.samples):
        before = frozen(placer.placement)  # (an update's placement is a view, valid until the next update)
        data, name, kind = change_one_model(rng, data, step)
        elapsed, after = timed(lambda: placer.update(data, {name}, set()))
        intent_times.append(elapsed)
        counts.append(changes(before, after))
        by_kind.setdefault(kind, []).append(counts[-1])
        touched = {model for model in before.hosts.keys() | after.hosts.keys() if before.hosts.get(model) != after.hosts.get(model)}
        data = caught_up(data, after, touched)
        catchup_times.append(timed(lambda: placer.update(data, touched, set()))[0])
        if step % args.check_every == 0:
            assert placer.placement == place(data), f"incremental differs from the full plan after {kind} of {name}"

    before = frozen(placer.placement)
    drained = next(iter(sorted(hosts)))
    data = dataclasses.replace(data, hosts={**data.hosts, drained: dataclasses.replace(data.hosts[drained], draining=True)})
    drain_time, after = timed(lambda: placer.update(data, set(), {drained}))
    assert after == place(data), "incremental differs from the full plan after a drain"
    on_drained = sum(1 for held in before.hosts.values() if drained in held)

    ms = 1000.0
    print(f"fleet: {len(demands)} models, {replicas} replicas placed, {len(hosts)} hosts, {len(first.reasons)} models with reasons")
    print(f"floor (one plain pass over models x replicas building the output dict): p50 {floor * ms:.1f} ms")
    for label, times in (("full plan, nothing placed yet", cold_times), ("full plan, fleet caught up  ", warm_times)):
        p50 = statistics.median(times)
        print(f"{label}: p50 {p50 * ms:.0f} ms over {len(times)} runs  ({p50 / floor:.0f}x floor)")
    for label, times in (("incremental, one intent changed ", intent_times), ("incremental, fleet caught up   ", catchup_times)):
        print(
            f"{label}: p50 {percentile(times, 50) * ms:.2f} ms, p99 {percentile(times, 99) * ms:.2f} ms, max {max(times) * ms:.2f} ms over {len(times)} samples  (p50 {percentile(times, 50) / floor:.2f}x floor)"
        )
    print(f"assignment changes per one-model change: mean {statistics.mean(counts):.2f}, max {max(counts)}")
    for kind, values in by_kind.items():
        print(f"  {kind:<11} mean {statistics.mean(values):.2f}, max {max(values)}")
    print(f"drain one host ({on_drained} replicas on it): incremental {drain_time * ms:.2f} ms, {changes(before, after)} assignments added")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5, help="full plans measured (p50)")
    parser.add_argument("--samples", type=int, default=300, help="one-model changes measured")
    parser.add_argument("--check-every", type=int, default=25, help="compare with a full plan every N samples (untimed)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    gc.collect()
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
