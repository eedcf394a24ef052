"""Agent benchmark: assignment put -> AVAILABLE in status, against the raw etcd floor.

    python -m bench.agent_latency [--models 1000] [--samples 200]      (or: make bench)

Measured in one run, on one machine, so that the ratio means something:

* floor: raw etcd put -> watch event latency (one client puts, a watch on the same etcd
  receives), the best any etcd-driven system can do;
* assignment put -> the agent's status key shows the version AVAILABLE (seen through the
  same kind of watch), on a host that already serves --models models, with zero simulated
  load time; each sample is a new model assignment;
* the agent's resident memory (RSS) while serving them, and its CPU use while idle.

TF Serving finds the versions of a newly named model on its next file-system poll, not
during the reload (FileSystemStoragePathSource::UpdateConfig does not poll), so every
assignment waits up to --file_system_poll_wait_seconds (TF Serving's default: 1 s) on top of
the agent's own work. The simulator reproduces this; the benchmark runs it with
--tfs-poll-wait (default 0.1 s) and prints it, so the figure shows the agent's overhead.

Targets (issue 3): p99 under 250 ms, agent RSS under 80 MB with 1,000 models.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import queue
import statistics
import sys
import tempfile
import time

from tfleet import schema
from tfleet.etcd_local import LocalEtcd, free_port
from tfleet.keyspace import Keyspace
from tfleet.procs import Daemon, wait_for
from tfleet.schema import ModelStatus
from tfleet.sim.fixtures import make_model
from tfleet.store import EtcdSettings, EtcdStore, Put

HOST = "bench-h1"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure_floor(store: EtcdStore, samples: int) -> list[float]:
    events: queue.Queue = queue.Queue()
    prefix = "/bench-floor/"
    start = store.list_prefix(prefix).revision + 1
    watch = store.watch_prefix(prefix, start, on_events=lambda evs: [events.put((time.perf_counter(), e.key)) for e in evs], on_reset=lambda s: None)
    latencies = []
    try:
        for i in range(samples):
            key = f"{prefix}k{i}"
            sent = time.perf_counter()
            store.put(key, b"x")
            while True:
                received, got = events.get(timeout=10)
                if got == key:
                    break
            latencies.append(received - sent)
    finally:
        watch.cancel()
        store.delete_prefix(prefix)
    return latencies


def proc_rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StatusWatcher:
    """Collects the time each status key first shows AVAILABLE for a given assignment revision."""

    def __init__(self, store: EtcdStore, keyspace: Keyspace) -> None:
        self.events: queue.Queue = queue.Queue()
        prefix = keyspace.status_prefix(HOST)
        self._watch = store.watch_prefix(prefix, store.list_prefix(prefix).revision + 1, on_events=self._on_events, on_reset=lambda s: None)

    def _on_events(self, events) -> None:
        now = time.perf_counter()
        for event in events:
            if event.kind == "put":
                self.events.put((now, event.key, event.value))

    def wait_available(self, key: str, revision: int, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen, got, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got != key:
                continue
            status = schema.parse(ModelStatus, value, key)
            if status.assignment_revision == revision and status.versions and all(v.state == "AVAILABLE" for v in status.versions.values()):
                return seen
        raise TimeoutError(f"{key} did not become AVAILABLE for revision {revision}")

    def close(self) -> None:
        self._watch.cancel()


def run(models: int, samples: int, root: pathlib.Path, tfs_poll_wait: float) -> dict:
    etcd = LocalEtcd(root / "etcd")
    etcd.start()
    store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,), call_timeout=5.0))
    keyspace = Keyspace()
    daemons: list[Daemon] = []
    try:
        floor = measure_floor(store, samples)

        models_dir = root / "models"
        for i in range(models):
            make_model(models_dir, f"m{i}", [1])
        for i in range(samples):
            make_model(models_dir, f"p{i}", [1])
        grpc, rest = free_port(), free_port()
        daemons.append(
            Daemon(
                "tfs", ["tfs-sim", "--grpc-port", str(grpc), "--rest-port", str(rest), "--file-system-poll-wait-seconds", str(tfs_poll_wait)], root / "tfs.log"
            ).start()
        )
        agent = Daemon(
            "agent",
            [
                "agent",
                "--host",
                HOST,
                "--etcd",
                etcd.client_url,
                "--tfs-grpc",
                f"127.0.0.1:{grpc}",
                "--tfs-rest",
                f"127.0.0.1:{rest}",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(free_port()),
                "--state-dir",
                str(root / "state"),
                "--log-level",
                "warning",
            ],
            root / "agent.log",
        ).start()
        daemons.append(agent)
        wait_for(lambda: store.get(keyspace.host(HOST)) is not None, 30, "the agent to register")

        started = time.perf_counter()
        puts = [Put(keyspace.assignment(HOST, f"m{i}"), json.dumps({"base_path": str(models_dir / f"m{i}")}).encode()) for i in range(models)]
        for chunk in range(0, len(puts), 100):
            store.txn([], puts[chunk : chunk + 100])
        wait_for(lambda: _available_count(store, keyspace) >= models, 300, f"{models} models AVAILABLE", interval=0.2)
        initial_convergence = time.perf_counter() - started

        watcher = StatusWatcher(store, keyspace)
        latencies = []
        try:
            for i in range(samples):
                key = keyspace.assignment(HOST, f"p{i}")
                sent = time.perf_counter()
                revision = store.put(key, json.dumps({"base_path": str(models_dir / f"p{i}")}).encode())
                latencies.append(watcher.wait_available(keyspace.status(HOST, f"p{i}"), revision) - sent)
        finally:
            watcher.close()

        assert agent.process is not None
        pid = agent.process.pid
        rss = proc_rss_mb(pid)
        cpu_before, idle_started = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(10)  # measuring idle CPU over a fixed window
        idle_cpu = (proc_cpu_seconds(pid) - cpu_before) / (time.monotonic() - idle_started) * 100
        return {
            "models_served": models + samples,
            "tfs_file_system_poll_wait_s": tfs_poll_wait,
            "samples": samples,
            "floor_put_watch_ms": {"p50": percentile(floor, 50) * 1000, "p99": percentile(floor, 99) * 1000},
            "assignment_to_available_ms": {
                "p50": percentile(latencies, 50) * 1000,
                "p99": percentile(latencies, 99) * 1000,
                "mean": statistics.mean(latencies) * 1000,
            },
            "ratio_p50": percentile(latencies, 50) / percentile(floor, 50),
            "ratio_p99": percentile(latencies, 99) / percentile(floor, 99),
            "initial_convergence_s": initial_convergence,
            "agent_rss_mb": rss,
            "agent_idle_cpu_percent": idle_cpu,
        }
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        store.close()
        etcd.stop()


def _available_count(store: EtcdStore, keyspace: Keyspace) -> int:
    count = 0
    for kv in store.list_prefix(keyspace.status_prefix(HOST)).items:
        status = schema.parse(ModelStatus, kv.value, kv.key)
        if status.versions and all(v.state == "AVAILABLE" for v in status.versions.values()):
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=1000, help="models the host already serves")
    parser.add_argument("--samples", type=int, default=200, help="assignment puts measured (and floor samples)")
    parser.add_argument("--tfs-poll-wait", type=float, default=0.1, help="the simulator's --file-system-poll-wait-seconds")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfleet-bench-") as tmp:
        result = run(options.models, options.samples, pathlib.Path(tmp), options.tfs_poll_wait)
    if options.json:
        print(json.dumps(result))
        return 0
    floor, agent = result["floor_put_watch_ms"], result["assignment_to_available_ms"]
    print(f"host serving {result['models_served']} models, {result['samples']} samples, TF Serving file-system poll {options.tfs_poll_wait:g} s")
    print(f"  floor   etcd put -> watch            p50 {floor['p50']:8.2f} ms   p99 {floor['p99']:8.2f} ms")
    print(f"  agent   assignment -> AVAILABLE      p50 {agent['p50']:8.2f} ms   p99 {agent['p99']:8.2f} ms")
    print(f"  ratio   agent / floor                p50 {result['ratio_p50']:8.1f} x    p99 {result['ratio_p99']:8.1f} x")
    print(f"  initial convergence of {result['models_served'] - result['samples']} models: {result['initial_convergence_s']:.1f} s")
    print(f"  agent RSS {result['agent_rss_mb']:.1f} MB, idle CPU {result['agent_idle_cpu_percent']:.2f} %")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
