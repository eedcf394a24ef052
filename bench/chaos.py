"""Chaos soak: inject faults at random while intents change, and check invariants throughout.

    python -m bench.chaos --seed 1 --duration 600 --hosts 4 --models 8

Starts a real fleet, every part a separate process: a 3-member etcd cluster
(LocalEtcdCluster), 2 controllers, and per host one `tfleet agent` with its own
`tfleet tfs-sim`. Every model gets an intent (2 replicas) through tfleet.registry.Registry.
Then, for --duration seconds:

* a writer keeps changing intents (served version, replicas 2 <-> 3, version labels), each
  change a compare-and-swap through the Registry, recording what it wrote and what etcd
  answered;
* a seeded scheduler injects one fault at a time, holds it, recovers it, and waits a random
  gap. The same --seed gives the same schedule (kinds, targets, holds, gaps; printed with
  --print-schedule). Faults (FAULT_KINDS):

  etcd_kill_leader      SIGKILL the raft leader member, start it again after the hold
  etcd_freeze_member    SIGSTOP the member the clients use (our own client's current one)
  etcd_rolling_restart  restart the three members one by one
  tfs_restart           SIGKILL one host's simulator, start it again empty (same ports)
  tfs_hang              SIGSTOP one host's simulator (past the agent's reload deadline)
  tfs_slow_reload       make one model's versions load slowly (longer than the agent's
                        reload deadline) and move it (new version, replicas 2 <-> 3)
  controller_kill       SIGKILL the leading controller, start it again after the hold
  controller_freeze     SIGSTOP the leading controller (up to 2 lease TTLs)
  agent_freeze          SIGSTOP one agent for longer than its lease TTL
  bad_values            garbage in models/chaos-junk, hostctl/<host> and
                        assignments/<host>/chaos-junk; deleted at recovery

* a checker records, continuously: a watch of the whole prefix (assignments, hosts, intents,
  history), every simulator's own state (which versions are AVAILABLE, from its metrics
  every --sample-interval) and every unload it performs (its `version_unloaded` log lines).

After the chaos phase the writer stops and the checker waits for convergence. The invariants
(evaluated from the recorded timeline, see `check_*` below and docs/operations.md "Chaos
soak" for the exact rules):

1. no intent or history entry lost: each model's intent in etcd is the writer's last
   successful write (or a later write whose outcome was unknown); every successful write and
   every intent change seen on the watch has a history entry; no history key is deleted;
2. no healthy host unloads a version it is still assigned;
3. never zero AVAILABLE replicas of a model wanted at >= 2 while >= 2 hosts are healthy and a
   healthy host was serving it;
4. convergence within --converge-bound seconds after the last fault's recovery and the last
   write: every model at its wanted replicas, each ready with the latest intent.

A host is *healthy* at time t when no host fault (tfs_restart, tfs_hang, agent_freeze) on it
was active within [t - grace, t] and its hosts/ key (its lease) was present throughout that
window; grace is --health-grace (default 10 s): the time a recovered host is given to get back
to normal.

Prints faults by kind, violations by kind (the first few in detail), the convergence time and
counts; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import datetime as dt
import json
import pathlib
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = (
    "etcd_kill_leader",
    "etcd_freeze_member",
    "etcd_rolling_restart",
    "tfs_restart",
    "tfs_hang",
    "tfs_slow_reload",
    "controller_kill",
    "controller_freeze",
    "agent_freeze",
    "bad_values",
)
HOST_FAULTS = frozenset({"tfs_restart", "tfs_hang", "agent_freeze"})
VIOLATION_KINDS = ("intent_lost", "history_missing", "history_deleted", "healthy_unload", "zero_available", "no_convergence")
JUNK_MODEL = "chaos-junk"
VERSIONS = (1, 2, 3, 4)  # the versions an "any" writer picks from
FORWARD_VERSIONS = 64  # version directories per model for a "forward" writer
EXTRA_LABEL = "prod"
INF = float("inf")


# -- the seeded schedule (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One planned fault: wait `gap` seconds after the previous recovery, inject, hold, recover.

    `target` indexes whatever the kind acts on (a host, a model, a garbage variant); faults
    that act on "the leader" or "the member in use" find it when they run.
    """

    index: int
    kind: str
    gap: float
    hold: float
    target: int
    load_seconds: float = 0.0  # tfs_slow_reload only


def _hold(rng: random.Random, kind: str, ttl: int) -> float:
    ranges = {
        "etcd_kill_leader": (2.0, 6.0),
        "etcd_freeze_member": (2.0, 8.0),
        "etcd_rolling_restart": (1.0, 3.0),  # pause between two members
        "tfs_restart": (0.0, 2.0),  # down time before the empty restart
        "tfs_hang": (3.0, 10.0),
        "tfs_slow_reload": (10.0, 20.0),
        "controller_kill": (1.0, 5.0),
        "controller_freeze": (2.0, 2.0 * ttl),
        "agent_freeze": (ttl + 2.0, ttl + 6.0),
        "bad_values": (3.0, 10.0),
    }
    low, high = ranges[kind]
    return round(rng.uniform(low, high), 2)


