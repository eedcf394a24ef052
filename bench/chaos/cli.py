"""`python -m bench.chaos`: parse the command line, run the soak, print what it found."""

from __future__ import annotations

import argparse
import json
import pathlib

import bench.chaos
from bench.chaos.invariants import wall_clock
from bench.chaos.schedule import FAULT_KINDS
from bench.chaos.settings import Settings
from bench.chaos.soak import Result, run


def print_summary(result: Result, settings: Settings) -> None:
    print(f"chaos soak: seed {result.seed}, {result.duration:g} s, {settings.hosts} hosts, {settings.models} models, 3 etcd members, 2 controllers")
    print(f"  faults injected: {len(result.faults)}")
    for kind, count in sorted(result.faults_by_kind().items()):
        print(f"    {kind:22} {count}")
    for record in result.faults:
        if record.error:
            print(f"    ! {record.kind} at {wall_clock(record.start)}: {record.error}")
    c = result.counts
    print(f"  intent writes: {c['writes_ok']} ok, {c['writes_unknown']} unknown outcome, {c['writes_conflict']} conflicts")
    print(
        f"  simulator samples: {c['samples']} ({c['unanswered_samples']} host samples unanswered, {c['samples_with_2_healthy_hosts']} with >= 2 healthy hosts)"
    )
    print(f"  loads {c['loads']}, unloads {c['unloads']} ({c['unloads_by_healthy_hosts']} by hosts healthy for the look-back window)")
    conv = f"{result.convergence_s:.1f} s" if result.convergence_s is not None else "never"
    print(f"  convergence after the last fault/write: {conv} (bound {settings.converge_bound:g} s)")
    print(f"  violations: {len(result.violations)}")
    for kind, count in sorted(result.violations_by_kind().items()):
        print(f"    {kind:22} {count}")
        for violation in [v for v in result.violations if v.kind == kind][:3]:
            print(f"      {violation.text()}")
    if settings.keep or settings.root is not None:
        print(f"  logs: {result.root}/logs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=bench.chaos.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and of the writer's choices")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (faults and writes), after the initial placement")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds to draw from")
    parser.add_argument(
        "--writer",
        choices=("any", "forward"),
        default="any",
        help="any: new versions are drawn from 1-4, so removed versions come back (rollbacks); forward: upgrades only",
    )
    parser.add_argument("--lease-ttl", type=int, default=6, help="lease TTL of agents and controllers")
    parser.add_argument("--converge-bound", type=float, default=30.0, help="seconds allowed to converge after the last fault and write")
    parser.add_argument("--health-grace", type=float, default=10.0, help="seconds a recovered host stays 'not healthy'")
    parser.add_argument("--run-dir", type=pathlib.Path, help="keep data and logs here (default: a temporary directory, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) after the run")
    parser.add_argument("--print-schedule", type=int, metavar="N", help="print the first N faults of the seed's schedule and exit")
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    options = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in options.faults.split(",") if k.strip())
    settings = Settings(
        seed=options.seed,
        duration=options.duration,
        hosts=options.hosts,
        models=options.models,
        kinds=kinds,
        lease_ttl=options.lease_ttl,
        etcd_timeout=min(1.0, options.lease_ttl / 6),
        converge_bound=options.converge_bound,
        health_grace=options.health_grace,
        writer_mode=options.writer,
        root=options.run_dir,
        keep=options.keep,
    )
    if options.hosts < 2 or options.models < 1:
        parser.error("--hosts must be >= 2 and --models >= 1")
    if options.print_schedule:
        for fault in settings.schedule(options.print_schedule):
            print(fault)
        return 0
    from tfleet import logs

    logs.configure("warning")  # the registry's own lines would drown the soak's
    result = run(settings)
    print_summary(result, settings)
    if options.json:
        print(json.dumps(result.as_json()))
    return 1 if result.violations else 0
