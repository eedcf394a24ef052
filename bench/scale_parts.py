"""The parts of the scale benchmark (bench/scale.py) that observe and drive the fleet: the
models' intents and how they are written, the watch of ``modelstatus`` that says when
models are ready, the stand-in hosts' process, etcd's counters, the controller's usage and
log, and the measurements built from them (change -> ready, writes per change).

Also used by tests/integration/test_scale_small.py (the same scenario, small enough for CI).
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.agent_latency import percentile, proc_cpu_seconds, proc_rss_mb
from tfleet import schema
from tfleet.etcd_local import LocalEtcd
from tfleet.keyspace import Keyspace
from tfleet.procs import Daemon
from tfleet.registry import Registry
from tfleet.schema import HistoryEntry, ModelIntent
from tfleet.store import Compare, EtcdStore, Put, WatchEvent

KS = Keyspace()
SIZE_ERRORS = re.compile(r"RESOURCE_EXHAUSTED|larger than max|too large|exceeds|too many operations|database space exceeded|request is too large", re.I)
ETCD_COUNTERS = (
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_range_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    # where etcd's time goes while the fleet re-places lost hosts (etcd_work)
    "etcd_disk_wal_fsync_duration_seconds_sum",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_backend_commit_duration_seconds_sum",
    "etcd_disk_backend_commit_duration_seconds_count",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_mvcc_pending_events_total",
    # applying each committed entry (one per transaction, mostly), in etcd's apply loop
    "etcd_server_apply_duration_seconds_sum",
    "etcd_server_apply_duration_seconds_count",
)


class PhaseTimeout(Exception):
    pass


def intent(model: int | str, replicas: int = 2, description: str = "") -> ModelIntent:
    return ModelIntent.model_validate(
        {
            "base_path": f"/models/{model}",
            "model_version_policy": {"specific": {"versions": [1]}},
            "version_labels": {"stable": 1},
            "replicas": replicas,
            "memory_mb": 100,
            "description": description,
        }
    )


def model_name(i: int) -> str:
    return f"m{i:06d}"


# -- observing -----------------------------------------------------------------------------------


class ReadyTracker:
    """The controller's account of every model (modelstatus), from one watch: which hosts hold
    a replica and which of them are ready. ``pending()`` = models short of their wanted ready
    replicas on live hosts."""

    def __init__(self, store: EtcdStore) -> None:
        self._cond = threading.Condition()
        self.wanted: dict[str, int] = {}
        self.dead: frozenset[str] = frozenset()
        self._ready: dict[str, frozenset[str]] = {}
        self._placed: dict[str, frozenset[str]] = {}
        self._intent_revision: dict[str, int] = {}
        self._first_seen: dict[str, tuple[float, float | None]] = {}  # model -> (placed at, ready at) for watched models
        self._watched: dict[str, int] = {}
        self._pending: set[str] = set()
        self._unplaced: set[str] = set()  # wanted models short of replicas placed on live hosts
        prefix = KS.modelstatus_prefix()
        start = store.list_prefix(prefix).revision + 1  # empty at start
        self._watch = store.watch_prefix(prefix, start, on_events=self._on_events, on_reset=lambda s: None)

    def close(self) -> None:
        self._watch.cancel()

    def want(self, models: dict[str, int]) -> None:
        with self._cond:
            self.wanted.update(models)
            for model in models:
                self._check(model)

    def set_dead(self, hosts: frozenset[str]) -> None:
        with self._cond:
            self.dead = hosts
            for model in self.wanted:
                self._check(model)

    def watch_model(self, model: str, replicas: int) -> None:
        """Record when the model first has `replicas` placed, and ready (see timings())."""
        with self._cond:
            self._watched[model] = replicas
            self._first_seen.pop(model, None)

    def timings(self, model: str) -> tuple[float | None, float | None]:
        with self._cond:
            return self._first_seen.get(model, (None, None))

    def _check(self, model: str) -> None:
        wanted = self.wanted.get(model, 0)
        for held, short in ((self._ready, self._pending), (self._placed, self._unplaced)):
            if len(held.get(model, frozenset()) - self.dead) >= wanted:
                short.discard(model)
            else:
                short.add(model)

    def _on_events(self, events: list[WatchEvent]) -> None:
        now = time.perf_counter()
        with self._cond:
            for event in events:
                model = KS.classify(event.key).leaf
                if event.kind == "delete":
                    self._ready.pop(model, None)
                    self._placed.pop(model, None)
                    self._intent_revision.pop(model, None)
                else:
                    try:
                        doc = json.loads(event.value)
                        replicas = doc.get("replicas") or []
                        self._placed[model] = frozenset(r["host"] for r in replicas)
                        self._ready[model] = frozenset(r["host"] for r in replicas if r.get("ready"))
                        self._intent_revision[model] = int(doc.get("intent_revision") or 0)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                if model in self._watched:
                    want = self._watched[model]
                    placed_at, ready_at = self._first_seen.get(model, (None, None))
                    if placed_at is None and len(self._placed.get(model, ())) >= want:
                        placed_at = now
                    if ready_at is None and len(self._ready.get(model, ())) >= want:
                        ready_at = now
                    if placed_at is not None:
                        self._first_seen[model] = (placed_at, ready_at)
                if model in self.wanted:
                    self._check(model)
            self._cond.notify_all()

    def placed_on(self, hosts) -> int:
        """Replicas the controller reports on these hosts."""
        wanted = set(hosts)
        with self._cond:
            return sum(len(placed & wanted) for placed in self._placed.values())

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def wait_all_ready(self, timeout: float, what: str) -> float:
        """perf_counter() when no wanted model is short of ready replicas; PhaseTimeout otherwise."""
        return self._wait_none_short(self._pending, "ready", timeout, what)

    def wait_all_placed(self, timeout: float, what: str) -> float:
        """perf_counter() when no wanted model is short of replicas placed on live hosts (ready
        or not: the controller reports them in modelstatus in the pass that assigns them)."""
        return self._wait_none_short(self._unplaced, "placed", timeout, what)

    def _wait_none_short(self, short: set[str], state: str, timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while short:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PhaseTimeout(f"{what}: {len(short)} of {len(self.wanted)} models not {state} after {timeout:g} s")
                self._cond.wait(min(left, 1.0))
            return time.perf_counter()

    def wait_ready(self, model: str, replicas: int, timeout: float, intent_revision: int = 0) -> float:
        """perf_counter() when modelstatus, planned from the intent at `intent_revision` or later,
        shows `replicas` ready replicas on live hosts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._intent_revision.get(model, 0) < intent_revision or len(self._ready.get(model, frozenset()) - self.dead) < replicas:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PhaseTimeout(f"{model}: {replicas} replicas not ready after {timeout:g} s")
                self._cond.wait(min(left, 1.0))
            return time.perf_counter()