def make_schedule(
    seed: int, count: int, kinds: Sequence[str], hosts: int, models: int, ttl: int, gap: tuple[float, float] = (4.0, 12.0), reload_timeout: float = 4.0
) -> list[Fault]:
    """The first `count` faults of the schedule of `seed` (a pure function of its arguments)."""
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(unknown)} (known: {', '.join(FAULT_KINDS)})")
    rng = random.Random(seed)
    faults = []
    for index in range(count):
        kind = rng.choice(list(kinds))
        target_space = {"tfs_slow_reload": models, "bad_values": 1 << 16}.get(kind, hosts)
        faults.append(
            Fault(
                index=index,
                kind=kind,
                gap=round(rng.uniform(*gap), 2),
                hold=_hold(rng, kind, ttl),
                target=rng.randrange(target_space),
                load_seconds=round(rng.uniform(reload_timeout + 1.0, reload_timeout + 4.0), 2) if kind == "tfs_slow_reload" else 0.0,
            )
        )
    return faults


# -- the recorded timeline and the invariants (pure) -----------------------------------------------


@dataclass
class FaultRecord:
    kind: str
    host: str | None
    start: float
    end: float | None = None
    detail: str = ""
    error: str = ""


@dataclass
class WriteRecord:
    model: str
    at: float
    outcome: str  # "ok", "unknown" (etcd error: it may or may not have applied), "conflict"
    document: dict[str, Any]
    revision: int = 0


