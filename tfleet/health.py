"""The one definition of a replica's readiness and a model's health.

The controller (its modelstatus reports and placement), the CLI (`get models`, `describe`,
`status`) and the dashboard all ask these functions, so the three can never disagree about
the same keys. Pure: plain values in, plain values out; no I/O, no clock.

Words, as the operator sees them:

* a replica is **serving** when its agent reports at least one version AVAILABLE: it can
  answer requests (for some version);
* a replica is **ready** when its agent has acted on the current assignment (the status names
  the assignment's revision), reports no error, and every version it reports is AVAILABLE:
  it serves exactly what it was told. Any other state (START, LOADING, UNLOADING, END,
  UNKNOWN such as a TF Serving that stopped answering) is not ready;
* a model's **health**, worst first:

  - ``unavailable``: replicas are wanted but none is serving: requests fail;
  - ``failing``: something will not fix itself: an invalid intent, an agent error (a version
    not found, failed to load, TF Serving rejecting the list or not answering) or a version
    in its failure backoff. The model may still serve its old version;
  - ``degraded``: no error, but fewer replicas serve than wanted (placement short, a replica
    still loading or moving);
  - ``ok``: as many replicas serve as wanted and nothing reports an error (a rollout may be
    in progress: its phase is shown apart);
  - ``unknown``: no controller report yet; ``deleting``: the intent is gone and its
    replicas are being removed.

Why serving (not ready) decides between ok and degraded: during a healthy rolling rollout
every replica is "not ready" (the new version is loading next to the old one) while the
model serves at full capacity. Errors are what make a rollout unhealthy, and they are
counted whatever the phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tfleet.schema import ModelIntent, ModelStatusReport, ReplicaReport, ReplicaStatus, VersionReport

OK = "ok"
DEGRADED = "degraded"
FAILING = "failing"
UNAVAILABLE = "unavailable"
UNKNOWN = "unknown"
DELETING = "deleting"
STATES = (OK, DEGRADED, FAILING, UNAVAILABLE, UNKNOWN, DELETING)
AVAILABLE = "AVAILABLE"


# -- one replica --------------------------------------------------------------------------------


def replica_serving(status: ReplicaStatus | None) -> bool:
    """At least one version AVAILABLE: the replica answers requests."""
    return status is not None and any(report.state == AVAILABLE for report in status.versions.values())


def replica_ready(status: ReplicaStatus | None, assignment_revision: int | None) -> bool:
    """The agent acted on this assignment revision, reports no error, and serves every version
    it reports."""
    if status is None or assignment_revision is None or status.assignment_revision != assignment_revision:
        return False
    if status.error is not None or not status.versions:
        return False
    return all(report.state == AVAILABLE for report in status.versions.values())


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def version_problem(version: str, report: VersionReport) -> str | None:
    """What is wrong with one reported version, or None: an error code or message on a state
    that is not AVAILABLE, or UNKNOWN (TF Serving cannot say; the agent gives the reason)."""
    if report.state == AVAILABLE:
        return None
    if not (report.error_code or report.error_message or report.state == "UNKNOWN"):
        return None
    text = f"version {version} is {report.state}"
    if report.error_message:
        text += f": {report.error_message}"
    if report.error_code:
        text += f" (code {report.error_code})"
    return text


def replica_errors(status: ReplicaStatus | None) -> tuple[str, ...]:
    """Everything the agent reports wrong with the replica: its error first, then each failing
    version whose message the error does not already quote."""
    if status is None or (not status.error and all(report.state == AVAILABLE for report in status.versions.values())):
        return ()  # (nearly every status: no error, every version AVAILABLE, so no problem)
    errors: list[str] = [status.error] if status.error else []
    for version in sorted(status.versions, key=_version_order):
        report = status.versions[version]
        problem = version_problem(version, report)
        if problem is None:
            continue
        if status.error and report.error_message and report.error_message in status.error:
            continue
        errors.append(problem)
    return tuple(errors)


def report_serving(replica: ReplicaReport) -> bool:
    """replica_serving, for a replica as the controller reports it."""
    return any(state == AVAILABLE for state in replica.versions.values())


# -- one model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentError:
    host: str
    message: str

    def text(self) -> str:
        return f"{self.host}: {self.message}"


@dataclass(frozen=True)
class ModelHealth:
    state: str
    reason: str  # empty when ok
    wanted: int = 0
    serving: int = 0
    ready: int = 0
    errors: tuple[AgentError, ...] = ()  # agent errors, per replica host
    failures: tuple[str, ...] = ()  # versions in their failure backoff, in words


def failure_text(version: int, host: str, error: str) -> str:
    return f"version {version} failed to load on {host}: {error}"


def model_health(report: ModelStatusReport | None, *, intent_exists: bool = True, intent_error: str | None = None) -> ModelHealth:
    """The health of a model from the controller's report of it (and whether its intent exists
    and parses, which the report may not know yet)."""
    if report is None:
        if not intent_exists:
            return ModelHealth(UNKNOWN, "not managed by the controller (no intent)")
        if intent_error:
            return ModelHealth(FAILING, f"invalid intent: {intent_error}")
        return ModelHealth(UNKNOWN, "no report from the controller yet")
    return health_of(
        report.wanted_replicas, report.replicas, report.failures, report.error, report.reasons, intent_exists=intent_exists, intent_error=intent_error
    )


class _Failed(Protocol):
    """A version in its failure backoff, as a report (VersionFailure) or the rollout
    (rollout.Failure) holds it: what health_of reads of it."""

    @property
    def version(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def error(self) -> str: ...


def health_of(
    wanted: int,
    replicas: Sequence[ReplicaReport],
    failures: Sequence[_Failed],
    error: str | None,
    reasons: Sequence[str],
    *,
    intent_exists: bool = True,
    intent_error: str | None = None,
) -> ModelHealth:
    """model_health of a report with these fields: what the controller writes into the report
    it is building (controller/planner.py), judged by the same rules before the report exists."""
    serving = sum(1 for r in replicas if report_serving(r))
    ready = sum(1 for r in replicas if r.ready)
    errors = tuple(AgentError(r.host, message) for r in sorted(replicas, key=_host) for message in r.errors) if any(r.errors for r in replicas) else ()
    failed = tuple(failure_text(f.version, f.host, f.error) for f in failures)

    def health(state: str, reason: str) -> ModelHealth:
        return ModelHealth(state, reason, wanted=wanted, serving=serving, ready=ready, errors=errors, failures=failed)

    if not intent_exists:
        return health(DELETING, "the intent was deleted; its replicas are being removed")
    if error:
        return health(FAILING, error)
    if intent_error:
        return health(FAILING, f"invalid intent: {intent_error}")
    problems = [*failed, *(e.text() for e in errors)]
    first = _first(problems)
    if wanted > 0 and serving == 0:
        if first:
            reason = first
        elif reasons:
            reason = reasons[0]
        elif not replicas:
            reason = "no replica is placed"
        else:
            reason = "no replica serves any version yet"
        return health(UNAVAILABLE, reason)
    if problems:
        return health(FAILING, first)
    if serving < wanted:
        reason = reasons[0] if reasons else f"{serving} of {wanted} replicas serve"
        return health(DEGRADED, reason)
    return health(OK, "")


def _host(replica: ReplicaReport) -> str:
    return replica.host


def _first(problems: list[str]) -> str:
    if not problems:
        return ""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def health_fields(health: ModelHealth) -> Mapping[str, object]:
    """The modelstatus fields that carry a model's health (docs/keyspace.md)."""
    return {"serving_replicas": health.serving, "health": health.state, "health_reason": health.reason}


