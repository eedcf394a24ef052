"""The recorded timeline and the invariants judged on it (pure, pinned by
tests/unit/test_chaos_rules.py; the rules are docs/operations.md "Chaos soak").

Times are wall-clock (time.time(), as in the daemons' logs). When a change happened in etcd
is taken from the revision clock (linearizable reads), never from when our watch delivered
it: a watch on a frozen member delivers late.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.schedule import JUNK_MODEL

VIOLATION_KINDS = ("intent_lost", "history_missing", "history_deleted", "healthy_unload", "zero_available", "no_convergence")
INF = float("inf")


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
        return f"{wall_clock(self.at)} {self.kind}: {self.detail}"


def wall_clock(t: float) -> str:
    """A wall-clock time as the daemons' logs write it (UTC, milliseconds)."""
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