@dataclass(frozen=True)
class Violation:
    kind: str
    at: float
    detail: str

    def text(self) -> str:
        return f"{_clock(self.at)} {self.kind}: {self.detail}"


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Timeline:
    """Everything the checker saw, with wall-clock times (time.time(), as in the daemons' logs)."""

    faults: list[FaultRecord] = field(default_factory=list)
    # hosts/ key present or not, from (etcd revision of the change) on
    host_events: dict[str, list[tuple[int, bool]]] = field(default_factory=lambda: defaultdict(list))
    # (etcd revision, versions named; None: no assignment or unreadable), in revision order
    assignments: dict[tuple[str, str], list[tuple[int, frozenset[int] | None]]] = field(default_factory=lambda: defaultdict(list))
    # the revision clock: (read started, read answered, etcd revision it answered at). Our watch
    # may deliver a change late (its stream on a frozen member), so when a change happened is
    # taken from these linearizable reads, never from when the watch delivered it.
    clock: list[tuple[float, float, int]] = field(default_factory=list)
    intents: dict[str, list[tuple[float, int | None]]] = field(default_factory=lambda: defaultdict(list))
    model_revisions: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    # deleted history keys: (time, key, model, its sequence, the model's newest sequence then)
    history_deletes: list[tuple[float, str, str, int, int]] = field(default_factory=list)
    history_newest: dict[str, int] = field(default_factory=dict)
    # (time, {host: {model: AVAILABLE versions}} with None for a simulator that did not answer)
    samples: list[tuple[float, dict[str, dict[str, frozenset[int]] | None]]] = field(default_factory=list)
    unloads: list[tuple[float, str, str, int]] = field(default_factory=list)
    loads: int = 0
    writes: list[WriteRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def value_at(series: Sequence[tuple[float, Any]], t: float, default: Any = None) -> Any:
    """The value a series (sorted by time or revision) holds at t."""
    index = bisect.bisect_right([at for at, _ in series], t) - 1
    return series[index][1] if index >= 0 else default


def committed_after(clock: Sequence[tuple[float, float, int]], revision: int) -> float:
    """The latest time revision was certainly not yet committed: the start of the last read
    that answered below it (-inf if none)."""
    return max((started for started, _, seen in clock if seen < revision), default=-INF)


def committed_by(clock: Sequence[tuple[float, float, int]], revision: int) -> float:
    """A time by which revision was certainly committed: the end of the first read that
    answered at or above it (inf if none)."""
    return min((answered for _, answered, seen in clock if seen >= revision), default=INF)


def revision_by(clock: Sequence[tuple[float, float, int]], t: float) -> int:
    """The highest revision certainly committed at time t (answered by a read that ended by t)."""
    return max((seen for _, answered, seen in clock if answered <= t), default=0)


def revision_bound(clock: Sequence[tuple[float, float, int]], t: float) -> float:
    """No revision above this was committed by time t: the answer of the first read started
    at or after t (inf if none)."""
    return min((seen for started, _, seen in clock if started >= t), default=INF)


def unhealthy_intervals(timeline: Timeline, host: str, grace: float, since: float) -> list[tuple[float, float]]:
    """Intervals in which `host` counts as not healthy: each host fault on it, from its start to
    its recovery + grace, and each absence of its hosts/ key (lease lost), from the earliest time
    the delete may have been committed to the latest its return may have been, + grace."""
    intervals = [(f.start, (f.end if f.end is not None else INF) + grace) for f in timeline.faults if f.host == host]
    gone_at: float | None = None
    present = False
    for revision, now_present in timeline.host_events.get(host, []):
        if present and not now_present:
            gone_at = committed_after(timeline.clock, revision)
        elif not present and now_present and gone_at is not None:
            intervals.append((gone_at, committed_by(timeline.clock, revision) + grace))
            gone_at = None
        present = now_present
    if gone_at is not None:
        intervals.append((gone_at, INF))
    if not timeline.host_events.get(host):
        intervals.append((since, INF))  # never registered
    return intervals


def healthy_over(intervals: Iterable[tuple[float, float]], start: float, end: float) -> bool:
    return all(b < start or a > end for a, b in intervals)


def check_unloads(timeline: Timeline, hosts: Sequence[str], *, since: float, grace: float, lookback: float, lag: float) -> list[Violation]:
    """Invariant 2: an unload of version v of model m at time t by a host healthy over
    [t - lookback, t] is a violation when every value its assignment of m may have held in
    [t - lookback, t + lag] named v: the value at the highest revision certainly committed by
    t - lookback, and every later one up to the highest revision that may have been committed by
    t + lag (from the revision clock, not from when our watch delivered the change).

    lookback covers an agent acting late on an older assignment that did not name v (a busy
    agent, a slow TF Serving); lag covers clock skew between the simulator's log and our reads.
    """
    unhealthy = {h: unhealthy_intervals(timeline, h, grace, since) for h in hosts}
    found = []
    for at, host, model, version in timeline.unloads:
        if at < since or host not in unhealthy or not healthy_over(unhealthy[host], at - lookback, at):
            continue
        series = timeline.assignments.get((host, model), [])
        low, high = revision_by(timeline.clock, at - lookback), revision_bound(timeline.clock, at + lag)
        values = [value_at(series, low)] + [v for r, v in series if low < r <= high]
        if all(value is not None and version in value for value in values):
            found.append(
                Violation(
                    "healthy_unload",
                    at,
                    f"host {host} unloaded version {version} of {model} while assigned it (assignment revisions {low}..{high}: {sorted(values[-1] or ())})",
                )
            )
    return found


def check_zero_available(
    timeline: Timeline, hosts: Sequence[str], *, since: float, grace: float, min_samples: int = 2, min_seconds: float = 1.0
) -> list[Violation]:
    """Invariant 3. A model m is *covered* at sample time t when its intent wants >= 2 replicas,
    >= 2 hosts are healthy, and at least one of the hosts that served m (had a version
    AVAILABLE) at the last sample where any host did is healthy at t. A violation is an episode
    of >= min_samples consecutive samples, spanning >= min_seconds, in which a covered m has no
    version AVAILABLE on any simulator. Models that never served since `since` are skipped
    (still loading for the first time).

    What this allows (make-before-break windows): a model may lose replicas, but never its
    last one while a healthy host holds it; the replicas on faulted hosts don't count.
    """
    unhealthy = {h: unhealthy_intervals(timeline, h, grace, since) for h in hosts}
    last_served: dict[str, set[str]] = {}
    streak: dict[str, list[float]] = defaultdict(list)
    reported: set[str] = set()
    found = []
    for at, state in timeline.samples:
        if at < since:
            continue
        healthy = {h for h in hosts if healthy_over(unhealthy[h], at, at)}
        serving: dict[str, set[str]] = defaultdict(set)
        for host, models in state.items():
            for model, versions in (models or {}).items():
                if versions:
                    serving[model].add(host)
        for model in timeline.intents:
            if model == JUNK_MODEL:
                continue
            wanted = value_at(timeline.intents[model], at)
            covered = wanted is not None and wanted >= 2 and len(healthy) >= 2 and bool(last_served.get(model, set()) & healthy)
            if serving.get(model) or not covered:
                if serving.get(model):
                    last_served[model] = serving[model]
                streak[model] = []
                reported.discard(model)
                continue
            times = streak[model]
            times.append(at)
            if model not in reported and len(times) >= min_samples and times[-1] - times[0] >= min_seconds:
                reported.add(model)
                found.append(
                    Violation(
                        "zero_available",
                        times[0],
                        f"model {model} (wanted {wanted}) has no AVAILABLE replica on any simulator; it was last served by {sorted(last_served[model])}; healthy hosts: {sorted(healthy)}",
                    )
                )
    return found


def check_intents(timeline: Timeline, stored: dict[str, tuple[int, Any]], history: dict[str, dict[int, Any]], keep: int = 100) -> list[Violation]:
    """Invariant 1. `stored`: model -> (mod_revision, parsed intent document or None) now;
    `history`: model -> {revision: entry's `new` document} of every history entry.

    Each model's stored intent must be the writer's last successful write, or a later write
    whose outcome was unknown (an etcd error: it may have applied); every successful write and
    every change seen on the watch must have a history entry for its revision (a successful
    write's entry must hold what was written); no history key may be deleted, except by the
    retention (`keep`, the recorder's --history-keep): a key more than `keep` entries older
    than the newest one. Revisions older than a pruned model's oldest entry are not checked.
    """
    found = []
    pruned: set[str] = set()
    for at, key, model, sequence, newest in timeline.history_deletes:
        if 0 <= sequence <= newest - keep:
            pruned.add(model)
        else:
            found.append(Violation("history_deleted", at, f"history key {key} was deleted (the newest entry of {model} was {newest}, retention keeps {keep})"))
    by_model: dict[str, list[WriteRecord]] = defaultdict(list)
    for write in timeline.writes:
        by_model[write.model].append(write)
    for model, writes in sorted(by_model.items()):
        ok = [w for w in writes if w.outcome == "ok"]
        revision, document = stored.get(model, (0, None))
        if ok:
            last = max(ok, key=lambda w: w.revision)
            later_unknown = [w.document for w in writes if w.outcome == "unknown" and w.at > last.at]
            if not ((revision == last.revision and document == last.document) or (revision > last.revision and document in later_unknown)):
                found.append(
                    Violation(
                        "intent_lost",
                        time.time(),
                        f"model {model}: etcd holds revision {revision} {json.dumps(document)}, the writer's last successful write was revision {last.revision} {json.dumps(last.document)}",
                    )
                )
        entries = history.get(model, {})
        oldest = min((r for r in entries if r is not None), default=0) if model in pruned else 0
        for write in ok:
            if write.revision < oldest:
                continue
            if write.revision not in entries:
                found.append(Violation("history_missing", write.at, f"model {model}: no history entry for the write of revision {write.revision}"))
            elif entries[write.revision] != write.document:
                found.append(
                    Violation(
                        "history_missing",
                        write.at,
                        f"model {model}: history entry of revision {write.revision} holds {json.dumps(entries[write.revision])}, not what was written",
                    )
                )
        known = {w.revision for w in ok}
        for seen in sorted(timeline.model_revisions.get(model, set()) - known):
            if seen not in entries and seen >= oldest:
                found.append(Violation("history_missing", time.time(), f"model {model}: no history entry for the change at revision {seen} seen on the watch"))
    return found


# -- the fleet -----------------------------------------------------------------------------------


@dataclass
class Settings:
    seed: int = 1
    duration: float = 600.0
    hosts: int = 4
    models: int = 8
    kinds: tuple[str, ...] = FAULT_KINDS
    lease_ttl: int = 6
    etcd_timeout: float = 1.0
    reload_timeout: float = 4.0
    gap: tuple[float, float] = (4.0, 12.0)
    write_interval: tuple[float, float] = (0.5, 3.0)
    sample_interval: float = 0.5
    health_grace: float = 10.0
    unload_lookback: float = 30.0
    watch_lag: float = 5.0
    converge_bound: float = 30.0
    startup_timeout: float = 180.0
    max_faults: int = 1000
    # "any": a new version is any other of VERSIONS, so a version removed earlier comes back
    # (a rollback); "forward": always a version never served before (upgrades only)
    writer_mode: str = "any"
    root: pathlib.Path | None = None
    keep: bool = False
    verbose: bool = True


class Fleet:
    """The processes and their handles: etcd cluster, simulators, agents, controllers."""

    def __init__(self, settings: Settings, root: pathlib.Path) -> None:
        from tfleet.etcd_local import LocalEtcdCluster, free_port
        from tfleet.keyspace import Keyspace
        from tfleet.procs import Daemon
        from tfleet.sim.fixtures import make_model
        from tfleet.store import EtcdSettings, EtcdStore

        self.settings = settings
        self.root = root
        self.logs = root / "logs"
        self.models_dir = root / "models"
        self.keyspace = Keyspace()
        self.hosts = [f"h{i + 1}" for i in range(settings.hosts)]
        self.models = [f"m{i + 1}" for i in range(settings.models)]
        self.versions = tuple(range(1, FORWARD_VERSIONS + 1)) if settings.writer_mode == "forward" else VERSIONS
        for model in self.models:
            make_model(self.models_dir, model, self.versions, memory_mb=64)
        self.cluster = LocalEtcdCluster(root / "etcd", 3, name="chaos")
        self.endpoints = ",".join(self.cluster.client_urls)
        ttl, timeout = settings.lease_ttl, settings.etcd_timeout
        self.rest: dict[str, str] = {}
        self.sims: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}
        for host in self.hosts:
            grpc, rest = free_port(), free_port()
            self.rest[host] = f"127.0.0.1:{rest}"
            self.sims[host] = Daemon(
                f"tfs-{host}",
                [
                    "tfs-sim",
                    "--grpc-port",
                    str(grpc),
                    "--rest-port",
                    str(rest),
                    "--file-system-poll-wait-seconds",
                    "0.2",
                    "--load-retry-interval-seconds",
                    "0.5",
                    "--max-load-retries",
                    "2",
                ],
                self.logs / f"tfs-{host}.log",
            )
            self.agents[host] = Daemon(
                f"agent-{host}",
                [
                    "agent",
                    "--host",
                    host,
                    "--etcd",
                    self.endpoints,
                    "--tfs-grpc",
                    f"127.0.0.1:{grpc}",
                    "--tfs-rest",
                    f"127.0.0.1:{rest}",
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    str(free_port()),
                    "--lease-ttl",
                    str(ttl),
                    "--etcd-timeout",
                    f"{timeout:g}",
                    "--reload-timeout",
                    f"{settings.reload_timeout:g}",
                    "--status-timeout",
                    f"{min(2.0, ttl / 3):g}",
                    "--resync-interval",
                    "5",
                    "--state-dir",
                    str(root / "state" / host),
                    "--memory-mb",
                    "4096",
                    "--log-level",
                    "info",
                ],
                self.logs / f"agent-{host}.log",
            )
        self.controllers = {
            cid: Daemon(
                f"controller-{cid}",
                [
                    "controller",
                    "--id",
                    cid,
                    "--etcd",
                    self.endpoints,
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    str(free_port()),
                    "--lease-ttl",
                    str(ttl),
                    "--etcd-timeout",
                    f"{timeout:g}",
                    "--resync-interval",
                    "5",
                    "--log-level",
                    "info",
                ],
                self.logs / f"controller-{cid}.log",
            )
            for cid in ("c1", "c2")
        }
        self._store_settings = EtcdSettings(endpoints=self.cluster.client_urls, call_timeout=2.0)
        self._store_class = EtcdStore
        self.store: Any = None

    def new_store(self) -> Any:
        return self._store_class(self._store_settings)

    def daemons(self) -> list[Any]:
        return [*self.sims.values(), *self.agents.values(), *self.controllers.values()]

    def start(self) -> None:
        self.cluster.start(timeout=60)
        self.store = self.new_store()
        for daemon in self.sims.values():
            daemon.start()
        for host in self.hosts:
            wait_until(lambda h=host: sim_state(self.rest[h]) is not None, 60, f"simulator of {host} to answer")
        for daemon in [*self.agents.values(), *self.controllers.values()]:
            daemon.start()

    def stop(self) -> None:
        for daemon in [*self.controllers.values(), *self.agents.values(), *self.sims.values()]:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
            daemon.stop(grace=10)
        if self.store is not None:
            self.store.close()
        for member in self.cluster.members:
            member.resume()
        self.cluster.stop()

    def dead(self) -> list[str]:
        return [d.name for d in self.daemons() if d.process is not None and not d.running]

    def leader_controller(self) -> str | None:
        from tfleet import schema
        from tfleet.schema import LeaderRecord

        try:
            kv = self.store.get(self.keyspace.leader())
            return schema.parse(LeaderRecord, kv.value, kv.key).id if kv else None
        except Exception:  # noqa: BLE001 (etcd down or a bad value: no leader known)
            return None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll predicate (exceptions count as "not yet") until truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


