"""The controller's decision for one pass: from a fleet snapshot, the assignments to write or
delete and the status to report per model. Pure: ``now`` and the last valid intents are
passed in; no I/O.

It combines two smaller pure planners: placement (which hosts hold a replica) and rollout
(which versions and labels each replica gets). Rules of its own:

* A model is managed by the controller when it has an intent, or a modelstatus key (it had
  one). Assignments of other models are an operator's by hand and are never touched.
* An invalid intent is reported in modelstatus.error; the last valid intent keeps being
  served (placed, rescheduled) and nothing is deleted because of it.
* A deleted intent removes the model's assignments; its modelstatus goes once they are gone.
* Writes scale with changes: an assignment is written only when its value differs.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace

from tfleet import health
from tfleet.controller.compact import compact, compact_fields
from tfleet.controller.placement import DEFAULT_UNRESPONSIVE_GRACE, HostInfo, ModelDemand, PlacementInput, place, unresponsive_past_grace
from collections.abc import Set as AbstractSet
from tfleet.controller.placement import Placement
from tfleet.controller.rollout import MODEL_NAME, Failure, Memory, Replica, Step, plan_rollout
from tfleet.controller.snapshot import FleetSnapshot
from tfleet.schema import Assignment, ModelIntent, ModelStatusReport, ReplicaReport, RolloutReport

# Memory a replica is assumed to need when the intent gives no memory_mb: the size on disk
# of its largest registered version times this factor (TF graphs and buffers take more room
# loaded than stored), or DEFAULT_MEMORY_MB when no version is registered.
MEMORY_ESTIMATE_FACTOR = 2.0
DEFAULT_MEMORY_MB = 512


@dataclass(frozen=True)
class ControllerPlan:
    puts: Mapping[tuple[str, str], Assignment]
    deletes: frozenset[tuple[str, str]]
    reports: Mapping[str, ModelStatusReport]  # content to write (updated_at set to now)
    report_deletes: frozenset[str]


def estimate_memory_mb(intent: ModelIntent, versions: Mapping[int, object]) -> int:
    if intent.memory_mb is not None:
        return intent.memory_mb
    sizes = [getattr(record, "size_bytes", 0) for record in versions.values()]
    if not sizes or max(sizes) == 0:
        return DEFAULT_MEMORY_MB
    return max(1, math.ceil(max(sizes) * MEMORY_ESTIMATE_FACTOR / (1024 * 1024)))


@dataclass(frozen=True, slots=True)
class EffectiveIntent:
    """A model's intent as the planner serves it."""

    intent: ModelIntent | None  # the stored intent, or the last valid one while it is invalid (None: nothing to serve)
    error: str | None  # why the stored intent is invalid (reported in modelstatus.error)
    revision: int  # mod_revision of models/<model>


def effective_intents(snap: FleetSnapshot, last_valid: Mapping[str, ModelIntent]) -> dict[str, EffectiveIntent]:
    """model -> the intent to serve, the error to report, the intent's revision."""
    result: dict[str, EffectiveIntent] = {}
    for model, parsed in snap.intents.items():
        if parsed.value is not None:
            result[model] = EffectiveIntent(parsed.value, None, parsed.revision)
        else:
            fallback = last_valid.get(model)
            note = "; the last valid intent keeps being served" if fallback else "; nothing is placed until it is fixed"
            result[model] = EffectiveIntent(fallback, f"{parsed.error}{note}", parsed.revision)
    return result


@dataclass(frozen=True, slots=True)
class ModelCase:
    """Everything plan_model decides one model from, besides the snapshot and the time."""

    model: str
    entry: EffectiveIntent | None  # None: the model has no intent key
    holders: AbstractSet[str]  # the hosts with an assignment of the model now
    placed: tuple[str, ...]  # the hosts placement chose
    reasons: tuple[str, ...]  # placement's reasons, reported

    @classmethod
    def of(cls, model: str, entry: EffectiveIntent | None, holders: AbstractSet[str], placement: Placement) -> ModelCase:
        return cls(model, entry, holders, placement.hosts.get(model, ()), placement.reasons.get(model, ()))


def replica_ready(snap: FleetSnapshot, host: str, model: str) -> bool:
    """tfleet/health.py's readiness, for a replica in the snapshot (an invalid assignment is
    never ready)."""
    parsed = snap.assignments.get((host, model))
    if parsed is None or parsed.value is None:
        return False
    return health.replica_ready(snap.statuses.get((host, model)), parsed.revision)


