"""Pydantic models of every JSON value tfleet keeps in etcd (keyspace version 1).

Two kinds of document live in etcd:

* written by people (assignments, later intents): unknown fields are *rejected*, because a
  typo such as ``"model_version_polcy"`` silently ignored would serve the wrong thing;
* written by tfleet daemons (host records, status): unknown fields are *ignored*, so that an
  older reader keeps working while a newer writer adds fields.

Field names follow TensorFlow Serving's own ModelConfig so that its users recognise them.
``parse`` turns any failure into a SchemaError whose message an operator can act on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from tfleet.tfs.types import ModelConfigSpec, VersionPolicy, VersionState

_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_label(label: str) -> str:
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"version label {label!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return label


LabelName = Annotated[str, AfterValidator(_check_label)]


class SchemaError(ValueError):
    """A JSON value that does not match its schema, explained in one sentence per problem."""


class _OperatorDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DaemonRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- assignments ------------------------------------------------------------------------------


class LatestPolicy(_OperatorDocument):
    num_versions: PositiveInt = 1


class AllPolicy(_OperatorDocument):
    pass


class SpecificPolicy(_OperatorDocument):
    versions: Annotated[list[NonNegativeInt], Field(min_length=1)]


class ModelVersionPolicy(_OperatorDocument):
    """Exactly one of latest / all / specific, as in TF Serving's ServableVersionPolicy."""

    latest: LatestPolicy | None = None
    all: AllPolicy | None = None
    specific: SpecificPolicy | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelVersionPolicy:
        chosen = [name for name in ("latest", "all", "specific") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(
                'must hold exactly one of "latest", "all" or "specific", '
                f"found {len(chosen)}" + (f" ({', '.join(chosen)})" if chosen else "")
            )
        return self

    @model_serializer(mode="wrap")
    def _only_the_chosen_policy(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # {"latest": {"num_versions": 1}} rather than {"latest": ..., "all": null, "specific": null}
        return {key: value for key, value in handler(self).items() if value is not None}

    def to_spec(self) -> VersionPolicy:
        if self.latest is not None:
            return VersionPolicy("latest", num_versions=self.latest.num_versions)
        if self.all is not None:
            return VersionPolicy("all")
        assert self.specific is not None
        return VersionPolicy("specific", versions=tuple(sorted(set(self.specific.versions))))


class Assignment(_OperatorDocument):
    """``<prefix>/assignments/<host>/<model>``: what one host must serve of one model."""

    base_path: Annotated[str, Field(min_length=1)]
    model_platform: Annotated[str, Field(min_length=1)] = "tensorflow"
    model_version_policy: ModelVersionPolicy = Field(default_factory=lambda: ModelVersionPolicy(latest=LatestPolicy()))
    version_labels: dict[LabelName, NonNegativeInt] = Field(default_factory=dict)

    def to_config(self, name: str) -> ModelConfigSpec:
        return ModelConfigSpec(
            name=name,
            base_path=self.base_path,
            model_platform=self.model_platform,
            model_version_policy=self.model_version_policy.to_spec(),
            version_labels=tuple(sorted(self.version_labels.items())),
        )


# -- host records and status (written by the agent) ------------------------------------------


class HostRecord(_DaemonRecord):
    """``<prefix>/hosts/<host>``, bound to the agent's lease."""

    host: str
    grpc_address: str
    rest_address: str
    memory_mb: NonNegativeInt = 0
    labels: dict[str, str] = Field(default_factory=dict)
    agent_version: str
    started_at: dt.datetime
    # Where the agent serves /metrics, /healthz, /readyz (for Prometheus service discovery).
    metrics_address: str | None = None
    # Since when TF Serving on this host does not answer (unreachable, or hung: probes past
    # their deadline); null while it serves. The controller moves replicas away after a grace.
    tfs_unresponsive_since: dt.datetime | None = None


class VersionReport(_DaemonRecord):
    state: VersionState
    error_code: int = 0
    error_message: str = ""


class ModelStatus(_DaemonRecord):
    """``<prefix>/status/<host>/<model>``, bound to the agent's lease."""

    # mod_revision of the assignment this status describes the outcome of (null when the
    # agent reports a model whose assignment it could not read).
    assignment_revision: int | None
    versions: dict[str, VersionReport] = Field(default_factory=dict)
    # Labels TF Serving currently applies (a label waits here until its version is AVAILABLE).
    version_labels: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    updated_at: dt.datetime


# -- controller: intent, registry, history, model status ------------------------------------


class RolloutSpec(_OperatorDocument):
    """How a change of versions reaches the replicas.

    rolling: every replica gets the new version next to the old one, labels move once it is
    AVAILABLE on every ready replica, then the old version is removed (make-before-break).
    canary: only ``canary_replicas`` replicas get the new version (under the ``canary`` label)
    until ``promote`` is set; ``abort`` (or a failed load) removes it again.
    """

    strategy: Literal["rolling", "canary"] = "rolling"
    canary_replicas: PositiveInt = 1
    promote: bool = False
    abort: bool = False
    # After a version failed to load anywhere, wait this long before trying it again.
    failure_backoff_seconds: Annotated[float, Field(gt=0)] = 300.0


class AlertThresholds(_OperatorDocument):
    """Per-model alert thresholds, rendered into Prometheus rules by `tfleet alerts render`."""

    latency_p99_ms: Annotated[float, Field(gt=0)] | None = None
    error_rate: Annotated[float, Field(gt=0, le=1)] | None = None  # share of failed requests
    for_: Annotated[str, Field(alias="for", pattern=r"^[0-9]+[smh]$")] = "5m"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


class ModelIntent(_OperatorDocument):
    """``<prefix>/models/<model>``: what the operator wants for a model, fleet-wide."""

    base_path: Annotated[str, Field(min_length=1)]
    model_platform: Annotated[str, Field(min_length=1)] = "tensorflow"
    model_version_policy: ModelVersionPolicy = Field(default_factory=lambda: ModelVersionPolicy(latest=LatestPolicy()))
    version_labels: dict[LabelName, NonNegativeInt] = Field(default_factory=dict)
    replicas: Annotated[int, Field(ge=0, le=10_000)] = 1
    host_selector: dict[str, str] = Field(default_factory=dict)
    spread_by: str | None = None
    memory_mb: Annotated[int, Field(gt=0)] | None = None
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    description: str = ""
    owner: str = ""
    tags: list[str] = Field(default_factory=list)
    alerts: AlertThresholds | None = None

    @model_validator(mode="after")
    def _labels_point_at_served_versions(self) -> ModelIntent:
        specific = self.model_version_policy.specific
        if specific is not None:
            for label, version in self.version_labels.items():
                if version not in specific.versions:
                    raise ValueError(f"version label {label!r} points at version {version}, which model_version_policy.specific does not list")
        return self

    def assignment(self, versions: tuple[int, ...] | None = None, labels: dict[str, int] | None = None) -> Assignment:
        """The assignment of one replica: this intent's config, with the versions and labels of
        the rollout step the replica is at (None: the intent's own)."""
        policy = self.model_version_policy if versions is None else ModelVersionPolicy(specific=SpecificPolicy(versions=list(versions)))
        return Assignment(
            base_path=self.base_path,
            model_platform=self.model_platform,
            model_version_policy=policy,
            version_labels=self.version_labels if labels is None else labels,
        )


class VersionRecord(_OperatorDocument):
    """``<prefix>/versions/<model>/<version>``: metadata of one registered version."""

    model: str
    version: NonNegativeInt
    path: str
    source_uri: str = ""
    source_commit: str = ""
    checksum: str  # "sha256:<hex>" over the version directory's files (names and contents)
    size_bytes: NonNegativeInt
    created_at: dt.datetime  # modification time of the version directory
    registered_at: dt.datetime
    registered_by: str = ""
    description: str = ""
    tags: list[str] = Field(default_factory=list)


class RevisionSpan(_DaemonRecord):
    """An inclusive range of etcd revisions, e.g. the ones a history gap could not record."""

    first: NonNegativeInt
    last: NonNegativeInt


class HistoryEntry(_DaemonRecord):
    """``<prefix>/history/<model>/<seq>``: one change of a model's intent, append-only.

    action "gap" (written by the history recorder when etcd compacted revisions it had not
    read yet): the model's intent may have changed any number of times within ``revisions``
    without an entry; ``new`` is its value as of ``revision`` (null: it had none).
    """

    sequence: NonNegativeInt
    model: str
    action: Literal["create", "update", "delete", "rollback", "gap"]
    # None: written in the same transaction as the change, so the entry key's mod_revision is
    # the change's revision (Registry.history fills it in); otherwise the recorded revision.
    revision: int | None
    at: dt.datetime
    author: str | None = None
    source: Literal["cli", "etcd"] = "etcd"
    previous: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    # Only on gap entries: the revisions whose changes could not be recorded one by one.
    revisions: RevisionSpan | None = None
    # Why an entry says less than usual, e.g. "the stored value is not a JSON object".
    note: str | None = None


class HistoryGap(_DaemonRecord):
    """The last gap of the history recorder, kept in its cursor for etcdctl readers."""

    revisions: RevisionSpan
    at: dt.datetime
    models: NonNegativeInt  # how many models got a gap entry


class HistoryCursor(_DaemonRecord):
    """``<prefix>/historycursor``: how far the leading controller's history recorder got.

    Every put and delete of ``models/`` with a revision <= ``revision`` has its history
    entry (or is covered by a gap entry). ``keep`` is the retention the recorder applies
    (the newest N entries per model); the CLI reads it to prune in its own writes.
    """

    revision: NonNegativeInt
    updated_at: dt.datetime
    keep: PositiveInt | None = None
    last_gap: HistoryGap | None = None


class HostControl(_OperatorDocument):
    """``<prefix>/hostctl/<host>``: operator controls of a host (survive agent restarts)."""

    cordoned: bool = False  # no new replicas
    draining: bool = False  # move every replica away, make-before-break
    reason: str = ""


class ScheduledAction(_OperatorDocument):
    """``<prefix>/schedules/<model>/<id>``: promote a canary or roll back at a given time."""

    at: dt.datetime
    action: Literal["promote", "abort", "rollback"]
    # rollback: the history sequence whose intent to restore (default: the one before the last)
    to_sequence: NonNegativeInt | None = None
    created_by: str = ""
    done_at: dt.datetime | None = None
    outcome: str | None = None


class LeaderRecord(_DaemonRecord):
    """``<prefix>/leader``, bound to the leader's lease."""

    id: str
    since: dt.datetime
    version: str
    dashboard_address: str | None = None


class ReplicaReport(_DaemonRecord):
    host: str
    versions: dict[str, VersionState] = Field(default_factory=dict)
    labels: dict[str, int] = Field(default_factory=dict)
    ready: bool = False
    canary: bool = False
    # What the agent reports wrong with this replica (its error, versions failing or UNKNOWN),
    # as tfleet/health.py words it (added field).
    errors: list[str] = Field(default_factory=list)


class VersionFailure(_DaemonRecord):
    version: int
    host: str
    error: str
    at: dt.datetime
    retry_after: dt.datetime


class RolloutReport(_DaemonRecord):
    phase: Literal["stable", "adding", "labeling", "removing", "canary", "aborting", "backoff"] = "stable"
    from_versions: list[int] = Field(default_factory=list)
    to_versions: list[int] = Field(default_factory=list)
    reason: str = ""
    # The labels served before the rollout (added field): an abort, or an automatic abort
    # after a failed load, puts them back together with from_versions.
    from_labels: dict[str, int] = Field(default_factory=dict)


class RouteEndpoint(_DaemonRecord):
    host: str
    grpc_address: str
    rest_address: str


class RouteTable(_DaemonRecord):
    """``<prefix>/routes/<model>``: where load balancers send requests, kept by the controller.

    Only endpoints whose agent reports the version AVAILABLE (and, for a label, the label
    applied) are listed; a host that dies drops out with its lease.
    """

    model: str
    # version (as a string) -> endpoints where it is AVAILABLE
    versions: dict[str, list[RouteEndpoint]] = Field(default_factory=dict)
    # label -> endpoints where TF Serving applies it
    labels: dict[str, list[RouteEndpoint]] = Field(default_factory=dict)
    # endpoints serving any AVAILABLE version (requests that name no version)
    endpoints: list[RouteEndpoint] = Field(default_factory=list)
    updated_at: dt.datetime


class ModelStatusReport(_DaemonRecord):
    """``<prefix>/modelstatus/<model>``: the controller's account of a model."""

    intent_revision: int | None
    wanted_replicas: int = 0
    # version (as a string) -> replicas where it is AVAILABLE
    ready_replicas: dict[str, int] = Field(default_factory=dict)
    replicas: list[ReplicaReport] = Field(default_factory=list)
    rollout: RolloutReport = Field(default_factory=RolloutReport)
    # plain-words reasons for anything not placed ("needs 900 MB, largest free host has 512 MB")
    reasons: list[str] = Field(default_factory=list)
    # why the intent is invalid (the last valid intent keeps being served)
    error: str | None = None
    failures: list[VersionFailure] = Field(default_factory=list)
    updated_at: dt.datetime
    # Added fields (tfleet/health.py): replicas with a version AVAILABLE, and the model's health
    # (ok | degraded | failing | unavailable | unknown | deleting) with the reason in words.
    serving_replicas: int = 0
    health: str = "unknown"
    health_reason: str = ""


# -- encoding -----------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(document)"


def explain(error: ValidationError) -> str:
    """One line per problem, naming the field path, e.g. ``model_version_policy.latest.num_versions: ...``."""
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append(f"{_location(item['loc'])}: {message}")
    return "; ".join(problems)


def parse(model: type[M], raw: bytes | str, what: str) -> M:
    """Decode and validate one JSON document; ``what`` names it in the error (a key, a file)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise SchemaError(f"{what}: invalid JSON: {detail}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{what}: must be a JSON object, found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(f"{what}: {explain(exc)}") from None


def encode(document: BaseModel) -> bytes:
    """Compact JSON as stored in etcd (RFC 3339 timestamps, null fields kept)."""
    return document.model_dump_json().encode()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