_STATE_LINE = re.compile(r"^tensorflow_serving_model_version_state\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sim_state(rest: str, timeout: float = 1.5) -> dict[str, frozenset[int]] | None:
    """{model: AVAILABLE versions} as the simulator itself reports it, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{rest}/monitoring/prometheus/metrics", timeout=timeout) as response:
            text = response.read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    available: dict[str, set[int]] = defaultdict(set)
    for line in text.splitlines():
        match = _STATE_LINE.match(line)
        if not match or float(match["value"]) != 1.0:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("state") == "AVAILABLE":
            available[labels["model_name"]].add(int(labels["model_version"]))
    return {model: frozenset(versions) for model, versions in available.items()}


def intent_document(fleet: Fleet, model: str, version: int, replicas: int, extra_label: bool) -> dict[str, Any]:
    from tfleet.schema import ModelIntent

    labels = {"stable": version, **({EXTRA_LABEL: version} if extra_label else {})}
    intent = ModelIntent.model_validate(
        {
            "base_path": str(fleet.models_dir / model),
            "model_version_policy": {"specific": {"versions": [version]}},
            "version_labels": labels,
            "replicas": replicas,
            "memory_mb": 256,
            "owner": "chaos",
        }
    )
    return intent.model_dump(mode="json")


# -- the checker's recorders --------------------------------------------------------------------


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
        from tfleet.schema import Assignment, ModelIntent

        ks, tl = self.fleet.keyspace, self.timeline
        if key.startswith(ks.hosts_prefix()):
            host = key[len(ks.hosts_prefix()) :]
            series = tl.host_events[host]
            if not series or series[-1][1] == deleted:
                series.append((revision, not deleted))
        elif key.startswith(ks.assignments_prefix()):
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
        elif key.startswith(ks.models_prefix()):
            model = key[len(ks.models_prefix()) :]
            replicas: int | None = None
            if not deleted and value is not None:
                try:
                    replicas = ModelIntent.model_validate_json(value).replicas
                except ValueError:
                    replicas = None
            tl.intents[model].append((now, replicas))
            tl.model_revisions[model].add(revision)
        elif key.startswith(ks.history_prefix()):
            model, _, sequence = key[len(ks.history_prefix()) :].partition("/")
            number = int(sequence) if sequence.isdigit() else -1
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


class Writer:
    """Keeps changing intents through the Registry (compare-and-swap), recording every outcome."""

    def __init__(self, fleet: Fleet, timeline: Timeline, seed: int, interval: tuple[float, float]) -> None:
        from tfleet.registry import Registry

        self.fleet = fleet
        self.timeline = timeline
        self.rng = random.Random(seed * 7919 + 1)
        self.interval = interval
        self.store = fleet.new_store()
        self.registry = Registry(self.store, fleet.keyspace)
        self.lock = threading.Lock()
        self.wanted: dict[str, dict[str, Any]] = {}
        self.highest: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-writer", daemon=True)

    def create_all(self) -> None:
        for model in self.fleet.models:
            document = intent_document(self.fleet, model, 1, 2, False)
            wait_until(lambda m=model, d=document: self.write(m, d) == "ok", 60, f"the intent of {model} to be written")

    def write(self, model: str, document: dict[str, Any]) -> str:
        from tfleet.registry import ConflictError
        from tfleet.schema import ModelIntent
        from tfleet.store import StoreError

        with self.lock:
            at = time.time()
            try:
                revision = self.registry.apply_intent(model, ModelIntent.model_validate(document), author="chaos-writer")
                outcome = "ok"
            except ConflictError:
                revision, outcome = 0, "conflict"
            except StoreError:
                revision, outcome = 0, "unknown"
            with self.timeline.lock:
                self.timeline.writes.append(WriteRecord(model, at, outcome, document, revision))
            if outcome != "conflict":
                self.wanted[model] = document
            return outcome

    def change(self, model: str, kind: str) -> str:
        current = self.wanted[model]
        version = current["model_version_policy"]["specific"]["versions"][0]
        replicas = current["replicas"]
        extra = EXTRA_LABEL in current["version_labels"]
        if kind == "version":
            if self.fleet.settings.writer_mode == "forward":
                self.highest[model] = min(self.highest.get(model, 1) + 1, len(self.fleet.versions))
                version = self.highest[model]
            else:
                version = self.rng.choice([v for v in VERSIONS if v != version])
        elif kind == "replicas":
            replicas = 5 - replicas  # 2 <-> 3
        else:
            extra = not extra
        return self.write(model, intent_document(self.fleet, model, version, replicas, extra))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.interval)):
            self.change(self.rng.choice(self.fleet.models), self.rng.choice(("version", "version", "replicas", "labels")))


# -- fault injection --------------------------------------------------------------------------------


class Injector:
    """Runs one fault: inject, hold, recover; returns its record (host set for host faults)."""

    def __init__(self, fleet: Fleet, writer: Writer, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.fleet, self.writer, self.stop, self.log = fleet, writer, stop, log

    def hold(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def run(self, fault: Fault) -> FaultRecord:
        host = self.fleet.hosts[fault.target % len(self.fleet.hosts)] if fault.kind in HOST_FAULTS else None
        record = FaultRecord(fault.kind, host, time.time())
        try:
            record.detail = getattr(self, fault.kind)(fault, host)
        except Exception as exc:  # noqa: BLE001 (a fault that cannot be injected or recovered is reported, the soak goes on)
            record.error = f"{type(exc).__name__}: {exc}"
        record.end = time.time()
        return record

    def etcd_kill_leader(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        index = cluster.leader(timeout=30)
        cluster.kill(index)
        self.hold(fault.hold)
        cluster.start_member(index, timeout=60)
        return f"killed member {index} (leader), {fault.hold:g} s down"

    def etcd_freeze_member(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        in_use = self.writer.store.current_endpoint
        index = next((i for i, url in enumerate(cluster.client_urls) if url in in_use), 0)
        cluster.pause(index)
        try:
            self.hold(fault.hold)
        finally:
            cluster.resume(index)
        return f"froze member {index} (in use) for {fault.hold:g} s"

    def etcd_rolling_restart(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        for index in range(len(cluster.members)):
            cluster.restart(index, timeout=60)
            self.hold(fault.hold)
        return f"restarted members one by one, {fault.hold:g} s apart"

    def tfs_restart(self, fault: Fault, host: str) -> str:
        sim = self.fleet.sims[host]
        sim.kill()
        self.hold(fault.hold)
        sim.start()
        wait_until(lambda: sim_state(self.fleet.rest[host]) is not None, 60, f"the restarted simulator of {host}")
        return f"restarted the simulator of {host} empty after {fault.hold:g} s"

    def tfs_hang(self, fault: Fault, host: str) -> str:
        sim = self.fleet.sims[host]
        sim.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            sim.signal(signal.SIGCONT)
        return f"froze the simulator of {host} for {fault.hold:g} s"

    def tfs_slow_reload(self, fault: Fault, host: None) -> str:
        from tfleet.sim.fixtures import write_version

        model = self.fleet.models[fault.target % len(self.fleet.models)]
        for version in self.fleet.versions:
            write_version(self.fleet.models_dir / model, version, load_seconds=fault.load_seconds, memory_mb=64)
        try:
            outcomes = [self.writer.change(model, "replicas"), self.writer.change(model, "version")]
            self.hold(fault.hold)
        finally:
            for version in self.fleet.versions:
                write_version(self.fleet.models_dir / model, version, memory_mb=64)
        return f"{model} loads in {fault.load_seconds:g} s for {fault.hold:g} s; moved it (writes: {', '.join(outcomes)})"

    def _controller(self) -> tuple[str, Any]:
        cid = self.fleet.leader_controller() or "c1"
        return cid, self.fleet.controllers.get(cid, self.fleet.controllers["c1"])

    def controller_kill(self, fault: Fault, host: None) -> str:
        cid, daemon = self._controller()
        daemon.kill()
        self.hold(fault.hold)
        daemon.start()
        return f"killed controller {cid}, restarted after {fault.hold:g} s"

    def controller_freeze(self, fault: Fault, host: None) -> str:
        cid, daemon = self._controller()
        daemon.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            daemon.signal(signal.SIGCONT)
        return f"froze controller {cid} for {fault.hold:g} s"

    def agent_freeze(self, fault: Fault, host: str) -> str:
        agent = self.fleet.agents[host]
        agent.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            agent.signal(signal.SIGCONT)
        return f"froze the agent of {host} for {fault.hold:g} s"

    GARBAGE = (b"\xff\xfe\x00 not utf-8", b"{not json", b"[1, 2, 3]", b'{"base_path": 5, "replicas": "two"}', b"null", b'{"cordoned": "yes"}')

    def bad_values(self, fault: Fault, host: None) -> str:
        ks, store = self.fleet.keyspace, self.writer.store
        rng = random.Random(fault.target)
        victim = self.fleet.hosts[fault.target % len(self.fleet.hosts)]
        junk_intent = rng.choice([*self.GARBAGE, json.dumps({"base_path": "/nonexistent/chaos-junk", "replicas": 2}).encode()])
        keys = {
            ks.model(JUNK_MODEL): junk_intent,
            ks.hostctl(victim): rng.choice(self.GARBAGE),
            ks.assignment(victim, JUNK_MODEL): rng.choice(self.GARBAGE),
        }
        written = []
        try:
            for key, value in keys.items():
                try:
                    store.put(key, value)
                    written.append(key)
                except Exception:  # noqa: BLE001 (etcd may be recovering from the previous fault)
                    pass
            self.hold(fault.hold)
        finally:
            for key in keys:
                wait_until(lambda k=key: store.delete(k) or True, 30, f"delete {key}")
        return f"garbage in {', '.join(written)} for {fault.hold:g} s"


# -- convergence ---------------------------------------------------------------------------------


def converged(fleet: Fleet, store: Any, wanted: dict[str, dict[str, Any]]) -> str | None:
    """None when every model serves its latest intent on exactly its wanted replicas (assignment,
    simulator and agent status agree), otherwise what is still missing."""
    from tfleet.schema import Assignment, ModelStatus

    ks = fleet.keyspace
    hosts = {kv.key[len(ks.hosts_prefix()) :] for kv in store.list_prefix(ks.hosts_prefix()).items}
    if hosts != set(fleet.hosts):
        return f"hosts registered: {sorted(hosts)}"
    assigned: dict[str, dict[str, Any]] = defaultdict(dict)
    for kv in store.list_prefix(ks.assignments_prefix()).items:
        host, model = ks.parse_host_model(kv.key, "assignments")
        assigned[model][host] = kv
    if JUNK_MODEL in assigned or store.get(ks.model(JUNK_MODEL)) is not None:
        return "chaos-junk is still assigned or has an intent"
    statuses = {(kv.key.split("/")[-2], kv.key.split("/")[-1]): kv for kv in store.list_prefix(ks.status_prefix()).items}
    states = {h: sim_state(fleet.rest[h]) for h in fleet.hosts}
    for model in fleet.models:
        intent = wanted[model]
        versions = frozenset(intent["model_version_policy"]["specific"]["versions"])
        if len(assigned[model]) != intent["replicas"]:
            return f"{model}: {len(assigned[model])} replicas assigned, {intent['replicas']} wanted"
        for host, kv in assigned[model].items():
            assignment = Assignment.model_validate_json(kv.value)
            policy = assignment.model_version_policy
            if policy.specific is None or frozenset(policy.specific.versions) != versions or assignment.version_labels != intent["version_labels"]:
                return f"{model} on {host}: assignment {kv.value.decode()} is not the latest intent"
            status_kv = statuses.get((host, model))
            if status_kv is None:
                return f"{model} on {host}: no status"
            status = ModelStatus.model_validate_json(status_kv.value)
            if status.assignment_revision != kv.mod_revision or status.error or status.version_labels != intent["version_labels"]:
                return f"{model} on {host}: status not ready ({status_kv.value.decode()[:200]})"
            if (states[host] or {}).get(model, frozenset()) != versions:
                return f"{model} on {host}: simulator serves {sorted((states[host] or {}).get(model, ()))}, wanted {sorted(versions)}"
        for host, state in states.items():
            if host not in assigned[model] and (state or {}).get(model):
                return f"{model}: {host} still serves it without an assignment"
    return None


class NotPlaced(Exception):
    """What the fleet still lacks (wait_until names the last one if it times out)."""


def placed(fleet: Fleet, wanted: dict[str, dict[str, Any]]) -> bool:
    """True once converged; otherwise raises NotPlaced saying what is missing and which
    daemons exited, so that a start that times out says why (it used to say only "timed out")."""
    missing = converged(fleet, fleet.store, wanted)
    if missing is None:
        return True
    dead = fleet.dead()
    raise NotPlaced(missing + (f"; exited: {', '.join(dead)} (logs in {fleet.logs})" if dead else ""))


def history_keep(fleet: Fleet) -> int:
    """The history retention the controllers apply (historycursor's `keep`; 100 by default)."""
    cursor = getattr(fleet.keyspace, "history_cursor", None)
    if cursor is None:
        return 100
    try:
        kv = fleet.store.get(cursor())
        return int(json.loads(kv.value).get("keep", 100)) if kv else 100
    except Exception:  # noqa: BLE001 (unreadable: assume the default)
        return 100


def dump_state(fleet: Fleet, path: pathlib.Path) -> None:
    """Every key and value under the prefix (except history), for a post-mortem."""
    try:
        items = fleet.store.list_prefix(fleet.keyspace.prefix + "/").items
    except Exception as exc:  # noqa: BLE001
        path.write_text(f"could not read etcd: {exc}\n")
        return
    lines = [f"{kv.key} (mod {kv.mod_revision}) {kv.value.decode(errors='replace')}" for kv in items if "/history/" not in kv.key]
    lines += [f"simulator {h}: {json.dumps({m: sorted(v) for m, v in (sim_state(fleet.rest[h]) or {}).items()})}" for h in fleet.hosts]
    path.write_text("\n".join(lines) + "\n")


# -- the run ---------------------------------------------------------------------------------------


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
    say = (lambda text: print(f"[{_clock(time.time())}] {text}", flush=True)) if settings.verbose else (lambda text: None)
    schedule = make_schedule(
        settings.seed, settings.max_faults, settings.kinds, settings.hosts, settings.models, settings.lease_ttl, settings.gap, settings.reload_timeout
    )
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


def print_summary(result: Result, settings: Settings) -> None:
    print(f"chaos soak: seed {result.seed}, {result.duration:g} s, {settings.hosts} hosts, {settings.models} models, 3 etcd members, 2 controllers")
    print(f"  faults injected: {len(result.faults)}")
    for kind, count in sorted(result.faults_by_kind().items()):
        print(f"    {kind:22} {count}")
    for record in result.faults:
        if record.error:
            print(f"    ! {record.kind} at {_clock(record.start)}: {record.error}")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        for fault in make_schedule(
            settings.seed, options.print_schedule, kinds, settings.hosts, settings.models, settings.lease_ttl, settings.gap, settings.reload_timeout
        ):
            print(fault)
        return 0
    from tfleet import logs

    logs.configure("warning")  # the registry's own lines would drown the soak's
    result = run(settings)
    print_summary(result, settings)
    if options.json:
        print(json.dumps(result.as_json()))
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
