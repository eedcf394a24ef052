"""Rollout planner: which versions and labels each replica of a model gets next.

Pure (no I/O, no clock: ``now`` is passed in). The phase is derived every time from what the
replicas' assignments hold now, the intent, and what the agents report. The one thing the
assignments cannot tell, once every replica holds old and new versions side by side, is
which versions were there before; the controller's own report of the model
(``modelstatus.rollout.from_versions`` / ``from_labels``, in etcd) remembers it, passed in as
``memory``. A controller that restarts or fails over mid-rollout therefore continues (and can
abort) exactly where the fleet is.

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
replica.

Abort (``rollout.abort``, phase ``aborting``) works in every phase of both strategies and
ends with the assignments holding only the versions and labels served before the rollout:
while every replica still holds the old versions they simply lose the new ones; after
``removing`` the old versions are first added back and the new ones go once the old ones
are AVAILABLE again (make-before-break in reverse).

A new version that cannot be served on any replica aborts the rollout automatically (phase
``backoff``), the same way: TF Serving's load failure (END with an error), or an agent that
acted on the assignment and reports an error instead of the version (its directory is
missing, base_path unreadable). The failure is recorded with the version, host and message,
and the version is not tried again before ``failure_backoff_seconds`` have passed.

Intents with a ``latest`` or ``all`` policy leave version choice to TF Serving (it follows
the directories on disk): every replica simply gets the intent's config.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from collections.abc import Set
from dataclasses import replace

from tfleet.schema import Assignment, ModelIntent, ReplicaStatus, RolloutReport

CANARY_LABEL = "canary"
# Reasons that name a command to run say MODEL_NAME where the model goes: a rollout step
# is planned from the intent alone, and the fleet planner, which knows the name, fills it in.
MODEL_NAME = "<model>"


@dataclass(frozen=True)
class Replica:
    """One host holding (or about to hold) an assignment of the model."""

    host: str
    assignment: Assignment | None  # None: a new replica placement just added
    status: ReplicaStatus | None  # the agent's report (None: nothing reported yet)
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
        """Why this version cannot be served here, or None.

        TF Serving's message when it failed to load (END with an error code); or the agent's
        error when the agent, acting on an assignment that names the version, reports an
        error and not the version: it could not apply the assignment (the version's
        directory is missing, base_path is unreadable, a label points at nothing) and keeps
        serving the last valid one. Either way the version will not come by waiting.
        """
        if self.status is None:
            return None
        report = self.status.versions.get(str(version))
        if report is not None and report.state == "END" and report.error_code != 0:
            return report.error_message or f"error code {report.error_code}"
        if report is None and self.status.error and self.reported() and version in (_versions_of(self.assignment) or ()):
            return self.status.error
        return None


@dataclass(frozen=True)
class Failure:
    version: int
    host: str
    error: str
    at: dt.datetime
    retry_after: dt.datetime


@dataclass(frozen=True)
class Memory:
    """What the model's previous report said about its rollout (modelstatus.rollout): the
    versions and labels served before it, which an abort goes back to."""

    phase: str
    from_versions: tuple[int, ...]
    to_versions: tuple[int, ...]
    from_labels: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, report: RolloutReport) -> Memory:
        return cls(report.phase, tuple(report.from_versions), tuple(report.to_versions), dict(report.from_labels))


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
    from_labels: Mapping[str, int] = field(default_factory=dict)  # the labels before the rollout


@dataclass(frozen=True)
class _Rollout:
    """What every step of a rollout in progress is decided from (plan_rollout works it out
    once; _abort_step, _canary_step and _rolling_step take it first, then what only they need)."""

    intent: ModelIntent
    replicas: Sequence[Replica]
    hosts: Sequence[str]  # sorted
    held: frozenset[int]  # every version some replica's assignment holds now
    origin: frozenset[int]  # the versions served before this rollout (what an abort goes back to)
    origin_labels: Mapping[str, int]  # and their labels
    target: tuple[int, ...]  # the versions the intent wants
    failures: tuple[Failure, ...]  # every failure still backing off
    new_failures: tuple[Failure, ...]  # those found in this pass

    def step(self, assignments: Mapping[str, Assignment], phase: str, reason: str) -> Step:
        """A step of this rollout (from the origin to the target, with its failures)."""
        return Step(
            assignments,
            phase,
            tuple(sorted(self.origin)),
            self.target,
            reason,
            failures=self.failures,
            new_failures=self.new_failures,
            from_labels=dict(self.origin_labels),
        )


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


def _current_labels(replicas: Sequence[Replica], keep: Set[int]) -> dict[str, int]:
    """Labels the replicas hold now (the first replica that has any), limited to kept versions."""
    for replica in sorted(replicas, key=lambda r: r.host):
        if replica.assignment is not None and replica.assignment.version_labels:
            return {label: v for label, v in replica.assignment.version_labels.items() if v in keep and label != CANARY_LABEL}
    return {}


def plan_rollout(intent: ModelIntent, replicas: Sequence[Replica], failures: Sequence[Failure], now: dt.datetime, memory: Memory | None = None) -> Step:
    hosts = sorted(r.host for r in replicas)
    final = _intent_assignment(intent, replicas)
    target = _versions_of(final)
    if target is None:
        # latest/all: TF Serving picks versions from disk; nothing to orchestrate.
        return Step({h: final for h in hosts}, "stable")

    aborting = intent.rollout.abort and memory is not None and memory.phase != "stable"
    if not failures and not aborting and replicas and not _any_failed(replicas, target):
        if all(r.assignment is final or r.assignment == final for r in replicas):
            # Converged (the common case in a large fleet): nothing to decide, unless the old
            # versions are still going away (then the rollout is not over, and can be aborted).
            if memory is not None and memory.phase == "removing" and _still_removing(replicas, target):
                return _removing_step(memory, hosts, final, target)
            return Step({h: final for h in hosts}, "stable", (), target)
        if _only_new_replicas(replicas, final, target, memory):
            return Step({h: final for h in hosts}, "stable", (), target)

    existing = [r for r in replicas if r.assignment is not None]
    held = _current_versions(existing)
    old, old_labels = _origin(memory, held, target, replicas)
    introduced = tuple(v for v in target if v not in old)  # the versions this rollout brings
    active_failures = tuple(f for f in failures if f.retry_after > now)
    new_failures = _detect_failures(replicas, introduced, active_failures, intent, now)
    failed = active_failures + new_failures
    blocked = {f.version for f in failed}

    if not held:  # a fresh model (or every replica new): no rollout, serve the target
        versions = tuple(v for v in target if v not in blocked) or target
        labels = {k: v for k, v in intent.version_labels.items() if v in versions}
        config = intent.assignment(versions, labels)
        return Step({h: config for h in hosts}, "stable", (), versions, failures=failed, new_failures=new_failures)

    rollout = _Rollout(intent, replicas, hosts, frozenset(held), frozenset(old), old_labels, target, failed, new_failures)
    if blocked & set(introduced):
        # Automatic abort: back to what was served before, until the backoff has passed.
        reason = "; ".join(f"version {f.version} failed to load on {f.host}: {f.error}; retrying after {f.retry_after.isoformat()}" for f in failed)
        return _abort_step(rollout, "backoff", reason)

    if intent.rollout.abort and (held | set(target)) - old:
        listed = ", ".join(map(str, sorted((held | set(target)) - old)))
        reason = f"rollout.abort is set: version {listed} taken away; start a rollout again to clear it"
        return _abort_step(rollout, "aborting", reason)

    wanted = tuple(v for v in target if v not in blocked)
    if intent.rollout.strategy == "canary" and not intent.rollout.promote and introduced:
        return _canary_step(rollout, wanted)
    return _rolling_step(rollout, wanted)


def _intent_assignment(intent: ModelIntent, replicas: Sequence[Replica]) -> Assignment:
    """``intent.assignment()``, as a replica holds it already when one does (the common case):
    building and validating a fresh one was ~8 us of a converged model's ~57 us plan, and
    every plan of every model needs it. The same fields as ``ModelIntent.assignment``
    compared: an equal value (pydantic's equality is the fields'), so the plan is the same."""
    for replica in replicas:
        held = replica.assignment
        if (
            held is not None
            and held.base_path == intent.base_path
            and held.model_platform == intent.model_platform
            and (held.model_version_policy is intent.model_version_policy or held.model_version_policy == intent.model_version_policy)
            and held.version_labels == intent.version_labels
        ):
            return held
    return intent.assignment()


def _only_new_replicas(replicas: Sequence[Replica], final: Assignment, target: tuple[int, ...], memory: Memory | None) -> bool:
    """Whether the rollout below would come to the converged answer anyway (the model is not
    converged: plan_rollout asked that first): every replica holds the intent's assignment or
    is new (placement just added it: no assignment yet), no rollout is remembered (a stable
    report, or none), and the intent's assignment is
    what a finished rolling step writes (its versions sorted and distinct, no label named
    canary; its labels point at its versions, as ModelIntent validates). Then the origin is
    what the replicas hold, nothing is introduced or failing, and the long way ends stable
    with that very assignment (every replica new: the fresh model's step, the same).
    This is the model that lost a replica with its host: the long way cost twice the
    converged model's plan_rollout (~40 us against ~19 us), and a tenth of 1,000 hosts lost
    at 100,000 models is ~20,000 such models (bench/loss_pass.py). tests/unit/test_rollout.py
    checks it against the long way."""
    if memory is not None and memory.phase != "stable":
        return False  # (_origin takes a remembered rollout's versions: not what is held)
    specific = final.model_version_policy.specific
    if specific is None or specific.versions != list(target) or CANARY_LABEL in final.version_labels:
        return False
    return all(replica.assignment is None or replica.assignment is final or replica.assignment == final for replica in replicas)


def _origin(memory: Memory | None, held: set[int], target: tuple[int, ...], replicas: Sequence[Replica]) -> tuple[set[int], dict[str, int]]:
    """The versions and labels served before this rollout: what an abort goes back to.

    Remembered in the model's report while the rollout runs (the assignments alone cannot
    tell which of the versions they hold are new once every replica holds both). Without a
    report of this rollout, it is what the replicas hold that the intent does not want, or
    else everything they hold.
    """
    if memory is not None and memory.phase != "stable" and memory.to_versions == target and memory.from_versions:
        old = set(memory.from_versions)
        # (a report written before from_labels existed: the labels the assignments still
        # give the old versions)
        return old, dict(memory.from_labels) or _current_labels(replicas, old)
    old = (held - set(target)) or set(held)
    return old, _current_labels(replicas, old)


def _abort_step(rollout: _Rollout, phase: str, reason: str) -> Step:
    """Back to the old versions and labels, make-before-break in reverse.

    While every replica's assignment still holds the old versions (adding, labeling, a
    canary), the new ones go at once. Once a replica was told to drop them (removing), they
    are first added back next to the new ones, and the new ones go only when the old ones
    are AVAILABLE on every replica that has reported on its assignment (at least one), as a
    forward rollout waits for the new ones.
    """
    intent, replicas, hosts, held, old = rollout.intent, rollout.replicas, rollout.hosts, rollout.held, rollout.origin
    existing = [r for r in replicas if r.assignment is not None]
    back = intent.assignment(tuple(sorted(old)), dict(rollout.origin_labels))
    everywhere = all(old <= set(_versions_of(r.assignment) or ()) for r in existing)
    reported = [r for r in existing if r.reported()]
    old_available = bool(reported) and all(r.available(v) for r in reported for v in old)
    if everywhere and (old_available or held == old):
        return rollout.step({h: back for h in hosts}, phase, reason)
    union = tuple(sorted(held | old))
    labels = _current_labels(replicas, held | old)
    config = intent.assignment(union, labels)
    waiting = f"adding version {', '.join(map(str, sorted(old)))} back before taking version {', '.join(map(str, sorted(held - old)))} away"
    return rollout.step({h: config for h in hosts}, phase, f"{reason}; {waiting}")


def _still_removing(replicas: Sequence[Replica], target: tuple[int, ...]) -> bool:
    """Some replica has not confirmed the removal: its agent has not reported on the current
    assignment yet, or still reports a version the target does not hold (UNLOADING)."""
    wanted = {str(v) for v in target}
    return any(r.status is not None and (not r.reported() or set(r.status.versions) - wanted) for r in replicas if r.assignment is not None)


def _removing_step(memory: Memory, hosts: Sequence[str], final: Assignment, target: tuple[int, ...]) -> Step:
    removed = ", ".join(map(str, sorted(set(memory.from_versions) - set(target)))) or "the old versions"
    return Step(
        {h: final for h in hosts},
        "removing",
        memory.from_versions,
        target,
        f"waiting for every replica to unload version {removed}",
        from_labels=dict(memory.from_labels),
    )


def _any_failed(replicas: Sequence[Replica], target: tuple[int, ...]) -> bool:
    return any(r.failed(v) is not None for r in replicas for v in target)


def _canary_step(rollout: _Rollout, wanted: tuple[int, ...]) -> Step:
    intent, hosts, old, old_labels = rollout.intent, rollout.hosts, rollout.origin, dict(rollout.origin_labels)
    k = intent.rollout.canary_replicas
    canary_hosts = tuple(hosts[:k])
    stable_versions = tuple(sorted(old))
    newest = max(set(wanted) - old, default=None)
    assignments: dict[str, Assignment] = {}
    for host in hosts:
        if host in canary_hosts and newest is not None:
            versions = tuple(sorted(old | set(wanted)))
            assignments[host] = intent.assignment(versions, {**old_labels, CANARY_LABEL: newest})
        else:
            assignments[host] = intent.assignment(stable_versions, old_labels)
    reason = f"canary on {', '.join(canary_hosts)}: run `tfleet rollout promote {MODEL_NAME}` to roll out everywhere (or `tfleet rollout abort {MODEL_NAME}`)"
    return replace(rollout.step(assignments, "canary", reason), canary_hosts=canary_hosts)


def _versions_everywhere(replicas: Sequence[Replica]) -> set[int]:
    """Versions every existing replica holds."""
    sets = [set(_versions_of(r.assignment) or ()) for r in replicas if r.assignment is not None]
    return set.intersection(*sets) if sets else set()


def _rolling_step(rollout: _Rollout, wanted: tuple[int, ...]) -> Step:
    intent, replicas, hosts, held = rollout.intent, rollout.replicas, rollout.hosts, rollout.held
    wanted_set = set(wanted)
    union = tuple(sorted(held | wanted_set))
    missing = wanted_set - held
    existing = [r for r in replicas if r.assignment is not None]
    all_hold_union = all(set(_versions_of(r.assignment) or ()) >= wanted_set for r in existing)
    target_labels = {k: v for k, v in intent.version_labels.items() if v in wanted_set}
    if missing or not all_hold_union:
        labels = _current_labels(replicas, held | wanted_set)
        config = intent.assignment(union, labels)
        adding = ", ".join(map(str, sorted(wanted_set - _versions_everywhere(replicas)) or sorted(missing)))
        return rollout.step({h: config for h in hosts}, "adding", f"adding version {adding}")
    ready = [r for r in existing if r.reported()]
    new_available = all(r.available(v) for r in ready for v in wanted_set) and bool(ready)
    labels_now = _current_labels(replicas, held)
    old = held - wanted_set
    if labels_now != target_labels:
        if not new_available:
            config = intent.assignment(union, labels_now)
            return rollout.step({h: config for h in hosts}, "adding", "waiting for the new versions to be AVAILABLE on every replica")
        config = intent.assignment(union, target_labels)
        return rollout.step({h: config for h in hosts}, "labeling", "moving labels to the new versions")
    if old:
        labels_applied = all(r.reported() and r.status is not None and dict(r.status.version_labels) == target_labels for r in existing)
        if not (labels_applied and new_available):
            config = intent.assignment(union, target_labels)
            return rollout.step({h: config for h in hosts}, "labeling", "waiting for every replica to apply the new labels")
        config = intent.assignment(tuple(sorted(wanted_set)), target_labels)
        return rollout.step({h: config for h in hosts}, "removing", f"removing version {', '.join(map(str, sorted(old)))}")
    config = intent.assignment(tuple(sorted(wanted_set)), target_labels)
    return Step({h: config for h in hosts}, "stable", (), rollout.target, failures=rollout.failures, new_failures=rollout.new_failures)


def _detect_failures(
    replicas: Sequence[Replica], target: tuple[int, ...], known: Sequence[Failure], intent: ModelIntent, now: dt.datetime
) -> tuple[Failure, ...]:
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
