"""What EtcdStore.last_key costs as its prefix grows, next to the unsorted first key (the floor).

    python -m bench.last_key [--sizes 1000,10000,100000] [--runs 20]

etcd serves a descending range (any sort order but NONE) by reading the whole range, then
sorting and truncating it (server/etcdserver/apply.go, Range): the limit of 1 does not bound
the work. This bench shows it on a local etcd (no fsync), with 200-byte values.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable

from tfleet.etcd_local import LocalEtcd
from tfleet.store import EtcdSettings, EtcdStore, Put


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.last_key", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        etcd = LocalEtcd(pathlib.Path(directory), unsafe_no_fsync=True)
        etcd.start()
        try:
            store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,)))
            for size in (int(s) for s in args.sizes.split(",")):
                prefix = f"/last-key-{size}/"
                for start in range(0, size, 100):
                    store.txn([], [Put(f"{prefix}{i:08d}", b"x" * 200) for i in range(start, min(size, start + 100))])
                last = store.last_key(prefix)
                assert last is not None and last.key == f"{prefix}{size - 1:08d}"
                descending = median_ms(lambda p=prefix: store.last_key(p), args.runs)
                floor = median_ms(lambda p=prefix: store.list_page(p, limit=1), args.runs)
                print(f"{size:>8} keys: last_key (descending, limit 1) {descending:8.2f} ms   first key (unsorted, limit 1) {floor:6.2f} ms")
        finally:
            etcd.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
