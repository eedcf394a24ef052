"""The checker's recorders: a watch of the whole prefix, a revision clock, and samples of every
simulator's own state and log, appended to the timeline while the soak runs."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import threading
import time
from typing import Any

from bench.chaos.fleet import Fleet, sim_state
from bench.chaos.invariants import Timeline


class Recorder:
    """Watches the whole prefix and samples the simulators, appending to the timeline."""

    def __init__(self, fleet: Fleet, timeline: Timeline, interval: float) -> None:
        self.fleet = fleet
        self.timeline = timeline
        self.interval = interval
        self.store = fleet.new_store()
        self._stop = threading.Event()
        self._offsets = {h: 0 for h in fleet.hosts}
        self._partial = {h: b"" for h in fleet.hosts}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(fleet.hosts), thread_name_prefix="chaos-sample")
        self._thread = threading.Thread(target=self._sample_loop, name="chaos-sampler", daemon=True)
        self._clock_thread = threading.Thread(target=self._clock_loop, name="chaos-clock", daemon=True)
        self.watch: Any = None
        self.resets = 0

    def start(self) -> None:
        snapshot = self.store.list_prefix(self.fleet.keyspace.prefix + "/")
        self._reset(snapshot, count=False)
        self.watch = self.store.watch_prefix(self.fleet.keyspace.prefix + "/", snapshot.revision + 1, on_events=self._events, on_reset=self._reset)
        self._thread.start()
        self._clock_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._clock_thread.join(10)
        if self.watch is not None:
            self.watch.cancel()
        self._pool.shutdown(wait=False)
        self.store.close()

    # watch
    def _reset(self, snapshot: Any, count: bool = True) -> None:
        """A fresh list (start, or the watch lost its place): record the current value of every
        tracked key, and absence for tracked keys the snapshot no longer holds."""
        now = time.time()
        with self.timeline.lock:
            if count:
                self.resets += 1
            present = {kv.key for kv in snapshot.items}
            for kv in snapshot.items:
                self._apply(now, kv.key, kv.value, kv.mod_revision, deleted=False)
            ks = self.fleet.keyspace
            for host in list(self.timeline.host_events):
                if ks.host(host) not in present:
                    self._apply(now, ks.host(host), None, snapshot.revision, deleted=True)
            for host, model in list(self.timeline.assignments):
                if ks.assignment(host, model) not in present:
                    self._apply(now, ks.assignment(host, model), None, snapshot.revision, deleted=True)

    def _events(self, events: list[Any]) -> None:
        now = time.time()
        with self.timeline.lock:
            for event in events:
                self._apply(now, event.key, event.value, event.mod_revision, deleted=event.kind != "put")

    def _apply(self, now: float, key: str, value: bytes | None, revision: int, *, deleted: bool) -> None:
        from tfleet.keyspace import Section
        from tfleet.schema import Assignment, ModelIntent

        ks, tl = self.fleet.keyspace, self.timeline
        parsed = ks.classify(key)
        if parsed.section is Section.HOSTS:
            host = parsed.leaf
            series = tl.host_events[host]
            if not series or series[-1][1] == deleted:
                series.append((revision, not deleted))
        elif parsed.section is Section.ASSIGNMENTS:
            try:
                host, model = ks.parse_host_model(key, "assignments")
            except ValueError:
                return
            versions: frozenset[int] | None = None
            if not deleted and value is not None:
                try:
                    policy = Assignment.model_validate_json(value).model_version_policy
                    versions = frozenset(policy.specific.versions) if policy.specific else frozenset()
                except ValueError:
                    versions = None
            tl.assignments[(host, model)].append((revision, versions))
        elif parsed.section is Section.MODELS:
            model = parsed.leaf
            replicas: int | None = None
            if not deleted and value is not None:
                try:
                    replicas = ModelIntent.model_validate_json(value).replicas
                except ValueError:
                    replicas = None
            tl.intents[model].append((now, replicas))
            tl.model_revisions[model].add(revision)
        elif parsed.section is Section.HISTORY:
            model, number = parsed.model or "", -1 if parsed.sequence is None else parsed.sequence
            if deleted:
                tl.history_deletes.append((now, key, model, number, tl.history_newest.get(model, 0)))
            else:
                tl.history_newest[model] = max(number, tl.history_newest.get(model, 0))

    # revision clock
    def _clock_loop(self) -> None:
        key = self.fleet.keyspace.leader()
        while not self._stop.wait(0.25):
            started = time.time()
            try:
                revision = self.store.list_prefix(key).revision
            except Exception:  # noqa: BLE001 (etcd faulted: no tick)
                continue
            with self.timeline.lock:
                self.timeline.clock.append((started, time.time(), revision))

    # simulators
    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            futures = {h: self._pool.submit(sim_state, self.fleet.rest[h]) for h in self.fleet.hosts}
            state = {h: f.result() for h, f in futures.items()}
            self._read_logs()
            with self.timeline.lock:
                self.timeline.samples.append((started, state))
            self._stop.wait(max(0.0, self.interval - (time.time() - started)))

    def _read_logs(self) -> None:
        for host in self.fleet.hosts:
            path = self.fleet.sims[host].log_path
            try:
                with open(path, "rb") as log:
                    log.seek(self._offsets[host])
                    data = log.read()
            except OSError:
                continue
            self._offsets[host] += len(data)
            lines = (self._partial[host] + data).split(b"\n")
            self._partial[host] = lines.pop()
            for line in lines:
                if b'"version_' not in line:
                    continue
                try:
                    record = json.loads(line)
                    at = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                except (ValueError, KeyError, TypeError):
                    continue
                with self.timeline.lock:
                    if record.get("event") == "version_unloaded":
                        self.timeline.unloads.append((at, host, str(record.get("model")), int(record.get("version", -1))))
                    elif record.get("event") == "version_available":
                        self.timeline.loads += 1