class EtcdMetrics:
    def __init__(self, etcd: LocalEtcd) -> None:
        self.url = f"http://127.0.0.1:{etcd.metrics_port}/metrics"

    def read(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name, _, rest = line.partition(" ")
            base = name.split("{", 1)[0]
            if base in ETCD_COUNTERS:
                values[base] = values.get(base, 0.0) + float(rest.split()[0])
            elif base in ("grpc_server_handling_seconds_sum", "grpc_server_handling_seconds_count") and 'grpc_method="Txn"' in name:
                # (--metrics=extensive) a Txn from its arrival at etcd to its answer
                part = "grpc_txn_handling_seconds_" + base.rsplit("_", 1)[1]
                values[part] = values.get(part, 0.0) + float(rest.split()[0])
            elif base == "grpc_server_msg_sent_total" and 'grpc_method="' in name:
                method = name.split('grpc_method="', 1)[1].split('"', 1)[0]  # messages sent per method
                values[f"sent:{method}"] = values.get(f"sent:{method}", 0.0) + float(rest.split()[0])
        return values


class Standins:
    """The stand-in hosts' process (bench/standin.py), driven through its stdin."""

    def __init__(self, etcd_url: str, hosts: int, ttl: int, log_path: pathlib.Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.standin", "--etcd", etcd_url, "--hosts", str(hosts), "--ttl", str(ttl)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def expect(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise PhaseTimeout(f"stand-ins: no {key!r} after {timeout:g} s") from None
            if message is None:
                raise RuntimeError(f"stand-ins exited (code {self.process.poll()})")
            if key in message:
                return message[key]

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("stop")
                self.process.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def write_intents(store: EtcdStore, models: list[str], writer: str) -> None:
    """M intents, 2 replicas each: etcdctl-style puts (100 per txn), or registry-style (intent +
    its first history entry, create-only, 50 models per txn)."""
    if writer == "etcdctl":
        for start in range(0, len(models), 100):
            store.txn([], [Put(KS.model(m), schema.encode(intent(m))) for m in models[start : start + 100]])
        return
    now = schema.utc_now()
    for start in range(0, len(models), 50):
        chunk = models[start : start + 50]
        compares, ops = [], []
        for m in chunk:
            doc = intent(m)
            entry = HistoryEntry(
                sequence=1, model=m, action="create", revision=None, at=now, author="bench", source="cli", previous=None, new=json.loads(schema.encode(doc))
            )
            compares += [Compare(KS.model(m), "version", "==", 0), Compare(KS.history(m, 1), "version", "==", 0)]
            ops += [Put(KS.model(m), schema.encode(doc)), Put(KS.history(m, 1), schema.encode(entry))]
        if not store.txn(compares, ops).succeeded:
            raise RuntimeError(f"intents {chunk[0]}..{chunk[-1]} already exist")


def change_latencies(store: EtcdStore, registry: Registry, tracker: ReadyTracker, models: list[str], count: int, timeout: float) -> list[float]:
    """Replicas 2 -> 3 on `count` models (round robin; back to 2 first when already at 3)."""
    latencies = []
    for i in range(count):
        model = models[i % len(models)]
        if tracker.wanted.get(model) == 3:
            revision = registry.apply_intent(model, intent(model, 2), author="bench")
            tracker.want({model: 2})
            tracker.wait_ready(model, 2, timeout, revision)
        sent = time.perf_counter()
        revision = registry.apply_intent(model, intent(model, 3), author="bench")
        tracker.want({model: 3})
        latencies.append(tracker.wait_ready(model, 3, timeout, revision) - sent)
    return latencies


def wait_quiet(metrics: EtcdMetrics, timeout: float, window: float = 2.0, most: int = 5, behind: Callable[[], float] | None = None) -> float:
    """Seconds until etcd takes at most `most` writes (puts + txns) in `window` seconds and
    ``behind()`` (when given: the history recorder's lag, in revisions) is 0: the
    controller's backlog after a mass write (history entries, route tables, reports) is
    drained, so that what follows measures the steady state, not the backlog. (A quiet
    window alone is not enough: a controller that stalls for seconds, e.g. writing a
    /metrics answer, writes nothing meanwhile.) At most `timeout` seconds (then it returns
    what it waited)."""
    started = time.perf_counter()

    def writes() -> float:
        values = metrics.read()
        return values.get("etcd_mvcc_put_total", 0.0) + values.get("etcd_mvcc_txn_total", 0.0)

    before = writes()
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = writes()
        if now - before <= most and (behind is None or behind() == 0):
            break
        before = now
    return time.perf_counter() - started


def controller_samples(url: str, names: Sequence[str]) -> dict[str, float | None]:
    """Unlabelled samples of the controller's /metrics, from one read (each a scrape: at
    100,000 models ~17 MB, ~0.2 s of the controller's interpreter). None: not there, or no
    answer."""
    found: dict[str, float | None] = dict.fromkeys(names)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    except OSError:
        return found
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in found and rest:
            found[name] = float(rest.split()[0])
    return found


def controller_sample(url: str, name: str) -> float | None:
    """One unlabelled sample of the controller's /metrics (None: not there, or no answer)."""
    return controller_samples(url, [name])[name]


def writes_per_change(store: EtcdStore, registry: Registry, tracker: ReadyTracker, metrics: EtcdMetrics, model: str, settle: float, timeout: float) -> dict:
    """etcd's counters over one change (replicas 2 -> 3) and a quiet `settle` after it is ready."""
    if tracker.wanted.get(model) != 2:
        revision = registry.apply_intent(model, intent(model, 2), author="bench")
        tracker.want({model: 2})
        tracker.wait_ready(model, 2, timeout, revision)
        time.sleep(settle)
    before, revision_before = metrics.read(), store.put("/bench-revision", b"")
    revision = registry.apply_intent(model, intent(model, 3), author="bench")
    tracker.want({model: 3})
    tracker.wait_ready(model, 3, timeout, revision)
    time.sleep(settle)
    after, revision_after = metrics.read(), store.put("/bench-revision", b"")
    delta = {name.removeprefix("etcd_mvcc_").removeprefix("etcd_network_client_grpc_"): after.get(name, 0) - before.get(name, 0) for name in ETCD_COUNTERS[:6]}
    delta["revisions"] = revision_after - revision_before - 1  # write transactions in between
    delta["put_total"] -= 1  # our own revision marker
    return delta


def scan_log(path: pathlib.Path) -> dict:
    counts: dict[str, int] = {}
    size, examples = 0, []
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            doc = {"level": "raw", "event": line[:80]}
        level = str(doc.get("level", "?"))
        if level in ("warning", "error", "critical", "raw"):
            key = f"{level}:{doc.get('event', '?')}:{doc.get('result', '')}".rstrip(":")
            counts[key] = counts.get(key, 0) + 1
            if SIZE_ERRORS.search(line):
                size += 1
                if len(examples) < 3:
                    examples.append(line[:400])
    return {"warnings_errors": counts, "size_errors": size, "size_error_examples": examples}


def controller_usage(controller: Daemon) -> dict:
    assert controller.process is not None
    pid = controller.process.pid
    try:
        return {"rss_mb": round(proc_rss_mb(pid), 1), "cpu_s": round(proc_cpu_seconds(pid), 2)}
    except OSError:
        return {"rss_mb": None, "cpu_s": None, "note": "controller not running"}


class Scraper:
    """Prometheus, as deploy/prometheus/prometheus.yml scrapes the controller: a GET of its
    /metrics every ``every`` seconds (in this process, like Prometheus in its own), so that
    the controller pays for its exposition as it would in a fleet: at 100,000 models its
    three per-model gauges are 300,000 series. Records each scrape's seconds and size."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.seconds: list[float] = []
        self.bytes = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        if every > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    self.bytes = len(response.read())
            except OSError:
                self.errors += 1
                continue
            self.seconds.append(time.perf_counter() - started)

    def stop(self) -> dict:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(70)
        done = sorted(self.seconds)
        return {
            "every_s": self.every,
            "scrapes": len(done),
            "errors": self.errors,
            "mean_s": round(sum(done) / len(done), 3) if done else None,
            "max_s": round(done[-1], 3) if done else None,
            "last_mb": round(self.bytes / 1024**2, 1),
        }


def controller_txns(url: str) -> dict[str, float]:
    """The controller's write transactions so far, as it saw them (its
    tfleet_controller_write_txn_duration_seconds): count and seconds."""
    read = controller_samples(url, [f"tfleet_controller_write_txn_duration_seconds_{part}" for part in ("count", "sum")])
    return {name.rsplit("_", 1)[1]: value or 0.0 for name, value in read.items()}


def etcd_work(before: dict[str, float], after: dict[str, float]) -> dict:
    """What etcd did between two reads of its metrics: writes, WAL fsyncs and backend commits
    (count and mean ms), bytes sent to clients (watch events, mostly), and its watchers too
    slow to keep up at the end (etcd then replays their events from its database)."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    def mean_ms(name: str) -> float | None:
        count = delta(f"{name}_count")
        return round(1000 * delta(f"{name}_sum") / count, 2) if count else None

    return {
        "puts": int(delta("etcd_mvcc_put_total")),
        "deletes": int(delta("etcd_mvcc_delete_total")),
        "txns": int(delta("etcd_mvcc_txn_total")),
        "wal_fsyncs": int(delta("etcd_disk_wal_fsync_duration_seconds_count")),
        "wal_fsync_mean_ms": mean_ms("etcd_disk_wal_fsync_duration_seconds"),
        "backend_commits": int(delta("etcd_disk_backend_commit_duration_seconds_count")),
        "backend_commit_mean_ms": mean_ms("etcd_disk_backend_commit_duration_seconds"),
        # a Txn in etcd (arrival to answer) and the apply of one committed entry, mean ms:
        # against the controller's own view of its transactions (controller_txns), what of a
        # transaction's time is etcd's
        "txn_handling_mean_ms": mean_ms("grpc_txn_handling_seconds"),
        "apply_mean_ms": mean_ms("etcd_server_apply_duration_seconds"),
        "sent_mb": round(delta("etcd_network_client_grpc_sent_bytes_total") / 1024**2, 1),
        "ranges": int(delta("etcd_mvcc_range_total")),
        # messages etcd sent per gRPC method (Watch: watch responses; Range: reads, one per page)
        "messages_sent": {key.split(":", 1)[1]: int(delta(key)) for key in sorted(after) if key.startswith("sent:") and delta(key)},
        "slow_watchers_at_end": int(after.get("etcd_debugging_mvcc_slow_watcher_total", 0)),
    }


def etcd_size(metrics: EtcdMetrics) -> dict:
    m = metrics.read()
    return {
        "db_mb": round(m.get("etcd_mvcc_db_total_size_in_bytes", 0) / 1024**2, 1),
        "db_in_use_mb": round(m.get("etcd_mvcc_db_total_size_in_use_in_bytes", 0) / 1024**2, 1),
        "keys": int(m.get("etcd_debugging_mvcc_keys_total", 0)),
    }


SECTIONS = ("hosts", "assignments", "status", "models", "history", "modelstatus", "routes")


def section_sizes(store: EtcdStore, sample: int = 200) -> dict:
    """Keys per section and mean bytes per key (key + value, from the first `sample` keys)."""
    sizes = {}
    for section in SECTIONS:
        prefix = f"{KS.prefix}/{section}/"
        items = store.list_page(prefix, limit=sample).items
        lengths = [len(kv.key.encode()) + len(kv.value) for kv in items]
        sizes[section] = {"keys": store.count_prefix(prefix), "bytes_per_key": round(statistics.mean(lengths)) if lengths else 0}
    return sizes


def ms(samples: list[float]) -> dict:
    return {"p50": round(percentile(samples, 50) * 1000, 1), "p99": round(percentile(samples, 99) * 1000, 1), "n": len(samples)}


# -- who had the machine's cores during a phase ------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """The CPU seconds of the machine and of the benchmark's processes at one moment, and of
    the controller's main thread (its passes run there: tfleet/loop.py)."""

    busy: float  # the machine's CPU seconds not idle, all cores, since boot
    idle: float  # idle and waiting for I/O
    processes: Mapping[str, float]  # name -> the process's CPU seconds
    pass_thread: tuple[float, float]  # (seconds on a core, seconds waiting in the run queue for one)


def machine_seconds(proc_stat: str) -> tuple[float, float]:
    """(busy, idle) CPU seconds of all cores from /proc/stat's first line (idle counts
    iowait: a core waiting for the disk is free for any other process; guest time is inside
    user time already)."""
    fields = proc_stat.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        raise ValueError(f"not /proc/stat: {proc_stat[:60]!r}")
    user, nice, system, idle, iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, (idle + iowait) / tick


def thread_schedstat(text: str) -> tuple[float, float]:
    """(seconds on a core, seconds waiting for one) from /proc/<pid>/task/<tid>/schedstat."""
    on_core, waiting = text.split()[:2]
    return int(on_core) / 1e9, int(waiting) / 1e9


def cpu_sample(processes: Mapping[str, int], controller: int | None) -> CpuSample:
    """One CpuSample now (Linux /proc); the controller's main thread is its process id."""
    busy, idle = machine_seconds(pathlib.Path("/proc/stat").read_text())
    seconds = {}
    for name, pid in processes.items():
        try:
            seconds[name] = proc_cpu_seconds(pid)
        except OSError:
            continue
    thread = (0.0, 0.0)
    if controller is not None:
        try:
            thread = thread_schedstat(pathlib.Path(f"/proc/{controller}/task/{controller}/schedstat").read_text())
        except OSError:
            pass
    return CpuSample(busy, idle, seconds, thread)


def cpu_between(before: CpuSample, after: CpuSample, seconds: float) -> dict:
    """What a window of ``seconds`` cost: the cores the machine kept busy on average (of how
    many), each process's CPU seconds, and the controller's pass thread's seconds on a core
    and waiting for one. A busy controller process stays under one core (one interpreter
    lock); the machine's idle share says whether the others left it cores to run on."""
    total = (after.busy - before.busy) + (after.idle - before.idle)
    cores = os.cpu_count() or 1
    return {
        "seconds": round(seconds, 1),
        "machine_busy_cores": round(cores * (after.busy - before.busy) / total, 2) if total > 0 else None,
        "cores": cores,
        "cpu_s": {name: round(after.processes[name] - used, 1) for name, used in before.processes.items() if name in after.processes},
        "pass_thread": {
            "on_core_s": round(after.pass_thread[0] - before.pass_thread[0], 2),
            "waiting_for_core_s": round(after.pass_thread[1] - before.pass_thread[1], 2),
        },
    }
