"""A watch that starts far behind: how etcd catches it up, and what that costs the watcher.

    python -m bench.watch_catchup [--events 100000] [--txn 100] [--value-bytes 330] [--timeout 120]

Writes --events puts in transactions of --txn to a fresh etcd (a temporary directory, deleted
afterwards), then opens a store watch at the first of those revisions, as a controller does
when it resumes after a reconnect or a failover to another member. etcd answers such a
watcher with up to 1,000 revisions per response; the store asks for fragments and puts each
revision back together (tfleet/store/watch_stream.py).

Printed: the events delivered and in how many deliveries, whether any revision was split
across two, the watch's errors and restarts, and the CPU seconds of this process (the
watcher; nothing else runs in it meanwhile) and of etcd, and the wall time, until the last
revision arrived. Before fragments, --txn 100 delivered nothing at all (each response of 1,000
revisions exceeded the receive limit, for ever); --txn 20 worked, at 0.46 s of watcher CPU
per 100,000 events (docs/operations.md, "A watch that catches up").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import threading
import time

from bench.agent_latency import proc_cpu_seconds
from tfleet.etcd_local import LocalEtcd
from tfleet.store import EtcdSettings, EtcdStore, Put, WatchEvent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--txn", type=int, default=100, help="puts per transaction (a controller writes 100)")
    parser.add_argument("--value-bytes", type=int, default=330, help="bytes per value (an assignment is ~180, a modelstatus ~560)")
    parser.add_argument("--timeout", type=float, default=120.0)
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        etcd = LocalEtcd(pathlib.Path(tmp) / "etcd", extra_args=["--quota-backend-bytes=8589934592"])
        etcd.start()
        try:
            with EtcdStore(EtcdSettings((etcd.client_url,), call_timeout=10.0)) as store:
                start = store.list_prefix("/w/").revision + 1
                value = b"v" * options.value_bytes
                last = start - 1
                for first in range(0, options.events, options.txn):
                    ops = [Put(f"/w/h{i % 1000:04d}/m{i:07d}", value) for i in range(first, min(first + options.txn, options.events))]
                    last = store.txn([], ops).revision

                batches: list[tuple[int, int, int]] = []  # (events, first revision, last revision)
                errors: list[str] = []
                done = threading.Event()

                def on_events(events: list[WatchEvent]) -> None:
                    batches.append((len(events), events[0].mod_revision, events[-1].mod_revision))
                    if events[-1].mod_revision >= last:
                        done.set()

                cpu, etcd_cpu, started = time.process_time(), proc_cpu_seconds(etcd.pid), time.perf_counter()
                watch = store.watch_prefix("/w/", start, on_events=on_events, on_reset=lambda s: None, on_error=lambda e: errors.append(str(e)))
                caught_up = done.wait(options.timeout)
                wall = time.perf_counter() - started
                result = {
                    "events": options.events,
                    "txn": options.txn,
                    "revisions": last - start + 1,
                    "caught_up": caught_up,
                    "delivered": sum(n for n, _, _ in batches),
                    "deliveries": len(batches),
                    "revisions_split": sum(1 for (_, _, end), (_, begin, _) in zip(batches, batches[1:], strict=False) if end == begin),
                    "watcher_cpu_s": round(time.process_time() - cpu, 2),
                    "etcd_cpu_s": round(proc_cpu_seconds(etcd.pid) - etcd_cpu, 2),
                    "wall_s": round(wall, 2),
                    "restarts": watch.restarts,
                    "errors": errors[:3],
                }
                watch.cancel()
        finally:
            etcd.stop()
    print(json.dumps(result))
    return 0 if result["caught_up"] else 1


if __name__ == "__main__":
    sys.exit(main())
