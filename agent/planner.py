"""The agent's decision: from one snapshot of what is assigned, what is on disk and what TF
Serving reports, compute the full model list to serve and the status to report per model.

Pure: no I/O, no clock, no randomness; table-driven tests in tests/unit/test_agent_planner.py.

Rules, in order of importance:

1. Never lose service because of bad input. An assignment that cannot be applied (invalid
   JSON or schema, missing base_path, no version directory, a specific version or a label
   target that does not exist) keeps the configuration last applied for that model, and the
   reason is reported in its status. Other models are unaffected.
2. A model whose assignment is gone is left out of the list, which makes TF Serving unload it.
3. A version label is sent only once its version is AVAILABLE (TF Serving rejects a reload
   that labels a version that is not). Until then the label keeps its previous version if that
   one is still served, and the plan is not settled: the reconciler comes back for it.
4. The list is sent only when it differs from what TF Serving accepted last, or when TF
   Serving no longer knows a model it was given (it restarted with an empty list). After a
   restart TF Serving serves nothing: every version is reported as TF Serving now says (START
   until it loads again), and rule 3 holds back every label until its version is AVAILABLE
   again, so the first reload after a restart carries no label TF Serving would refuse.
5. When TF Serving refused a reload because of a label (``labels_refused``, decided by the
   reconciler after a fresh look at the model), that model gets only the labels TF Serving
   accepted last whose versions are AVAILABLE, so the rest of the list is not held hostage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tfleet.modelfs import DiskFacts
from tfleet.schema import Assignment
from tfleet.tfs.types import ModelConfigSpec, VersionState, VersionStatus

# A version in END with a non-zero error code failed to load; TF Serving will not retry it
# for the same config.
_TERMINAL = (VersionState.AVAILABLE, VersionState.END)


@dataclass(frozen=True)
class ModelInput:
    """One key under assignments/<host>/, read in the snapshot."""

    name: str
    revision: int
    assignment: Assignment | None
    error: str | None = None  # why assignment is None
    disk: DiskFacts | None = None  # None when the assignment is invalid
    # assignment.to_config(name), computed once per revision by whoever builds the input.
    spec: ModelConfigSpec | None = None

    def __post_init__(self) -> None:
        if self.assignment is not None and self.spec is None:
            object.__setattr__(self, "spec", self.assignment.to_config(self.name))


@dataclass(frozen=True)
class PlanInput:
    models: Mapping[str, ModelInput]
    # The list TF Serving accepted last (by model name).
    applied: Mapping[str, ModelConfigSpec]
    # Latest GetModelStatus answer per model: None means TF Serving answered NOT_FOUND;
    # a missing key means it was never asked.
    served: Mapping[str, tuple[VersionStatus, ...] | None]
    # Why the last reload of a model's config failed (attributed by the reconciler).
    reload_errors: Mapping[str, str] = field(default_factory=dict)
    # Models whose labels TF Serving refused in a recent reload (rule 5).
    labels_refused: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ModelReport:
    """The content of status/<host>/<model>, without its timestamp."""

    assignment_revision: int | None
    versions: Mapping[int, VersionStatus]
    version_labels: Mapping[str, int]
    error: str | None
    settled: bool


@dataclass(frozen=True)
class Plan:
    config: tuple[ModelConfigSpec, ...]
    reload_needed: bool
    reports: Mapping[str, ModelReport]

    @property
    def settled(self) -> bool:
        """True when nothing is loading or waiting for a label: no quick second look needed."""
        return all(report.settled for report in self.reports.values())

    def config_by_name(self) -> dict[str, ModelConfigSpec]:
        return {spec.name: spec for spec in self.config}


def aspired_versions(spec: ModelConfigSpec, disk: DiskFacts | None) -> tuple[int, ...] | None:
    """The versions TF Serving will try to serve under spec, or None when unknowable (remote path)."""
    policy = spec.model_version_policy
    if policy.kind == "specific":
        return policy.versions
    if disk is None or disk.unchecked:
        return None
    if policy.kind == "all":
        return disk.versions
    return disk.versions[-policy.num_versions :]


def _state(served: tuple[VersionStatus, ...] | None, version: int) -> VersionStatus | None:
    for status in served or ():
        if status.version == version:
            return status
    return None


def _is_available(served: tuple[VersionStatus, ...] | None, version: int) -> bool:
    status = _state(served, version)
    return status is not None and status.state == VersionState.AVAILABLE


def _problem_with(model: ModelInput) -> str | None:
    """Why a valid-looking assignment still cannot be applied, from the disk facts."""
    assert model.spec is not None and model.disk is not None
    if model.disk.error:
        return model.disk.error
    spec = model.spec
    policy = spec.model_version_policy
    if policy.kind == "specific" and not model.disk.unchecked:
        missing = sorted(set(policy.versions) - set(model.disk.versions))
        if missing:
            listed = ", ".join(map(str, missing))
            present = ", ".join(map(str, model.disk.versions))
            return f"version {listed} not found under base_path {spec.base_path} (it has {present})"
    aspired = aspired_versions(spec, model.disk)
    if aspired is not None:
        for label, version in spec.version_labels:
            if version not in aspired:
                served = ", ".join(map(str, aspired))
                return f"version label {label!r} points at version {version}, which this assignment does not serve (it serves {served})"
    return None


def _labels_to_send(
    spec: ModelConfigSpec, previous: ModelConfigSpec | None, served: tuple[VersionStatus, ...] | None, aspired: tuple[int, ...] | None, refused: bool = False
) -> tuple[tuple[tuple[str, int], ...], bool]:
    """Labels that may be sent now, and whether any label still waits for its version.

    refused: TF Serving refused this model's labels lately; send only labels it accepted
    last (still AVAILABLE), none that it has not seen."""
    previous_labels = dict(previous.version_labels) if previous is not None else {}
    ready: dict[str, int] = {}
    waiting = False
    for label, version in spec.version_labels:
        if _is_available(served, version) and (not refused or previous_labels.get(label) == version):
            ready[label] = version
            continue
        waiting = True
        old = previous_labels.get(label)
        # Keep the label on its old version while the new one loads, if that version stays.
        if old is not None and _is_available(served, old) and (aspired is None or old in aspired):
            ready[label] = old
    return tuple(sorted(ready.items())), waiting


def _versions_to_report(aspired: tuple[int, ...] | None, served: tuple[VersionStatus, ...] | None) -> dict[int, VersionStatus]:
    """Aspired versions (START until TF Serving says otherwise) and any version still in motion."""
    report: dict[int, VersionStatus] = {}
    for status in served or ():
        if status.state != VersionState.END or (aspired is not None and status.version in aspired):
            report[status.version] = status
    for version in aspired or ():
        report.setdefault(version, VersionStatus(version, VersionState.START))
    return dict(sorted(report.items()))


def _load_failure(versions: Mapping[int, VersionStatus]) -> str | None:
    for status in versions.values():
        if status.state == VersionState.END and status.error_code != 0:
            return f"version {status.version} failed to load: {status.error_message or 'no message from TF Serving'}"
    return None


def _settled(versions: Mapping[int, VersionStatus], waiting_labels: bool, aspired: tuple[int, ...] | None) -> bool:
    """Nothing left to watch: aspired versions loaded (or failed to load), removed ones gone.

    A removed version stays in the report until TF Serving says END (it unloads after the
    reload returns); until then the model is not settled, so its status is looked at again
    instead of showing the old version AVAILABLE until the next sweep.
    """
    if waiting_labels:
        return False
    if aspired is not None and any(version not in aspired for version in versions):
        return False
    if aspired is None:
        return all(status.state in _TERMINAL for status in versions.values())
    # An aspired version in END without an error is one TF Serving unloaded earlier and has
    # not started loading again yet (a rollback to it): it will move, so look again. Only a
    # failed load (END with an error) is final for an aspired version.
    return all(status.state == VersionState.AVAILABLE or (status.state == VersionState.END and status.error_code != 0) for status in versions.values())


def plan(data: PlanInput) -> Plan:
    config: dict[str, ModelConfigSpec] = {}
    reports: dict[str, ModelReport] = {}
    for name in sorted(data.models):
        try:
            _plan_model(data, name, config, reports)
        except Exception as exc:  # noqa: BLE001 - a crash on one model is that model's error, not the pass's
            _keep_previous(data, name, config, reports, f"internal error while planning this model ({type(exc).__name__}: {exc})")

    # Rule 4: TF Serving restarted (or lost the model) if it answers NOT_FOUND for a model it was given.
    forgotten = any(name in data.served and data.served[name] is None for name in data.applied if name in config)
    reload_needed = config != dict(data.applied) or forgotten
    return Plan(tuple(config[name] for name in sorted(config)), reload_needed, reports)


def _keep_previous(data: PlanInput, name: str, config: dict[str, ModelConfigSpec], reports: dict[str, ModelReport], problem: str) -> None:
    """Rule 1 for a model that cannot be planned: keep what TF Serving was given, report why."""
    previous = data.applied.get(name)
    config.pop(name, None)
    if previous is not None:
        config[name] = previous
        problem += "; still serving the last valid assignment"
    revision = data.models[name].revision if name in data.models else None
    reports[name] = ModelReport(revision, {}, dict(previous.version_labels) if previous is not None else {}, problem[:2000], settled=True)


def _plan_model(data: PlanInput, name: str, config: dict[str, ModelConfigSpec], reports: dict[str, ModelReport]) -> None:
    """The rules above for one model: its entry in config (if any) and its report."""
    model = data.models[name]
    previous = data.applied.get(name)
    served = data.served.get(name)
    problem = model.error if model.assignment is None else _problem_with(model)
    if problem is not None:
        # Rule 1: keep what was applied before, report why the new assignment is not.
        if previous is not None:
            config[name] = previous
            problem += "; still serving the last valid assignment"
        aspired = aspired_versions(previous, None) if previous is not None else ()
        versions = _versions_to_report(aspired, served) if previous is not None else {}
        kept_labels = dict(previous.version_labels) if previous is not None else {}
        reports[name] = ModelReport(model.revision, versions, kept_labels, problem, settled=True)
        return
    wanted = model.spec
    assert wanted is not None
    aspired = aspired_versions(wanted, model.disk)
    labels, waiting = _labels_to_send(wanted, previous, served, aspired, name in data.labels_refused)
    spec = ModelConfigSpec(wanted.name, wanted.base_path, wanted.model_platform, wanted.model_version_policy, labels)
    config[name] = spec
    versions = _versions_to_report(aspired, served)
    error = data.reload_errors.get(name) or _load_failure(versions)
    reports[name] = ModelReport(model.revision, versions, dict(labels), error, _settled(versions, waiting, aspired))
