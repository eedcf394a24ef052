"""The controller's own CPU cost of re-placing the replicas of lost hosts, in memory.

    python -m bench.loss_pass [--models 100000] [--hosts 1000] [--loss 0.1] [--commit-ms 5] [--profile 30]

The real fleet cache and reconciler over the in-memory store of bench/cache_pass.py: a
converged fleet loses a share of its hosts (their host records and status keys deleted, as
etcd does when their leases expire); the passes that follow run until one writes nothing
(each pass's writes come back as watch events before the next, as they would from etcd).
Then every moved replica's new host reports it AVAILABLE (a status at its assignment's
revision, as an agent writes it) and the passes run again until quiet.

--second-wave F: that share of the lost hosts dies only once the others' replicas are
re-placed and have reported ready (statuses not yet taken), as when leases expire across a
long pass: the pass that re-places the second wave meets the first wave's readiness, which
waits a pass unless --no-defer (controller/reconciler.py, DEFER_READINESS_AT).

--commit-ms T: every transaction takes T ms to commit (etcd on other machines: a round trip,
replication, an fsync), sent as the controller sends them (a few in flight); each phase's
"wall" then includes the waiting for etcd that planning does not overlap, and "last report"
is when the phase's last modelstatus write committed (bench/scale's "re-placed" moment).

Printed: per phase, the passes, their writes and the controller CPU seconds they took (the
part of bench/scale's "10 % of hosts die silently" figure that is the controller's CPU; the
rest is etcd and the agents). --profile N prints cProfile's N most expensive functions of
both phases, by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import threading
import time
from typing import Any

from bench.cache_pass import MemoryStore, in_memory_controller
from bench.controller_plan import KS, NOW, build
from tfleet import schema
from tfleet.controller.app import tune_gc
from tfleet.controller.reconciler import ControllerReconciler
from tfleet.controller.txn_pipeline import DEFAULT_DEPTH
from tfleet.keyspace import Section
from tfleet.schema import ModelStatus
from tfleet.store import Delete, Put


def run_until_quiet(store: MemoryStore, reconciler: ControllerReconciler, limit: int = 50) -> dict[str, Any]:
    """Passes until one writes nothing and nothing is pending: passes, writes, seconds."""
    passes = writes = 0
    seconds = wall = 0.0
    phase_started = time.perf_counter()
    each: list[tuple[int, float, float]] = []
    while passes < limit:
        # (this thread's CPU time: what the controller spends, whatever else the machine runs)
        started, wall_started = time.thread_time(), time.perf_counter()
        store.deliver()
        delivered = time.thread_time()
        outcome = reconciler.reconcile()
        ended = time.thread_time()
        seconds += ended - started
        wall += time.perf_counter() - wall_started
        each.append((outcome.writes, len(reconciler.planner.planned), round(delivered - started, 3), round(ended - delivered, 3)))
        assert outcome.result == "ok", outcome
        passes += 1
        writes += outcome.writes
        if not outcome.writes and not store.pending:
            break
    result = {"passes": passes, "writes": writes, "seconds": round(seconds, 3), "wall": round(wall, 3), "each (writes, planned, deliver s, pass s)": each}
    if isinstance(store, SlowStore) and store.last_report >= phase_started:
        result["last report"] = round(store.last_report - phase_started, 3)  # (wall seconds into the phase)
    return result


class SlowStore(MemoryStore):
    """The in-memory store whose every transaction takes commit_s to commit (as etcd on
    other machines does: a network round trip, replication and an fsync), waiting outside
    any lock like a gRPC call, so that a pass's transactions in flight overlap."""

    def __init__(self, items, commit_s: float) -> None:
        super().__init__(items)
        self._commit_s = commit_s
        self._lock = threading.Lock()
        self.last_report = 0.0  # perf_counter() when the last transaction with a report committed

    def txn(self, compares, success, failure=()):
        time.sleep(self._commit_s)
        with self._lock:
            result = super().txn(compares, success, failure)
            if any(isinstance(op, Put) and KS.in_section(op.key, Section.MODELSTATUS) for op in success):
                self.last_report = time.perf_counter()
            return result


