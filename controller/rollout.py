"""Rollout planner: which versions and labels each replica of a model gets next.

Pure (no I/O, no clock: ``now`` is passed in). The phase is not stored anywhere: it is
derived every time from what the replicas' assignments hold now, the intent, and what the
agents report. A controller that restarts or fails over mid-rollout therefore continues
exactly where the fleet is, with no hidden state.

Make-before-break, for an intent with a ``specific`` version list T, when the replicas'
assignments hold the versions A:

    adding     T - A is not empty: every replica gets A | T (old versions stay, labels stay)
    labeling   every new version is AVAILABLE on every ready replica: labels move to the intent's
    removing   every replica reports the new labels applied: versions become T
    stable     A == T and labels are the intent's

so no replica ever stops serving an old version before the new one is AVAILABLE everywhere,
and a model with two or more healthy replicas never drops to zero AVAILABLE replicas.

Canary (``rollout.strategy == "canary"``): only the first ``canary_replicas`` replicas (by
host name) go through ``adding``, with a ``canary`` label on the newest new version; the
others keep the old versions. ``rollout.promote`` turns it into a rolling rollout of every
replica; ``rollout.abort`` takes the new versions away again.

A new version that fails to load on any replica (END with an error) aborts the rollout
automatically: the failure is recorded with the version, host and TF Serving's message, and
the version is not tried again before ``failure_backoff_seconds`` have passed.

Intents with a ``latest`` or ``all`` policy leave version choice to TF Serving (it follows
the directories on disk): every replica simply gets the intent's config.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tfleet.schema import Assignment, ModelIntent, ModelStatus

CANARY_LABEL = "canary"


@dataclass(frozen=True)
class Replica:
    """One host holding (or about to hold) an assignment of the model."""

    host: str
    assignment: Assignment | None  # None: a new replica placement just added
    status: ModelStatus | None  # the agent's report (None: nothing reported yet)
    assignment_revision: int | None = None  # mod_revision of the assignment key

    def reported(self) -> bool:
        """The agent has acted on the current assignment."""
        return self.status is not None and self.assignment_revision is not None and self.status.assignment_revision == self.assignment_revision

    def available(self, version: int) -> bool:
        if not self.reported():
            return False
        assert self.status is not None
        report = self.status.versions.get(str(version))
        return report is not None and report.state == "AVAILABLE"

    def failed(self, version: int) -> str | None:
        """TF Serving's message when this version failed to load here."""
        if self.status is None:
            return None
        report = self.status.versions.get(str(version))
        if report is not None and report.state == "END" and report.error_code != 0:
            return report.error_message or f"error code {report.error_code}"
        return None


@dataclass(frozen=True)
class Failure:
    version: int
    host: str
    error: str
    at: dt.datetime
    retry_after: dt.datetime


@dataclass(frozen=True)
class Step:
    """What each replica's assignment must be, and how to describe the rollout."""

    assignments: Mapping[str, Assignment]  # host -> assignment
    phase: str
    from_versions: tuple[int, ...] = ()
    to_versions: tuple[int, ...] = ()
    reason: str = ""
    canary_hosts: tuple[str, ...] = ()
    new_failures: tuple[Failure, ...] = ()
    failures: tuple[Failure, ...] = field(default_factory=tuple)  # still backing off


def _versions_of(assignment: Assignment | None) -> tuple[int, ...] | None:
    if assignment is None:
        return None
    specific = assignment.model_version_policy.specific
    return tuple(sorted(set(specific.versions))) if specific is not None else None


def _current_versions(replicas: Sequence[Replica]) -> set[int]:
    held: set[int] = set()
    for replica in replicas:
        versions = _versions_of(replica.assignment)
        if versions:
            held.update(versions)
    return held


def _current_labels(replicas: Sequence[Replica], keep: set[int]) -> dict[str, int]:
    """Labels the replicas hold now (the first replica that has any), limited to kept versions."""
    for replica in sorted(replicas, key=lambda r: r.host):
        if replica.assignment is not None and replica.assignment.version_labels:
            return {label: v for label, v in replica.assignment.version_labels.items() if v in keep and label != CANARY_LABEL}
    return {}


