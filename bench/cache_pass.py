"""Controller pass cost from the fleet cache: after one model change, and after a burst of
agent status changes, at 10,000 models on 1,000 hosts (or more).

    python -m bench.cache_pass [--models 10000] [--hosts 1000] [--burst 1000] [--runs 5]

The real read path runs: watch events go into controller/fleetcache.py (parsed there, on
arrival), and ``ControllerReconciler.reconcile`` takes the changed keys from its cursor,
applies them to its snapshot, plans and writes (to an in-memory store: no etcd, so the
figures are the controller's own CPU). The controller's writes come back as watch events, as
they would from etcd, and the follow-up pass is measured too (its report and route echoes
are quiet: it should plan nothing).

Printed, all measured in this run:
* floor: one plain Python pass over every replica (what any O(fleet) pass costs at least);
* old read path: what each pass did before the cache (re-walk a whole-prefix snapshot,
  without the etcd transfer): for comparison;
* each scenario: the pass (take + apply + plan + write), keys applied, models planned, and
  its cost as a fraction of the floor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.controller_plan import KS, NOW, build, floor_pass
from tfleet import schema
from tfleet.controller.app import tune_gc
from tfleet.controller.fleetcache import FleetCache
from tfleet.controller.metrics import ControllerMetrics
from tfleet.controller.reconciler import ControllerReconciler
from tfleet.controller.snapshot import SnapshotReader, read
from tfleet.keyspace import Section
from tfleet.schema import ModelIntent, ModelStatus
from tfleet.store import KeyValue, Put, Snapshot, TxnResult, WatchEvent


class _Log:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class MemoryStore:
    """The few EtcdStore calls the cache and a pass make, over a dict; a watch whose events
    the bench delivers when it chooses (as etcd's stream would)."""

    def __init__(self, items: dict[str, KeyValue]) -> None:
        self.items = dict(items)
        self.revision = max(kv.mod_revision for kv in items.values())
        self.pending: list[WatchEvent] = []
        self.on_events: Any = None

    def list_prefix(self, prefix: str, revision: int | None = None) -> Snapshot:
        """Every key under prefix now (the cache pins its sections to the first read's
        revision, which nothing moves while the bench loads it)."""
        if revision is not None and revision != self.revision:
            raise ValueError(f"the bench store reads only at its current revision {self.revision}, not {revision}")
        return Snapshot(self.revision, tuple(kv for key, kv in self.items.items() if key.startswith(prefix)))

    def watch_prefix(self, prefix, start_revision, on_events, on_reset, on_error=None, list_prefix=None):
        self.on_events = on_events
        return self

    def cancel(self) -> None:
        pass

    def txn(self, compares, success, failure=()) -> TxnResult:
        self.revision += 1
        for op in success:
            if isinstance(op, Put):
                self.items[op.key] = KeyValue(op.key, op.value, self.revision, self.revision, 1, 0)
                self.pending.append(WatchEvent("put", op.key, op.value, self.revision))
            elif self.items.pop(op.key, None) is not None:
                self.pending.append(WatchEvent("delete", op.key, b"", self.revision))
        return TxnResult(True, self.revision)

    def write(self, key: str, value: bytes) -> None:
        """Someone else's write (an operator, an agent)."""
        self.revision += 1
        self.items[key] = KeyValue(key, value, self.revision, self.revision, 1, 0)
        self.pending.append(WatchEvent("put", key, value, self.revision))

    def deliver(self) -> int:
        events, self.pending = self.pending, []
        if events:
            self.on_events(events)
        return len(events)


class LeaderElection:
    is_leader = True
    fence_revision = None

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def fence(self) -> list:
        return []

    def fenced_txn(self, ops, extra_compares=()) -> bool:
        return self._store.txn([], ops).succeeded


class NoHistory:
    """The history recorder is another module's (controller/history.py): not measured here."""

    def record_external_change(self, *args, **kwargs) -> bool:
        return False

    def history(self, model):
        return []


@dataclass(frozen=True)
class InMemoryController:
    """The real reconciler and fleet cache over an in-memory store, leading, with no history
    to read: what the in-process benches (cache_pass, cache_memory, resync_pass) and the
    resync tests drive."""

    reconciler: ControllerReconciler
    cache: FleetCache
    metrics: ControllerMetrics


def in_memory_controller(store: MemoryStore, clock: Callable[[], float] = lambda: 0.0, log: Any = None, **settings: Any) -> InMemoryController:
    """log: the reconciler's logger (default: none). settings: more ControllerReconciler
    keywords (full_plan_interval, resync_slice, ...).
    Its transactions are sent one at a time, in the pass's thread (txns_in_flight=1): the
    store has no commit to wait for, and the benches count the pass's own CPU time."""
    settings.setdefault("txns_in_flight", 1)
    metrics = ControllerMetrics()
    cache = FleetCache(store, KS, log=_Log(), metrics=metrics)
    reconciler = ControllerReconciler(
        store=store,
        keyspace=KS,
        election=LeaderElection(store),
        registry=NoHistory(),  # type: ignore[arg-type]
        metrics=metrics,
        log=log if log is not None else _Log(),
        now=lambda: NOW,
        clock=clock,
        cache=cache,
        **settings,
    )
    return InMemoryController(reconciler, cache, metrics)


def timed_pass(reconciler: ControllerReconciler, metrics: ControllerMetrics) -> tuple[float, int, int]:
    keys = metrics.registry.get_sample_value("tfleet_controller_pass_keys_applied_total") or 0
    planned = metrics.registry.get_sample_value("tfleet_controller_models_planned_total") or 0
    started = time.perf_counter()
    outcome = reconciler.reconcile()
    elapsed = time.perf_counter() - started
    assert outcome.result == "ok", outcome
    return (
        elapsed,
        int((metrics.registry.get_sample_value("tfleet_controller_pass_keys_applied_total") or 0) - keys),
        int((metrics.registry.get_sample_value("tfleet_controller_models_planned_total") or 0) - planned),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--burst", type=int, default=1_000, help="agent status changes in the burst scenario")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-old-read", action="store_true", help="skip measuring the old read path (saves a parsed copy of the fleet)")
    options = parser.parse_args(argv)
    tune_gc()

    items = build(options.models, options.hosts)
    snapshot = Snapshot(max(kv.mod_revision for kv in items.values()), tuple(items.values()))
    fleet = read(snapshot, KS)
    replicas = len(fleet.assignments)
    floor = statistics.median(floor_pass(fleet) for _ in range(options.runs))
    del fleet
    old_read = float("nan")
    if not options.no_old_read:
        reader = SnapshotReader(KS)
        reader.read(snapshot)
        old_read = statistics.median(_time(lambda snap=snapshot: reader.read(Snapshot(snap.revision + 1, snap.items))) for _ in range(options.runs))
        del reader
    del snapshot

    store = MemoryStore(items)
    controller = in_memory_controller(store)  # clock 0: no resync slice mid-measurement
    reconciler, cache, metrics = controller.reconciler, controller.cache, controller.metrics
    # History recording moves out of the pass into a watch-driven recorder (controller/history.py,
    # another branch); until then the pass still scans every intent for it: not measured here.
    reconciler._record_history = lambda snap: None  # type: ignore[method-assign]
    first = _time(reconciler.reconcile)  # the first pass plans everything (a new term)
    for _ in range(5):  # let the controller's own writes come back until a pass plans nothing
        store.deliver()
        timed_pass(reconciler, metrics)

    one: list[tuple[float, int, int]] = []
    echo_one: list[tuple[float, int, int]] = []
    for run in range(options.runs * 4):
        key = KS.model(f"m{(run * 7919) % options.models:05d}")
        intent = schema.parse(ModelIntent, store.items[key].value, key)
        store.write(key, schema.encode(intent.model_copy(update={"replicas": intent.replicas % 3 + 1})))
        store.deliver()
        one.append(timed_pass(reconciler, metrics))
        store.deliver()  # the assignments and report come back
        echo_one.append(timed_pass(reconciler, metrics))
        store.deliver()
        timed_pass(reconciler, metrics)

    burst: list[tuple[float, int, int]] = []
    echo_burst: list[tuple[float, int, int]] = []
    statuses = sorted(k for k in store.items if KS.in_section(k, Section.STATUS))
    for run in range(options.runs):
        for key in statuses[run * options.burst % len(statuses) :][: options.burst]:
            status = schema.parse(ModelStatus, store.items[key].value, key)
            store.write(key, schema.encode(status.model_copy(update={"updated_at": NOW + dt.timedelta(seconds=run + 1)})))
        store.deliver()
        burst.append(timed_pass(reconciler, metrics))
        store.deliver()
        echo_burst.append(timed_pass(reconciler, metrics))

    def line(name: str, samples: list[tuple[float, int, int]]) -> dict[str, float]:
        p50 = statistics.median(s[0] for s in samples)
        keys = statistics.median(s[1] for s in samples)
        planned = statistics.median(s[2] for s in samples)
        print(f"  {name:<38} p50 {p50 * 1000:8.2f} ms  {p50 / floor:7.3f} x floor   keys applied {keys:6.0f}   models planned {planned:6.0f}")
        return {"p50_ms": p50 * 1000, "x_floor": p50 / floor, "keys": keys, "planned": planned}

    print(f"{options.models} models, {options.hosts} hosts, {replicas} replicas, {len(cache)} cached keys")
    print(f"  floor: one pass over every replica          {floor * 1000:8.2f} ms")
    print(f"  old read path: re-walk the whole snapshot   {old_read * 1000:8.2f} ms  {old_read / floor:7.3f} x floor (each pass, before the etcd transfer)")
    print(f"  first pass (full plan from the cache)       {first * 1000:8.2f} ms")
    results = {
        "one_model": line("pass after one intent change", one),
        "one_model_echo": line("  next pass (its writes come back)", echo_one),
        "burst": line(f"pass after {options.burst} status changes", burst),
        "burst_echo": line("  next pass (its writes come back)", echo_burst),
    }
    print(
        json.dumps(
            {
                "models": options.models,
                "hosts": options.hosts,
                "replicas": replicas,
                "floor_ms": floor * 1000,
                "old_read_ms": old_read * 1000,
                "first_pass_ms": first * 1000,
                **results,
            }
        )
    )
    return 0


def _time(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
