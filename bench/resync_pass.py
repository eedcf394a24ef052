"""The longest controller pass while the net under incremental planning runs, at 10,000 models.

    python -m bench.resync_pass [--models 10000] [--hosts 1000] [--seconds 70] [--every 0.1] [--rate R]

A pass every ``--every`` seconds of a simulated clock for ``--seconds`` (no changes: what
each pass costs is the net alone), through the real reconciler over the in-memory store of
bench/cache_pass.py. Before the rolling resync, the periodic full plan made one pass per
``--full-plan-interval`` cost the whole fleet, and every change arriving meanwhile waited
for it; with it, each pass plans a bounded slice. Printed: the first pass (a full plan, the
floor: what planning everything costs), then the p50, p99 and longest of the later passes,
in CPU seconds of this process (time.process_time: a shared machine's load does not count),
and the net's CPU seconds per second of the simulated clock (--rate: the controller's
--full-plan-rate; at 100,000 models the minute's cycle is what the rate bounds).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

from bench import cache_pass
from bench.controller_plan import build
from tfleet.controller.app import tune_gc
from tfleet.controller.reconciler import ControllerReconciler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resync_pass", description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--interval", type=float, default=60.0, help="--full-plan-interval")
    parser.add_argument("--rate", type=float, default=None, help="--full-plan-rate (default: the controller's)")
    args = parser.parse_args(argv)
    tune_gc()
    store = cache_pass.MemoryStore(build(args.models, args.hosts))
    now = [0.0]
    options = {}
    if "resync_slice" in inspect.signature(ControllerReconciler).parameters:
        options["resync_slice"] = 500
    if args.rate is not None:
        options["resync_rate"] = args.rate
    reconciler = cache_pass.in_memory_controller(store, lambda: now[0], full_plan_interval=args.interval, **options).reconciler
    started = time.process_time()
    reconciler.reconcile()
    first = time.process_time() - started
    store.deliver()
    passes = []
    while now[0] < args.seconds:
        now[0] += args.every
        started = time.process_time()
        reconciler.reconcile()
        passes.append(time.process_time() - started)
        store.deliver()
    passes.sort()
    ms = 1000.0
    print(f"{args.models} models, {args.hosts} hosts, a pass every {args.every} s for {args.seconds} s, --full-plan-interval {args.interval} s")
    print(f"first pass (full plan, the floor): {first * ms:.0f} ms")
    print(
        f"later passes ({len(passes)}): p50 {statistics.median(passes) * ms:.1f} ms, p99 {passes[int(len(passes) * 0.99)] * ms:.1f} ms, "
        f"longest {passes[-1] * ms:.0f} ms, total {sum(passes):.1f} s"
    )
    # (what the net holds of the controller's one interpreter on a fleet where nothing changes)
    print(f"the net's CPU: {sum(passes) / args.seconds:.3f} s a second of clock")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