def plan_rollout(intent: ModelIntent, replicas: Sequence[Replica], failures: Sequence[Failure], now: dt.datetime) -> Step:
    hosts = sorted(r.host for r in replicas)
    target = _versions_of(intent.assignment())
    if target is None:
        # latest/all: TF Serving picks versions from disk; nothing to orchestrate.
        config = intent.assignment()
        return Step({h: config for h in hosts}, "stable")

    final = intent.assignment()
    if not failures and replicas and all(r.assignment == final for r in replicas) and not _any_failed(replicas, target):
        # Converged (the common case in a large fleet): nothing to decide.
        return Step({h: final for h in hosts}, "stable", (), target)

    active_failures = tuple(f for f in failures if f.retry_after > now)
    new_failures = _detect_failures(replicas, target, active_failures, intent, now)
    blocked = {f.version for f in active_failures + new_failures}

    held = _current_versions([r for r in replicas if r.assignment is not None])
    if not held:  # a fresh model (or every replica new): no rollout, serve the target
        versions = tuple(v for v in target if v not in blocked) or target
        labels = {k: v for k, v in intent.version_labels.items() if v in versions}
        config = intent.assignment(versions, labels)
        return Step({h: config for h in hosts}, "stable", (), versions, failures=active_failures + new_failures, new_failures=new_failures)

    old = tuple(sorted(held - set(target)))
    new = tuple(v for v in target if v not in held)
    wanted = tuple(v for v in target if v not in blocked)
    if blocked & set(target) and old:
        # Abort: back to what was served before, until the backoff has passed.
        versions = tuple(sorted(held - blocked)) or old
        labels = _current_labels(replicas, set(versions))
        config = intent.assignment(versions, labels)
        reason = "; ".join(f"version {f.version} failed to load on {f.host}: {f.error}; retrying after {f.retry_after.isoformat()}" for f in active_failures + new_failures)
        return Step({h: config for h in hosts}, "backoff", tuple(sorted(held)), target, reason, failures=active_failures + new_failures, new_failures=new_failures)

    rollout = intent.rollout
    canary = rollout.strategy == "canary" and not rollout.promote
    if rollout.abort:
        existing = [r for r in replicas if r.assignment is not None]
        base = _versions_everywhere(existing) or held
        introduced = (held | set(target)) - base
        if introduced:
            config = intent.assignment(tuple(sorted(base)), _current_labels(replicas, base))
            listed = ", ".join(map(str, sorted(introduced)))
            return Step({h: config for h in hosts}, "aborting", tuple(sorted(held)), target, f"rollout.abort is set: version {listed} taken away; clear it to roll out again")
    if canary and (new or _canary_in_progress(replicas, target)):
        return _canary_step(intent, replicas, hosts, held, target, wanted)
    return _rolling_step(intent, replicas, hosts, held, wanted, target, new_failures, active_failures)


def _any_failed(replicas: Sequence[Replica], target: tuple[int, ...]) -> bool:
    return any(r.failed(v) is not None for r in replicas for v in target)


def _canary_in_progress(replicas: Sequence[Replica], target: tuple[int, ...]) -> bool:
    """Some replicas hold a target version others do not: a canary is running."""
    holding = [set(_versions_of(r.assignment) or ()) for r in replicas if r.assignment is not None]
    return any(set(target) - h for h in holding) and any(set(target) & h for h in holding)