def ready_holders(snap: FleetSnapshot, model: str, holders: AbstractSet[str]) -> frozenset[str]:
    """The holders whose replica is ready: the holders' own frozenset when all are (the usual
    case: one object per model in the placement input, not two; at 100,000 models ~20 MB)."""
    ready = frozenset(h for h in holders if replica_ready(snap, h, model))
    return holders if isinstance(holders, frozenset) and len(ready) == len(holders) else ready


@dataclass(frozen=True)
class ModelPlan:
    """The decision for one model: its writes and its report (None: no report to write)."""

    puts: Mapping[tuple[str, str], Assignment]
    deletes: frozenset[tuple[str, str]]
    report: ModelStatusReport | None
    delete_report: bool = False
    # earliest time a failure backoff of this model ends (the model must be planned again then)
    wake_at: dt.datetime | None = None


def holders_by_model(snap: FleetSnapshot, managed: Container[str]) -> dict[str, frozenset[str]]:
    return {model: hosts for model, hosts in snap.holders.items() if model in managed and hosts}


def host_info(snap: FleetSnapshot, name: str, now: dt.datetime | None = None, unresponsive_grace: float = DEFAULT_UNRESPONSIVE_GRACE) -> HostInfo:
    control = snap.hostctl.get(name)
    record = snap.hosts[name]
    unresponsive = now is not None and unresponsive_past_grace(record.tfs_unresponsive_since, now, unresponsive_grace)
    return HostInfo(name, record.labels, record.memory_mb, control.cordoned if control else False, control.draining if control else False, unresponsive)


def demand_of(snap: FleetSnapshot, model: str, intent: ModelIntent, previous: ModelDemand | None = None) -> ModelDemand:
    """The model's demand; previous itself when it is equal (most changes of a model are not of
    its intent: a status, an assignment), so that placement finds its demand unchanged at once
    (IncrementalPlacer._settle) and keeps the selector it sorted already."""
    memory = estimate_memory_mb(intent, snap.versions.get(model, {}))
    if (
        previous is not None
        and previous.replicas == intent.replicas
        and previous.memory_mb == memory
        and previous.spread_by == intent.spread_by
        and previous.host_selector == intent.host_selector
        and previous.name == model
    ):
        return previous
    return ModelDemand(model, intent.replicas, memory, intent.host_selector, intent.spread_by)


def placement_input(
    snap: FleetSnapshot,
    intents: Mapping[str, EffectiveIntent],
    current: Mapping[str, AbstractSet[str]],
    now: dt.datetime | None = None,
    unresponsive_grace: float = DEFAULT_UNRESPONSIVE_GRACE,
) -> PlacementInput:
    hosts = {name: host_info(snap, name, now, unresponsive_grace) for name in snap.hosts}
    demands = {model: demand_of(snap, model, entry.intent) for model, entry in intents.items() if entry.intent is not None}
    ready = {model: ready_holders(snap, model, holders) for model, holders in current.items()}
    return PlacementInput(hosts, demands, {m: frozenset(h) for m, h in current.items()}, ready)


def plan_model(snap: FleetSnapshot, case: ModelCase, now: dt.datetime) -> ModelPlan:
    """One managed model: which of its assignments to write or delete, and its report."""
    model, entry, holders, placed = case.model, case.entry, case.holders, case.placed
    intent = entry.intent if entry is not None else None
    if intent is None:
        deletes = frozenset((h, model) for h in holders)
        if entry is not None:  # invalid and never valid: report, touch nothing else
            return ModelPlan({}, deletes, ModelStatusReport(intent_revision=entry.revision, error=entry.error, updated_at=now))
        return ModelPlan({}, deletes, None, delete_report=not holders and model in snap.modelstatus)
    previous = snap.modelstatus.get(model)
    failures = [Failure(f.version, f.host, f.error, f.at, f.retry_after) for f in (previous.failures if previous else [])]
    memory = _memory_of(previous.rollout) if previous is not None else None
    assignments, statuses = snap.assignments, snap.statuses
    replicas = []
    for host in placed:
        parsed = assignments.get((host, model))
        if parsed is None:
            replicas.append(Replica(host, None, statuses.get((host, model))))
        else:
            replicas.append(Replica(host, parsed.value, statuses.get((host, model)), parsed.revision))
    step = plan_rollout(intent, replicas, failures, now, memory)
    puts = {}
    held = [r.assignment for r in replicas if r.assignment is not None]
    # (what each placed host holds now, as read above: None for none or an invalid one)
    holding = {r.host: r.assignment for r in replicas}
    for host, wanted in step.assignments.items():
        now_held = holding.get(host)
        # (identity first: pydantic's equality has no shortcut for the same object, and a
        # converged replica holds the very assignment the rollout returns)
        if now_held is None or (now_held is not wanted and now_held != wanted):
            # A model's replicas mostly hold the same assignment: a new replica's is the one
            # another replica holds (one object, nothing to compact), else a shared copy.
            same = next((a for a in held if a is wanted or a == wanted), None)
            puts[(host, model)] = same if same is not None else compact(wanted)
            held.append(puts[(host, model)])
    deletes = frozenset((h, model) for h in holders if h not in step.assignments)
    wake_at = min((f.retry_after for f in step.failures), default=None)
    return ModelPlan(puts, deletes, _report(case, replicas, step, now), wake_at=wake_at)


