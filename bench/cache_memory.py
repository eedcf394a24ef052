"""Controller memory, in process and section by section: what the fleet cache, the pass's
snapshot and the planner hold for a converged fleet of M models (2 replicas each) on H hosts.

    python -m bench.cache_memory [--models 10000] [--hosts 1000] [--top 0] [--own-times]

The keys are those of a converged fleet (bench/controller_plan.build, plus one route table
per model); the cache loads them from an in-memory store (bench/cache_pass.MemoryStore) and
the real ``ControllerReconciler`` plans once, and again after its own writes came back.
Printed (tracemalloc, so Python objects only; the process's RSS is bench/scale's figure):
the bytes each section's parsed keys hold in the cache, then what the pass adds (snapshot
indexes, the planner's state and reports), and the total. --top N lists the N source lines
that allocated most of what stays.

By default every agent status is the same value (one time, one assignment revision), which
the shared-value table (controller/compact.py) stores once. --own-times gives each
assignment its own revision and each status its own time and that revision, as agents
write them (bench/standin.py does too): what a real fleet's statuses cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import sys
import tracemalloc
from typing import Any

from bench.cache_pass import MemoryStore, in_memory_controller
from bench.controller_plan import KS, NOW, build, kv
from tfleet import routing, schema
from tfleet.controller.fleetcache import section_of
from tfleet.controller.snapshot import SnapshotReader, parse_key
from tfleet.keyspace import Section
from tfleet.schema import ModelStatus
from tfleet.store import Snapshot

MB = 1024 * 1024


def own_times(items: dict[str, Any]) -> None:
    """Each assignment its own revision, each status its own time and that revision (in place)."""
    statuses = sorted(key for key in items if KS.in_section(key, Section.STATUS))
    revision = max(kv.mod_revision for kv in items.values())
    for i, key in enumerate(statuses):
        host, model = KS.parse_host_model(key, "status")
        assignment_key = KS.assignment(host, model)
        items[assignment_key] = kv(assignment_key, items[assignment_key].value, revision + 1 + i)
        status = schema.parse(ModelStatus, items[key].value, key)
        status = status.model_copy(update={"assignment_revision": revision + 1 + i, "updated_at": NOW + dt.timedelta(seconds=i * 0.0137)})
        items[key] = kv(key, status, revision + 1 + len(statuses) + i)


def fleet_items(models: int, hosts: int, *, distinct: bool = False) -> dict[str, Any]:
    """A converged fleet's keys, route tables included (build() has none)."""
    items = build(models, hosts)
    if distinct:
        own_times(items)
    fleet = SnapshotReader(KS).read(Snapshot(30, tuple(items.values())))
    for model, table in routing.route_tables(fleet, NOW).items():
        items[KS.routes(model)] = kv(KS.routes(model), table, 23)
    return items


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--top", type=int, default=0, help="list the N source lines that allocated most of what the controller holds")
    parser.add_argument("--own-times", action="store_true", help="each status its own time and assignment revision (as agents write them)")
    options = parser.parse_args(argv)
    items = fleet_items(options.models, options.hosts, distinct=options.own_times)

    tracemalloc.start(1)
    sections: dict[str, int] = {}
    by_section: dict[str, list[Any]] = {}
    for item in items.values():
        by_section.setdefault(section_of(KS, item.key) or "other", []).append(item)
    for section, section_items in sorted(by_section.items()):
        before = _traced()
        held = [parse_key(KS, kv.key, kv.value, kv.mod_revision) for kv in section_items]
        sections[section] = _traced() - before
        del held
    gc.collect()

    tracemalloc.stop()
    tracemalloc.start(1)
    base = _traced()
    store = MemoryStore(items)
    del items
    store_bytes = _traced() - base
    controller = in_memory_controller(store)
    cache, reconciler = controller.cache, controller.reconciler
    before = _traced()
    cache.ensure_started()
    cache_bytes = _traced() - before
    before = _traced()
    reconciler.reconcile()
    for _ in range(3):  # the controller's own writes come back
        store.deliver()
        reconciler.reconcile()
    pass_bytes = _traced() - before
    total = cache_bytes + pass_bytes
    result = {
        "models": options.models,
        "hosts": options.hosts,
        "own_times": options.own_times,
        "keys": len(cache),
        "cache_mb_by_section": {s: round(b / MB, 1) for s, b in sections.items()},
        "cache_mb": round(cache_bytes / MB, 1),
        "pass_mb": round(pass_bytes / MB, 1),
        "controller_mb": round(total / MB, 1),
        "store_mb": round(store_bytes / MB, 1),
        "bytes_per_model": round(total / options.models),
    }
    print(json.dumps(result, indent=1))
    if options.top:
        snapshot = tracemalloc.take_snapshot()
        for stat in snapshot.statistics("lineno")[: options.top]:
            print(f"{stat.size / MB:8.1f} MB  {stat.count:9d}  {stat.traceback}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
