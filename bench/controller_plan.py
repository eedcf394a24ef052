"""Controller planning benchmark: 10,000 models on 1,000 hosts.

    python -m bench.controller_plan [--models 10000] [--hosts 1000] [--runs 5]

Prints, measured in one run:
* floor: one plain Python pass that builds an output dict over every replica (the least any
  planner touching every replica must spend);
* full plan: the controller's pure planner (placement + rollout + reports) from a snapshot
  of a converged fleet;
* after one model changes: the pass the controller runs when one intent was edited, and
  the number of etcd writes that change causes (it should equal the model's replicas,
  plus one modelstatus write).

Targets (issue 4): full plan under 1 s, incremental under 20 ms, writes proportional to the change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time

from tfleet import schema
from tfleet.controller.incremental import IncrementalPlanner
from tfleet.controller.app import tune_gc
from tfleet.controller.planner import plan
from tfleet.controller.snapshot import FleetSnapshot, SnapshotReader, read
from tfleet.keyspace import Keyspace
from tfleet.schema import HostRecord, ModelIntent, ModelStatus
from tfleet.store import KeyValue, Snapshot

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


KS = Keyspace()


def kv(key: str, doc, revision: int) -> KeyValue:
    value = doc if isinstance(doc, bytes) else schema.encode(doc)
    return KeyValue(key, value, revision, revision, 1, 0)


def build(models: int, hosts: int) -> dict[str, KeyValue]:
    """The keys of a converged fleet: hosts, intents, and (after one plan) assignments, statuses, reports."""
    items: dict[str, KeyValue] = {}
    for i in range(hosts):
        name = f"h{i:04d}"
        record = HostRecord(
            host=name, grpc_address="x:1", rest_address="x:2", memory_mb=64_000, labels={"zone": "abc"[i % 3]}, agent_version="b", started_at=NOW
        )
        items[KS.host(name)] = kv(KS.host(name), record, 1)
    for i in range(models):
        intent = ModelIntent.model_validate(
            {
                "base_path": f"/models/m{i}",
                "model_version_policy": {"specific": {"versions": [1]}},
                "version_labels": {"stable": 1},
                "replicas": 1 + i % 3,
                "memory_mb": 100 + (i % 7) * 10,
                **({"spread_by": "zone"} if i % 2 else {}),
                **({"host_selector": {"zone": "a"}} if i % 11 == 0 else {}),
            }
        )
        items[KS.model(f"m{i:05d}")] = kv(KS.model(f"m{i:05d}"), intent, 10)
    first = plan(read(Snapshot(1, tuple(items.values())), KS), {}, NOW)
    for (host, model), assignment in first.puts.items():
        items[KS.assignment(host, model)] = kv(KS.assignment(host, model), assignment, 20)
        status = ModelStatus(assignment_revision=20, versions={"1": {"state": "AVAILABLE"}}, version_labels={"stable": 1}, updated_at=NOW)
        items[KS.status(host, model)] = kv(KS.status(host, model), status, 21)
    for model, report in plan(read(Snapshot(2, tuple(items.values())), KS), {}, NOW).reports.items():
        items[KS.modelstatus(model)] = kv(KS.modelstatus(model), report, 22)
    return items


def floor_pass(snap: FleetSnapshot) -> float:
    started = time.perf_counter()
    out = {}
    for place, parsed in snap.assignments.items():
        out[place] = parsed.value
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--default-gc", action="store_true", help="keep CPython's default GC thresholds (the controller raises them)")
    options = parser.parse_args(argv)
    if not options.default_gc:
        tune_gc()

    items = build(options.models, options.hosts)
    snap = read(Snapshot(3, tuple(items.values())), KS)
    replicas = len(snap.assignments)
    floor = statistics.median(floor_pass(snap) for _ in range(options.runs))
    full_times = []
    for _ in range(options.runs):
        started = time.perf_counter()
        result = plan(snap, {}, NOW)
        full_times.append(time.perf_counter() - started)
    assert not result.puts and not result.deletes, "a converged fleet must need no writes"

    reader, planner = SnapshotReader(KS), IncrementalPlanner()
    planner.plan(reader.read(Snapshot(3, tuple(items.values()))), {}, NOW)  # the controller keeps both across passes
    revision = 100
    incremental_times, read_times, writes = [], [], []
    for run in range(options.runs * 4):
        key = KS.model(f"m{(run * 7919) % options.models:05d}")
        original = items[key]
        intent = schema.parse(ModelIntent, original.value, key)
        for value in (intent.model_copy(update={"replicas": intent.replicas % 3 + 1}), intent):  # change, then change back
            revision += 1
            items[key] = kv(key, value, revision)
            snapshot = Snapshot(revision, tuple(items.values()))
            started = time.perf_counter()
            fleet = reader.read(snapshot)
            read_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = planner.plan(fleet, {}, NOW)
            incremental_times.append(time.perf_counter() - started)
            changed_reports = sum(
                1
                for m, r in result.reports.items()
                if m not in fleet.modelstatus or r.model_dump(exclude={"updated_at"}) != fleet.modelstatus[m].model_dump(exclude={"updated_at"})
            )
            writes.append(len(result.puts) + len(result.deletes) + changed_reports)
            # the writes land: the next snapshot would hold them; return to the converged keys instead
        items[key] = original

    full = statistics.median(full_times)
    inc_p50 = statistics.median(incremental_times)
    inc_p99 = sorted(incremental_times)[max(0, round(0.99 * (len(incremental_times) - 1)))]
    print(f"{options.models} models, {options.hosts} hosts, {replicas} replicas")
    print(f"  floor        one pass over every replica        {floor * 1000:9.1f} ms")
    print(f"  full plan    placement + rollout + reports       {full * 1000:9.1f} ms   ({full / floor:.0f} x floor)")
    print(f"  incremental  after one model changes      p50 {inc_p50 * 1000:9.2f} ms   p99 {inc_p99 * 1000:.2f} ms")
    print(f"  (reading the snapshot, reusing unchanged parsed keys: p50 {statistics.median(read_times) * 1000:.1f} ms)")
    print(f"  writes for a one-model change: min {min(writes)}, max {max(writes)} (assignments + modelstatus)")
    print(
        json.dumps(
            {
                "models": options.models,
                "hosts": options.hosts,
                "replicas": replicas,
                "floor_ms": floor * 1000,
                "full_plan_ms": full * 1000,
                "incremental_p50_ms": inc_p50 * 1000,
                "read_p50_ms": statistics.median(read_times) * 1000,
                "incremental_p99_ms": inc_p99 * 1000,
                "writes_min": min(writes),
                "writes_max": max(writes),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