# The last report's rollout read as rollout.Memory: most models' reports share one rollout
# object (a stable one: _rollout_report and the fleet cache's interner share them), so
# consecutive plans mostly read the same. One tuple, replaced whole (a read never pairs one
# rollout with another's Memory).
_LAST_MEMORY: tuple[RolloutReport | None, Memory | None] = (None, None)


def _memory_of(rollout: RolloutReport) -> Memory:
    global _LAST_MEMORY
    last, memory = _LAST_MEMORY
    if rollout is not last or memory is None:
        memory = Memory.of(rollout)
        _LAST_MEMORY = (rollout, memory)
    return memory


def same_report(new: ModelStatusReport, old: ModelStatusReport | None) -> bool:
    """Whether old says what new says (updated_at aside): then it is not written again.

    (Field by field, as pydantic's own equality does; two model_dump calls cost 3 times as
    much, and every planned model is compared.)"""
    if old is None:
        return False
    return new is old or (type(new) is type(old) and {**new.__dict__, "updated_at": None} == {**old.__dict__, "updated_at": None})


def settled(result: ModelPlan, previous: ModelStatusReport | None) -> ModelPlan:
    """The plan with the report to keep: the stored report itself when it says the same
    (nothing to write, and one object held, not two: the reconciler writes a report only
    when it is not the stored one); otherwise the new one, sharing its parts with the
    reports held (controller/compact.py). The fleet cache files this object when its write
    comes back."""
    report = result.report
    if report is None or report is previous:
        return result
    if same_report(report, previous):
        return replace(result, report=previous)
    compact_fields(report, _SHARED_REPORT_PARTS if report.replicas else ())
    return result


def plan_model_safely(snap: FleetSnapshot, case: ModelCase, now: dt.datetime) -> ModelPlan:
    """plan_model, with a crash on one model turned into that model's error.

    A value no validation caught, or a bug, must not fail the whole pass (every other model
    would stop being planned): the model gets no writes at all this pass (nothing is
    unloaded or moved because of it) and its modelstatus says what went wrong.
    """
    try:
        result = plan_model(snap, case, now)
    except Exception as exc:  # noqa: BLE001 - isolate one model; the others go on
        revision = case.entry.revision if case.entry is not None else 0
        error = f"internal error while planning this model ({type(exc).__name__}: {exc}); nothing is changed for it until it is fixed"
        result = ModelPlan({}, frozenset(), ModelStatusReport(intent_revision=revision, error=error[:2000], updated_at=now))
    return settled(result, snap.modelstatus.get(case.model))


def merge(parts: Iterable[ControllerPlan]) -> ControllerPlan:
    """One plan of several plans of distinct models (a pass's chunks)."""
    puts: dict[tuple[str, str], Assignment] = {}
    deletes: set[tuple[str, str]] = set()
    reports: dict[str, ModelStatusReport] = {}
    report_deletes: set[str] = set()
    for part in parts:
        puts.update(part.puts)
        deletes |= part.deletes
        reports.update(part.reports)
        report_deletes |= part.report_deletes
    return ControllerPlan(puts, frozenset(deletes), reports, frozenset(report_deletes))


def combine(results: Mapping[str, ModelPlan]) -> ControllerPlan:
    puts: dict[tuple[str, str], Assignment] = {}
    deletes: set[tuple[str, str]] = set()
    reports: dict[str, ModelStatusReport] = {}
    report_deletes = set()
    for model, result in results.items():
        puts.update(result.puts)
        deletes |= result.deletes
        if result.report is not None:
            reports[model] = result.report
        if result.delete_report:
            report_deletes.add(model)
    return ControllerPlan(puts, frozenset(deletes), reports, frozenset(report_deletes))