def _canary_step(intent, replicas, hosts, held, target, wanted) -> Step:
    k = intent.rollout.canary_replicas
    canary_hosts = tuple(hosts[:k])
    stable_versions = tuple(sorted(held - (set(target) - _versions_everywhere(replicas))))
    stable_labels = _current_labels(replicas, set(stable_versions))
    newest = max(set(wanted) - set(stable_versions), default=None)
    assignments = {}
    for host in hosts:
        if host in canary_hosts and newest is not None:
            versions = tuple(sorted(set(stable_versions) | set(wanted)))
            assignments[host] = intent.assignment(versions, {**stable_labels, CANARY_LABEL: newest})
        else:
            assignments[host] = intent.assignment(stable_versions, stable_labels)
    return Step(assignments, "canary", stable_versions, target, f"canary on {', '.join(canary_hosts)}: run `tfleet rollout promote <model>` to roll out everywhere (or `tfleet rollout abort <model>`)", canary_hosts)


def _versions_everywhere(replicas: Sequence[Replica]) -> set[int]:
    """Versions every existing replica holds (the stable set during a canary)."""
    sets = [set(_versions_of(r.assignment) or ()) for r in replicas if r.assignment is not None]
    return set.intersection(*sets) if sets else set()


def _rolling_step(intent, replicas, hosts, held, wanted, target, new_failures, active_failures) -> Step:
    wanted_set = set(wanted)
    union = tuple(sorted(held | wanted_set))
    missing = wanted_set - held
    existing = [r for r in replicas if r.assignment is not None]
    all_hold_union = all(set(_versions_of(r.assignment) or ()) >= wanted_set for r in existing)
    target_labels = {k: v for k, v in intent.version_labels.items() if v in wanted_set}
    failures = active_failures + new_failures
    if missing or not all_hold_union:
        labels = _current_labels(replicas, held | wanted_set)
        config = intent.assignment(union, labels)
        return Step({h: config for h in hosts}, "adding", tuple(sorted(held)), target, f"adding version {', '.join(map(str, sorted(wanted_set - _versions_everywhere(replicas)) or sorted(missing)))}", failures=failures, new_failures=new_failures)
    ready = [r for r in existing if r.reported()]
    new_available = all(r.available(v) for r in ready for v in wanted_set) and bool(ready)
    labels_now = _current_labels(replicas, held)
    old = held - wanted_set
    if labels_now != target_labels:
        if not new_available:
            config = intent.assignment(union, labels_now)
            return Step({h: config for h in hosts}, "adding", tuple(sorted(held)), target, "waiting for the new versions to be AVAILABLE on every replica", failures=failures, new_failures=new_failures)
        config = intent.assignment(union, target_labels)
        return Step({h: config for h in hosts}, "labeling", tuple(sorted(held)), target, "moving labels to the new versions", failures=failures, new_failures=new_failures)
    if old:
        labels_applied = all(r.reported() and dict(r.status.version_labels) == target_labels for r in existing)  # type: ignore[union-attr]
        if not (labels_applied and new_available):
            config = intent.assignment(union, target_labels)
            return Step({h: config for h in hosts}, "labeling", tuple(sorted(held)), target, "waiting for every replica to apply the new labels", failures=failures, new_failures=new_failures)
        config = intent.assignment(tuple(sorted(wanted_set)), target_labels)
        return Step({h: config for h in hosts}, "removing", tuple(sorted(held)), target, f"removing version {', '.join(map(str, sorted(old)))}", failures=failures, new_failures=new_failures)
    config = intent.assignment(tuple(sorted(wanted_set)), target_labels)
    return Step({h: config for h in hosts}, "stable", (), target, failures=failures, new_failures=new_failures)


def _detect_failures(replicas: Sequence[Replica], target: tuple[int, ...], known: Sequence[Failure], intent: ModelIntent, now: dt.datetime) -> tuple[Failure, ...]:
    known_versions = {f.version for f in known}
    found: dict[int, Failure] = {}
    for replica in sorted(replicas, key=lambda r: r.host):
        for version in target:
            if version in known_versions or version in found:
                continue
            error = replica.failed(version)
            if error is not None:
                backoff = dt.timedelta(seconds=intent.rollout.failure_backoff_seconds)
                found[version] = Failure(version, replica.host, error, now, now + backoff)
    return tuple(found[v] for v in sorted(found))
