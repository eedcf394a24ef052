"""One soak run: start the fleet, place, inject faults while writing, converge, judge."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.chaos.convergence import converged, dump_state, history_keep, placed
from bench.chaos.faults import Injector
from bench.chaos.fleet import Fleet, wait_until
from bench.chaos.invariants import (
    FaultRecord,
    Timeline,
    Violation,
    check_intents,
    check_unloads,
    check_zero_available,
    healthy_over,
    unhealthy_intervals,
    wall_clock,
)
from bench.chaos.recorder import Recorder
from bench.chaos.schedule import Fault
from bench.chaos.settings import Settings
from bench.chaos.workload import Writer


@dataclass
class Result:
    seed: int
    duration: float
    faults: list[FaultRecord]
    violations: list[Violation]
    convergence_s: float | None
    counts: dict[str, int]
    root: str
    schedule: list[Fault]

    def faults_by_kind(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.faults))

    def violations_by_kind(self) -> dict[str, int]:
        return dict(Counter(v.kind for v in self.violations))

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": self.duration,
            "faults": len(self.faults),
            "faults_by_kind": self.faults_by_kind(),
            "fault_errors": [f"{f.kind}: {f.error}" for f in self.faults if f.error],
            "violations": len(self.violations),
            "violations_by_kind": self.violations_by_kind(),
            "first_violations": [v.text() for v in self.violations[:10]],
            "convergence_s": self.convergence_s,
            **self.counts,
        }


def run(settings: Settings) -> Result:
    own_root = settings.root is None
    root = pathlib.Path(tempfile.mkdtemp(prefix="tfleet-chaos-")) if own_root else pathlib.Path(settings.root)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    say = (lambda text: print(f"[{wall_clock(time.time())}] {text}", flush=True)) if settings.verbose else (lambda text: None)
    schedule = settings.schedule()
    timeline = Timeline()
    fleet = Fleet(settings, root)
    stop = threading.Event()
    recorder: Recorder | None = None
    writer: Writer | None = None
    convergence: float | None = None
    violations: list[Violation] = []
    try:
        say(f"starting the fleet in {root}: etcd x3, {settings.hosts} hosts, 2 controllers")
        fleet.start()
        recorder = Recorder(fleet, timeline, settings.sample_interval)
        recorder.start()
        writer = Writer(fleet, timeline, settings.seed, settings.write_interval)
        writer.create_all()
        started = time.monotonic()
        wait_until(lambda: placed(fleet, writer.wanted), settings.startup_timeout, "the initial placement to converge", interval=0.5)
        since = time.time()
        say(f"initial placement converged in {time.monotonic() - started:.1f} s; chaos for {settings.duration:g} s (seed {settings.seed})")

        injector = Injector(fleet, writer, stop, say)
        writer.start()
        chaos_end = time.monotonic() + settings.duration
        for fault in schedule:
            if time.monotonic() + fault.gap >= chaos_end:
                break
            stop.wait(fault.gap)
            if dead := fleet.dead():
                say(f"processes exited on their own: {', '.join(dead)}")
            record = injector.run(fault)
            timeline.faults.append(record)
            say(
                f"fault {fault.index + 1} {fault.kind}: {record.detail or record.error}"
                + (f" [ERROR {record.error}]" if record.error and record.detail else "")
            )
        stop.wait(max(0.0, chaos_end - time.monotonic()))
        writer.stop()
        last_write = max((w.at for w in timeline.writes), default=since)
        settled_from = max([last_write] + [f.end or 0.0 for f in timeline.faults])
        # etcd's final word on intents and history (invariant 1); what it holds is what the
        # fleet must converge to (a write with an unknown outcome may or may not have applied)
        from tfleet.schema import ModelIntent

        stored: dict[str, tuple[int, Any]] = {}
        for model in fleet.models:
            kv = wait_until(lambda m=model: [fleet.store.get(fleet.keyspace.model(m))], 60, f"etcd to answer for {model}")[0]
            stored[model] = (kv.mod_revision, ModelIntent.model_validate_json(kv.value).model_dump(mode="json")) if kv else (0, None)
        wanted = {model: document for model, (_, document) in stored.items() if document is not None}
        say("chaos over; waiting for convergence")
        deadline = settled_from + settings.converge_bound + 60.0
        why = None
        while time.time() < deadline:
            try:
                why = converged(fleet, fleet.store, wanted)
            except Exception as exc:  # noqa: BLE001 (etcd may still be catching up)
                why = f"{type(exc).__name__}: {exc}"
            if why is None:
                convergence = time.time() - settled_from
                break
            time.sleep(0.5)
        if convergence is None or convergence > settings.converge_bound:
            violations.append(
                Violation(
                    "no_convergence",
                    settled_from,
                    f"not converged {settings.converge_bound:g} s after the last fault/write"
                    + (f" (took {convergence:.1f} s)" if convergence else f"; still: {why}"),
                )
            )
        say(f"converged in {convergence:.1f} s" if convergence is not None else f"did not converge: {why}")
        if convergence is None:
            dump_state(fleet, root / "final-state.txt")
            say(f"etcd's final state is in {root / 'final-state.txt'}")
        # history last: a recorder that replays the watch may add entries after the writes
        history = {model: {entry.revision: entry.new for entry in writer.registry.history(model)} for model in fleet.models}
        recorder.stop()
        recorder = None
        hosts = fleet.hosts
        keep = history_keep(fleet)
        with timeline.lock:
            violations = sorted(
                check_intents(timeline, stored, history, keep)
                + check_unloads(timeline, hosts, since=since, grace=settings.health_grace, lookback=settings.unload_lookback, lag=settings.watch_lag)
                + check_zero_available(timeline, hosts, since=since, grace=settings.health_grace)
                + violations,
                key=lambda v: v.at,
            )
        writes = Counter(w.outcome for w in timeline.writes)
        unhealthy = {h: unhealthy_intervals(timeline, h, settings.health_grace, since) for h in hosts}
        counts = {
            # how much the invariants 2 and 3 had to judge (a check that saw nothing proves nothing)
            "unloads_by_healthy_hosts": sum(
                1 for at, h, _, _ in timeline.unloads if at >= since and healthy_over(unhealthy[h], at - settings.unload_lookback, at)
            ),
            "samples_with_2_healthy_hosts": sum(1 for at, _ in timeline.samples if at >= since and sum(healthy_over(unhealthy[h], at, at) for h in hosts) >= 2),
            "writes_ok": writes["ok"],
            "writes_unknown": writes["unknown"],
            "writes_conflict": writes["conflict"],
            "samples": len(timeline.samples),
            "loads": timeline.loads,
            "unloads": len(timeline.unloads),
            "unanswered_samples": sum(1 for _, s in timeline.samples for v in s.values() if v is None),
            "daemons_exited": len(fleet.dead()),
        }
        return Result(settings.seed, settings.duration, timeline.faults, violations, convergence, counts, str(root), schedule[: len(timeline.faults)])
    finally:
        stop.set()
        if writer is not None:
            writer.stop()
            writer.store.close()
        if recorder is not None:
            recorder.stop()
        fleet.stop()
        if own_root and not settings.keep:
            shutil.rmtree(root, ignore_errors=True)