def plan(snap: FleetSnapshot, last_valid: Mapping[str, ModelIntent], now: dt.datetime) -> ControllerPlan:
    """The full plan: every managed model (the incremental planner gives the same result)."""
    intents = effective_intents(snap, last_valid)
    managed = set(intents) | set(snap.modelstatus)
    current = holders_by_model(snap, managed)
    placement = place(placement_input(snap, intents, current))
    results = {model: plan_model_safely(snap, ModelCase.of(model, intents.get(model), current.get(model, set()), placement), now) for model in sorted(managed)}
    return combine(results)


# a report's fields built from shared values already (_replica_report, _rollout_report): not
# walked again when the report is compacted (its list of replicas is its own)
_SHARED_REPORT_PARTS = frozenset({"replicas", "rollout"})


@functools.lru_cache(maxsize=8192)
def _replica_report(
    host: str, versions: tuple[tuple[str, str], ...], labels: tuple[tuple[str, int], ...], ready: bool, canary: bool, errors: tuple[str, ...]
) -> ReplicaReport:
    """One shared object per distinct replica entry (a host serving the same versions is the
    same entry in every report that lists it): built and validated once, not for every
    report (a few thousand distinct entries in a fleet; 8,192 kept). It is the interner's
    own, so compacting a report finds it already shared."""
    document = {"host": host, "versions": dict(versions), "labels": dict(labels), "ready": ready, "canary": canary, "errors": list(errors)}
    return compact(ReplicaReport.model_validate(document))


@functools.lru_cache(maxsize=4096)
def _rollout_report(
    phase: str, from_versions: tuple[int, ...], to_versions: tuple[int, ...], reason: str, from_labels: tuple[tuple[str, int], ...]
) -> RolloutReport:
    """One shared object per distinct rollout state (most models are stable on the same
    versions), as _replica_report."""
    document = {"phase": phase, "from_versions": list(from_versions), "to_versions": list(to_versions), "reason": reason, "from_labels": dict(from_labels)}
    return compact(RolloutReport.model_validate(document))


def _report(case: ModelCase, placed: list[Replica], step: Step, now: dt.datetime) -> ModelStatusReport:
    """placed: the replicas on case.placed's hosts, in its order, as plan_model read them
    (assignment and status from the snapshot)."""
    model, entry = case.model, case.entry
    assert entry is not None and entry.intent is not None  # (plan_model: a model with an intent to serve)
    replicas = []
    ready_counts: dict[str, int] = {}
    for replica in placed:
        host, status = replica.host, replica.status
        versions = {v: r.state for v, r in status.versions.items()} if status else {}
        for version, state in versions.items():
            if state == "AVAILABLE":
                ready_counts[version] = ready_counts.get(version, 0) + 1
        labels = tuple(status.version_labels.items()) if status else ()
        # (replica_ready: an invalid assignment, read as None, is never ready)
        ready = replica.assignment is not None and health.replica_ready(status, replica.assignment_revision)
        replicas.append(_replica_report(host, tuple(versions.items()), labels, ready, host in step.canary_hosts, health.replica_errors(status)))
    # Health is judged by tfleet/health.py's rules, the ones the CLI and the dashboard apply
    # to the report, from the very fields the report gets (health_of: model_health of a
    # report with these fields), so the report is validated once, with its health in it.
    judged = health.health_of(entry.intent.replicas, replicas, step.failures, entry.error, case.reasons)
    # One validation of a plain document: measured 100x cheaper than model_construct of
    # the nested models (bench/controller_plan.py).
    document = {
        "intent_revision": entry.revision,
        "wanted_replicas": entry.intent.replicas,
        "ready_replicas": dict(sorted(ready_counts.items())),
        "replicas": replicas,
        "rollout": _rollout_report(
            step.phase, tuple(step.from_versions), tuple(step.to_versions), step.reason.replace(MODEL_NAME, model), tuple(step.from_labels.items())
        ),
        "reasons": list(case.reasons),
        "error": entry.error,
        "failures": [{"version": f.version, "host": f.host, "error": f.error, "at": f.at, "retry_after": f.retry_after} for f in step.failures],
        "updated_at": now,
        **health.health_fields(judged),
    }
    return ModelStatusReport.model_validate(document)
