"""Scale benchmark: the real controller on a real etcd, with 1,000 stand-in hosts and up to
100,000 models.

    python -m bench.scale [--hosts 1000] [--models 10000[,100000]] [--preset small|full]

One run per model count, each on a fresh etcd (in a temporary directory, deleted afterwards),
with ``tfleet controller`` as a process and the stand-in hosts (bench/standin.py) in ONE
other process. Printed, each next to a floor measured in the same run:

* floor: raw etcd put -> watch latency;
* convergence: from writing M intents (2 replicas each) until every model reports its
  replicas ready in ``modelstatus`` (the controller's own account: a replica counts once the
  stand-in wrote its status at the assignment's revision and the controller saw it);
* change -> ready: an intent's replicas 2 -> 3 through the CLI's Registry (compare-and-swap
  write + history entry) until modelstatus shows the third replica ready, p50/p99 over
  --changes changes, with only 10 models (the floor) and at scale;
* writes per one-model change (etcd's own put/delete/txn/range counters, and the bytes etcd
  sent to clients, over a quiet window around one change);
* after --history-edits intent edits (history grows): a new model placed, and ready;
* --loss of the hosts die silently (their leases are no longer renewed): seconds until
  every model is back at its wanted ready replicas, counted from the moment etcd expired
  the last of those leases (and from the last renewal);
* the controller's RSS and CPU seconds (/proc), etcd's db size, and the warnings and errors
  in the controller's log (size errors counted apart).

Intents of the M models are written as plain puts in transactions of 100 (what
``etcdctl txn`` would do; the controller records their history entries itself), or with
``--intent-writer registry``: the intent and its history entry in one transaction per model,
as the CLI's Registry writes them, 50 models per transaction.

Targets (issue): 10,000 models converge < 60 s, 100,000 < 10 min; change -> ready p99 < 1 s
at 10,000 models; 10 % host loss re-placed < TTL + 5 s; controller RSS < 1 GB at 100,000
models; no etcd call ever fails for size.

Everything runs on loopback and is stopped on the way out; every phase has a deadline
(--timeout); a phase that times out is reported with how far it got, and the phases that
depend on it are skipped.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack

from bench.agent_latency import measure_floor, percentile, proc_cpu_seconds, proc_rss_mb
from bench.standin import host_names
from tfleet import logs, schema
from tfleet.etcd_local import LocalEtcd, free_port
from tfleet.keyspace import Keyspace
from tfleet.procs import Daemon, wait_for
from tfleet.registry import Registry
from tfleet.schema import HistoryEntry, ModelIntent
from tfleet.store import Compare, EtcdSettings, EtcdStore, Put, StoreError, WatchEvent

KS = Keyspace()
GIB = 1024**3
# etcd settings of the run (recorded in the output): a large fleet needs a bigger quota than
# the 2 GiB default, and compaction, or the MVCC history of status writes fills it.
ETCD_SETTINGS = {
    "--quota-backend-bytes": str(8 * GIB),
    "--auto-compaction-mode": "periodic",
    "--auto-compaction-retention": "5m",
    "--max-request-bytes": str(int(1.5 * 1024**2)),  # etcd's default, stated
    "--max-txn-ops": "128",  # etcd's default, stated
    "--snapshot-count": "100000",  # etcd 3.5's default, stated
}
PRESETS = {"small": (50, [500]), "full": (1000, [10_000, 100_000])}
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
        ready = self._ready.get(model, frozenset())
        if len(ready - self.dead) >= self.wanted.get(model, 0):
            self._pending.discard(model)
        else:
            self._pending.add(model)

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
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PhaseTimeout(f"{what}: {len(self._pending)} of {len(self.wanted)} models not ready after {timeout:g} s")
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


# -- one run -------------------------------------------------------------------------------------


def run(hosts: int, models: int, options: argparse.Namespace, root: pathlib.Path, say: Callable[[str], None]) -> dict:
    result: dict = {
        "hosts": hosts,
        "models": models,
        "replicas": 2,
        "intent_writer": options.intent_writer,
        "lease_ttl": options.ttl,
        "etcd_settings": {**ETCD_SETTINGS, "--unsafe-no-fsync": options.unsafe_no_fsync},
        "phases": {},
    }
    timeout = options.timeout
    rng = random.Random(options.seed)
    with ExitStack() as stack:
        etcd = LocalEtcd(root / "etcd", unsafe_no_fsync=options.unsafe_no_fsync, extra_args=[f"{k}={v}" for k, v in ETCD_SETTINGS.items()])
        etcd.start()
        stack.callback(etcd.stop)
        store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,), call_timeout=10.0))
        stack.callback(store.close)
        metrics = EtcdMetrics(etcd)
        registry = Registry(store, KS)

        floor = measure_floor(store, 200)
        result["floor_put_watch_ms"] = ms(floor)
        say(
            f"  floor    etcd put -> watch                 p50 {result['floor_put_watch_ms']['p50']:8.1f} ms  p99 {result['floor_put_watch_ms']['p99']:8.1f} ms"
        )

        tracker = ReadyTracker(store)
        stack.callback(tracker.close)
        started = time.perf_counter()
        standins = Standins(etcd.client_url, hosts, options.ttl, root / "standin.log")
        stack.callback(standins.stop)
        standins.expect("ready", timeout)
        say(f"  {hosts} stand-in hosts registered in {time.perf_counter() - started:.1f} s")

        controller_log = root / "controller.log"
        controller = Daemon(
            "controller",
            [
                "controller",
                "--id",
                "bench-ctl",
                "--etcd",
                etcd.client_url,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(free_port()),
                "--lease-ttl",
                str(options.controller_ttl),
                "--etcd-timeout",
                str(options.controller_etcd_timeout),
                "--log-level",
                "info",
            ],
            controller_log,
        )
        controller.start()
        stack.callback(controller.stop)
        result["controller_command"] = "tfleet " + " ".join(controller.args)
        wait_for(lambda: store.get(KS.leader()) is not None, timeout, "the controller to lead")

        phases = result["phases"]
        try:
            # -- floor: change -> ready with 10 models ------------------------------------------
            floor_models = [f"f{i:02d}" for i in range(10)]
            write_intents(store, floor_models, options.intent_writer)
            tracker.want({m: 2 for m in floor_models})
            tracker.wait_all_ready(timeout, "10 floor models")
            lat = change_latencies(store, registry, tracker, floor_models, options.changes, timeout)
            phases["change_to_ready_10_models_ms"] = ms(lat)
            say(
                f"  floor    change -> ready, 10 models        p50 {phases['change_to_ready_10_models_ms']['p50']:8.1f} ms  p99 {phases['change_to_ready_10_models_ms']['p99']:8.1f} ms"
            )
            phases["writes_per_change_10_models"] = writes_per_change(store, registry, tracker, metrics, floor_models[0], options.settle, timeout)
            say(f"  floor    one change at 10 models: {phases['writes_per_change_10_models']}")

            # -- convergence ---------------------------------------------------------------------
            names = [model_name(i) for i in range(models)]
            cpu_before = controller_usage(controller)["cpu_s"]
            sent = time.perf_counter()
            write_intents(store, names, options.intent_writer)
            written = time.perf_counter() - sent
            tracker.want({m: 2 for m in names})
            try:
                done = tracker.wait_all_ready(timeout, f"{models} models")
                phases["converge_s"] = round(done - sent, 1)
                say(f"  converge {models} models x 2 replicas: {phases['converge_s']} s (intents written in {written:.1f} s)")
            finally:
                phases["converge_controller_cpu_s"] = round((controller_usage(controller)["cpu_s"] or 0) - (cpu_before or 0), 1)
                phases["after_converge"] = {"controller": controller_usage(controller), "etcd": etcd_size(metrics)}
                say(f"  after converging: controller {phases['after_converge']['controller']}, etcd {phases['after_converge']['etcd']}")
                try:
                    phases["after_converge"]["sections"] = section_sizes(store)
                except StoreError as exc:
                    phases["after_converge"]["sections"] = f"failed: {exc}"
                say(f"  keys     {phases['after_converge']['sections']}")

            # -- change -> ready at scale -------------------------------------------------------
            sample = rng.sample(names, options.changes)
            lat = change_latencies(store, registry, tracker, sample, options.changes, timeout)
            phases["change_to_ready_ms"] = ms(lat)
            ratio = phases["change_to_ready_ms"]["p99"] / max(phases["change_to_ready_10_models_ms"]["p99"], 0.001)
            say(
                f"  scale    change -> ready, {models} models  p50 {phases['change_to_ready_ms']['p50']:8.1f} ms  p99 {phases['change_to_ready_ms']['p99']:8.1f} ms"
                f"  ({ratio:.1f} x the 10-model p99)"
            )
            phases["writes_per_change"] = writes_per_change(store, registry, tracker, metrics, names[1], options.settle, timeout)
            say(f"  scale    one change at {models} models: {phases['writes_per_change']}")

            # -- history grows, then a new model -------------------------------------------------
            history_models = names[-options.history_models :]
            sent = time.perf_counter()
            for i in range(options.history_edits):
                model = history_models[i % len(history_models)]
                registry.apply_intent(model, intent(model, 2, description=f"edit {i}"), author="bench")
                tracker.want({model: 2})
            phases["history_edits"] = {"edits": options.history_edits, "models": len(history_models), "seconds": round(time.perf_counter() - sent, 1)}
            tracker.wait_all_ready(timeout, "after the history edits")
            new = "new-after-history"
            tracker.watch_model(new, 2)
            sent = time.perf_counter()
            revision = registry.apply_intent(new, intent(new, 2), author="bench")
            tracker.want({new: 2})
            tracker.wait_ready(new, 2, timeout, revision)
            placed_at, ready_at = tracker.timings(new)
            phases["new_model_after_history_s"] = {
                "placed": round(placed_at - sent, 3) if placed_at else None,
                "ready": round(ready_at - sent, 3) if ready_at else None,
            }
            say(
                f"  history  {options.history_edits} edits in {phases['history_edits']['seconds']} s; then a new model placed in "
                f"{phases['new_model_after_history_s']['placed']} s, ready in {phases['new_model_after_history_s']['ready']} s"
            )

            # -- silent loss of hosts ------------------------------------------------------------
            victims = sorted(rng.sample(host_names(hosts), max(1, round(hosts * options.loss))))
            gone: dict[str, float] = {}
            gone_lock = threading.Lock()

            def on_hosts(events: list[WatchEvent]) -> None:
                now = time.perf_counter()
                with gone_lock:
                    for e in events:
                        name = KS.classify(e.key).leaf
                        if e.kind == "delete" and name in victim_set:
                            gone.setdefault(name, now)

            victim_set = set(victims)
            hosts_watch = store.watch_prefix(KS.hosts_prefix(), store.list_prefix(KS.leader()).revision + 1, on_events=on_hosts, on_reset=lambda s: None)
            try:
                killed_at = time.perf_counter()
                for start in range(0, len(victims), 200):
                    standins.command("kill " + " ".join(victims[start : start + 200]))
                tracker.set_dead(frozenset(victims))
                wait_for(lambda: len(gone) == len(victims), options.ttl * 3 + timeout, f"{len(victims)} leases to expire", interval=0.1)
                expired_at = max(gone.values())
                done = tracker.wait_all_ready(timeout, f"{len(victims)} hosts lost")
            finally:
                hosts_watch.cancel()
            phases["host_loss"] = {
                "hosts_lost": len(victims),
                "leases_expired_after_s": round(expired_at - killed_at, 1),
                "ready_after_expiry_s": round(done - expired_at, 1),
                "ready_after_kill_s": round(done - killed_at, 1),
                "target_s": options.ttl + 5,
            }
            say(
                f"  loss     {len(victims)} hosts silent: leases expired after {phases['host_loss']['leases_expired_after_s']} s, "
                f"every model ready again {phases['host_loss']['ready_after_expiry_s']} s later ({phases['host_loss']['ready_after_kill_s']} s after the kill)"
            )
        except (PhaseTimeout, TimeoutError, StoreError) as exc:
            phases["failed"] = f"{type(exc).__name__}: {exc}"
            say(f"  FAILED   {phases['failed']}")
        result["final"] = {"controller": controller_usage(controller), "etcd": etcd_size(metrics), "controller_running": controller.running}
        standins.command("stats")
        try:
            result["standins"] = standins.expect("stats", 30)
        except (PhaseTimeout, RuntimeError) as exc:
            result["standins"] = str(exc)
        say(f"  final    controller {result['final']['controller']}, etcd {result['final']['etcd']}")
        controller.stop()
        result["controller_log"] = scan_log(controller_log)
        say(f"  log      size errors: {result['controller_log']['size_errors']}; warnings/errors: {result['controller_log']['warnings_errors']}")
        for example in result["controller_log"]["size_error_examples"]:
            say(f"           {example}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="small: 50 hosts x 500 models; full: 1,000 hosts x 10,000 and 100,000 models")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--models", default="10000", help="model counts, comma-separated: one fresh run each")
    parser.add_argument("--changes", type=int, default=50, help="intent changes measured (at 10 models and at scale)")
    parser.add_argument("--history-edits", type=int, default=4000)
    parser.add_argument("--history-models", type=int, default=40, help="models the history edits are spread over")
    parser.add_argument("--loss", type=float, default=0.1, help="share of hosts that die silently")
    parser.add_argument("--ttl", type=int, default=10, help="the stand-in hosts' lease TTL, seconds")
    parser.add_argument("--controller-ttl", type=int, default=10)
    parser.add_argument("--controller-etcd-timeout", type=float, default=2.0, help="the controller's --etcd-timeout")
    parser.add_argument("--intent-writer", choices=("etcdctl", "registry"), default="etcdctl")
    parser.add_argument("--settle", type=float, default=1.5, help="quiet seconds after a change when counting its writes")
    parser.add_argument("--timeout", type=float, default=900, help="deadline of each phase, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unsafe-no-fsync", action="store_true", help="run etcd without fsync (faster disks than this machine's)")
    parser.add_argument("--keep", type=pathlib.Path, help="keep etcd's data and the logs under this directory")
    parser.add_argument("--json", action="store_true", help="print only the JSON results")
    options = parser.parse_args(argv)
    logs.configure("warning")  # the Registry logs every change it writes
    hosts, counts = options.hosts, [int(x) for x in options.models.split(",")]
    if options.preset:
        hosts, counts = PRESETS[options.preset]
    say = (lambda line: None) if options.json else (lambda line: print(line, flush=True))
    results = []
    for count in counts:
        say(f"{hosts} hosts x {count} models (2 replicas each), intents written {options.intent_writer}-style")
        if options.keep:
            root = options.keep / f"{hosts}x{count}"
            root.mkdir(parents=True, exist_ok=True)
            results.append(run(hosts, count, options, root, say))
        else:
            root = pathlib.Path(tempfile.mkdtemp(prefix="tfleet-scale-"))
            try:
                results.append(run(hosts, count, options, root, say))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(results[-1]), flush=True)
    return 0 if all("failed" not in r["phases"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