def lose_hosts(store: MemoryStore, hosts: list[str]) -> int:
    """What etcd does when the hosts' leases expire: their records and statuses go."""
    lost = set(hosts)
    doomed = [KS.host(h) for h in hosts]
    doomed += [k for k in store.items if KS.in_section(k, Section.STATUS) and KS.classify(k).host in lost]
    for start in range(0, len(doomed), 1000):
        store.txn([], [Delete(k) for k in doomed[start : start + 1000]])
    return len(doomed)


def report_moved(store: MemoryStore) -> int:
    """Each assignment without a status at its revision gets one: the new host serves it."""
    written = 0
    for key, kv in list(store.items.items()):
        if not KS.in_section(key, Section.ASSIGNMENTS):
            continue
        place = KS.classify(key)
        status_key = KS.status(place.host, place.model)
        current = store.items.get(status_key)
        if current is not None and schema.parse(ModelStatus, current.value, status_key).assignment_revision == kv.mod_revision:
            continue
        status = ModelStatus(assignment_revision=kv.mod_revision, versions={"1": {"state": "AVAILABLE"}}, version_labels={"stable": 1}, updated_at=NOW)
        store.write(status_key, schema.encode(status))
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument(
        "--second-wave",
        type=float,
        default=0.0,
        help="this share of the lost hosts dies once the others' replicas are re-placed and report ready (their statuses not yet taken): the pass that re-places the second wave meets the first wave's readiness",
    )
    parser.add_argument("--no-defer", action="store_true", help="readiness never waits behind placement (reconciler.DEFER_READINESS_AT off)")
    parser.add_argument(
        "--commit-ms",
        type=float,
        default=0.0,
        help="each transaction takes this long to commit (etcd elsewhere), the pass's transactions in flight as in the controller: 'wall' then shows what waiting for etcd adds to a pass",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive functions")
    parser.add_argument("--profile-out", help="also save the profile to this file (pstats)")
    parser.add_argument("--profile-phase", choices=("loss", "ready", "both"), default="both", help="the phase(s) profiled")
    options = parser.parse_args(argv)
    tune_gc()

    store = (
        SlowStore(build(options.models, options.hosts), options.commit_ms / 1000) if options.commit_ms else MemoryStore(build(options.models, options.hosts))
    )
    settings: dict[str, Any] = {"defer_readiness_at": 10**9} if options.no_defer else {}
    if options.commit_ms:
        settings["txns_in_flight"] = DEFAULT_DEPTH  # (as the controller sends them)
    controller = in_memory_controller(store, **settings)  # clock 0: no resync slice mid-measurement
    reconciler = controller.reconciler
    converge = run_until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lost = hosts[:: max(1, round(1 / options.loss))][: max(1, round(len(hosts) * options.loss))]

    profiler = cProfile.Profile() if options.profile else None
    first_wave = None
    if options.second_wave:
        split = len(lost) - max(1, round(len(lost) * options.second_wave))
        first_deleted = lose_hosts(store, lost[:split])
        first_wave = run_until_quiet(store, reconciler)
        first_wave["statuses"] = report_moved(store)  # ready; taken with the second wave's loss
        first_wave["keys deleted"] = first_deleted
        lost = lost[split:]
        print(f"  first wave, {split} hosts lost, re-placed: {first_wave}")
    deleted = lose_hosts(store, lost)
    if profiler and options.profile_phase != "ready":
        profiler.enable()
    loss = run_until_quiet(store, reconciler)
    if profiler:
        profiler.disable()
    statuses = report_moved(store)
    if profiler and options.profile_phase != "loss":
        profiler.enable()
    ready = run_until_quiet(store, reconciler)
    if profiler:
        profiler.disable()

    print(f"{options.models} models, {options.hosts} hosts: {len(lost)} lost ({deleted} keys deleted), {statuses} moved replicas then reported")
    print(f"  converge (first passes): {converge}")
    print(f"  host loss -> replicas re-placed: {loss}")
    print(f"  moved replicas ready -> reports and routes: {ready}")
    print(
        json.dumps(
            {"models": options.models, "hosts": options.hosts, "lost": len(lost), "moved": statuses, "first_wave": first_wave, "loss": loss, "ready": ready}
        )
    )
    if profiler and options.profile_out:
        profiler.dump_stats(options.profile_out)
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(options.profile)
        stats.sort_stats("cumulative").print_stats(options.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