def intent_ready(intent: ModelIntent, intent_revision: int, report: ModelStatusReport | None) -> tuple[bool, str]:
    """Is the model done with its intent at ``intent_revision``? (ready, what is missing in words).

    Stricter than health ``ok``: the report must be about this very revision of the intent
    (a report written before the last change never counts), no rollout may be running, and
    every wanted replica must be ready with each version the intent lists. `tfleet wait`
    (and so the README's declare block) asks this."""
    if report is None:
        return False, "no report from the controller yet"
    if report.intent_revision != intent_revision:
        return False, f"the controller has not seen revision {intent_revision} of the intent yet"
    if report.error:
        return False, _one_line(report.error)
    if report.rollout.phase != "stable":
        return False, f"rollout {report.rollout.phase}" + (f": {_one_line(report.rollout.reason)}" if report.rollout.reason else "")
    specific = intent.model_version_policy.specific
    versions = [str(v) for v in specific.versions] if specific is not None else list(report.ready_replicas) or ["any"]
    short = {v: report.ready_replicas.get(v, 0) for v in versions if report.ready_replicas.get(v, 0) < intent.replicas}
    if short:
        return False, ", ".join(f"version {v}: {n}/{intent.replicas} replicas ready" for v, n in short.items())
    return True, ", ".join(f"version {v}: {report.ready_replicas.get(v, 0)}/{intent.replicas} replicas ready" for v in versions)


def _one_line(text: str) -> str:
    return " ".join(text.split())
