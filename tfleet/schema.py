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

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
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

# -- bounded scalar types (strictness: see ``parse``) -------------------------------------------
# Every integer in etcd is an int64 (TF Serving's versions are int64, Go and protobuf readers
# of the keyspace cannot hold more); these names shadow pydantic's unbounded ones on purpose,
# so every field declared with them is bounded.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
UInt32Positive = Annotated[int, Field(ge=1, le=2**32 - 1)]  # TF Serving's Latest.num_versions is a uint32
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]  # gRPC status codes
MAX_SECONDS = 86_400.0  # a day: no backoff or timeout in a document is longer
PATH_MAX_LENGTH = 4096
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(text: str) -> str:
    found = _CONTROL_RE.search(text)
    if found:
        raise ValueError(f"must not contain control characters (found {found.group()!r} at position {found.start()})")
    return text


# Paths, platforms and addresses end up in TF Serving's config, gRPC calls, file names and
# rendered load-balancer configurations: no control characters (NUL, newline) there.
PathText = Annotated[str, Field(min_length=1, max_length=PATH_MAX_LENGTH), AfterValidator(_no_control)]
ShortText = Annotated[str, Field(max_length=256), AfterValidator(_no_control)]
Address = Annotated[str, Field(max_length=512), AfterValidator(_no_control)]


def _check_version_key(text: str) -> str:
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 19 and int(text) <= INT64_MAX):
        raise ValueError(f"version {text[:40]!r} must be a non-negative int64 written in decimal digits")
    return text


# A model's health as tfleet/health.py decides it (its STATES; a unit test keeps them equal).
HealthState = Literal["ok", "degraded", "failing", "unavailable", "unknown", "deleting"]

# A version number used as a JSON object key ("3"): ASCII digits only (str.isdigit accepts "²").
VersionKey = Annotated[str, AfterValidator(_check_version_key)]


class SchemaError(ValueError):
    """A JSON value that does not match its schema, explained in one sentence per problem."""


class _OperatorDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DaemonRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# -- assignments ------------------------------------------------------------------------------


class LatestPolicy(_OperatorDocument):
    num_versions: UInt32Positive = 1


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
            raise ValueError(f'must hold exactly one of "latest", "all" or "specific", found {len(chosen)}' + (f" ({', '.join(chosen)})" if chosen else ""))
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

    base_path: PathText
    model_platform: Annotated[ShortText, Field(min_length=1)] = "tensorflow"
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

    host: ShortText
    grpc_address: Address
    rest_address: Address
    memory_mb: NonNegativeInt = 0
    labels: dict[str, str] = Field(default_factory=dict)
    agent_version: str
    started_at: dt.datetime
    # Where the agent serves /metrics, /healthz, /readyz (for Prometheus service discovery).
    metrics_address: Address | None = None
    # Since when TF Serving on this host does not answer (unreachable, or hung: probes past
    # their deadline); null while it serves. The controller moves replicas away after a grace.
    tfs_unresponsive_since: dt.datetime | None = None


class VersionReport(_DaemonRecord):
    state: VersionState
    error_code: Int32 = 0
    error_message: str = ""


class ModelStatus(_DaemonRecord):
    """``<prefix>/status/<host>/<model>``, bound to the agent's lease."""

    # mod_revision of the assignment this status describes the outcome of (null when the
    # agent reports a model whose assignment it could not read).
    assignment_revision: NonNegativeInt | None
    versions: dict[VersionKey, VersionReport] = Field(default_factory=dict)
    # Labels TF Serving currently applies (a label waits here until its version is AVAILABLE).
    version_labels: dict[str, NonNegativeInt] = Field(default_factory=dict)
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
    canary_replicas: Annotated[int, Field(ge=1, le=10_000)] = 1
    promote: bool = False
    abort: bool = False
    # After a version failed to load anywhere, wait this long before trying it again.
    failure_backoff_seconds: Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)] = 300.0


class AlertThresholds(_OperatorDocument):
    """Per-model alert thresholds, rendered into Prometheus rules by `tfleet alerts render`."""

    latency_p99_ms: Annotated[float, Field(gt=0, le=MAX_SECONDS * 1000, allow_inf_nan=False)] | None = None
    error_rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None  # share of failed requests
    for_: Annotated[str, Field(alias="for", pattern=r"^[0-9]+[smh]$")] = "5m"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


class ModelIntent(_OperatorDocument):
    """``<prefix>/models/<model>``: what the operator wants for a model, fleet-wide."""

    base_path: PathText
    model_platform: Annotated[ShortText, Field(min_length=1)] = "tensorflow"
    model_version_policy: ModelVersionPolicy = Field(default_factory=lambda: ModelVersionPolicy(latest=LatestPolicy()))
    version_labels: dict[LabelName, NonNegativeInt] = Field(default_factory=dict)
    replicas: Annotated[int, Field(ge=0, le=10_000)] = 1
    host_selector: dict[str, str] = Field(default_factory=dict)
    spread_by: ShortText | None = None
    memory_mb: PositiveInt | None = None
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

    model: ShortText
    version: NonNegativeInt
    path: PathText
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
    revision: NonNegativeInt | None
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

    id: ShortText
    since: dt.datetime
    version: ShortText
    dashboard_address: Address | None = None


class ReplicaReport(_DaemonRecord):
    host: str
    versions: dict[VersionKey, VersionState] = Field(default_factory=dict)
    labels: dict[str, NonNegativeInt] = Field(default_factory=dict)
    ready: bool = False
    canary: bool = False
    # What the agent reports wrong with this replica (its error, versions failing or UNKNOWN),
    # as tfleet/health.py words it (added field).
    errors: list[str] = Field(default_factory=list)


class VersionFailure(_DaemonRecord):
    version: NonNegativeInt
    host: str
    error: str
    at: dt.datetime
    retry_after: dt.datetime


class RolloutReport(_DaemonRecord):
    phase: Literal["stable", "adding", "labeling", "removing", "canary", "aborting", "backoff"] = "stable"
    from_versions: list[NonNegativeInt] = Field(default_factory=list)
    to_versions: list[NonNegativeInt] = Field(default_factory=list)
    reason: str = ""
    # The labels served before the rollout (added field): an abort, or an automatic abort
    # after a failed load, puts them back together with from_versions.
    from_labels: dict[str, NonNegativeInt] = Field(default_factory=dict)


class RouteEndpoint(_DaemonRecord):
    host: ShortText
    grpc_address: Address
    rest_address: Address


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

    intent_revision: NonNegativeInt | None
    wanted_replicas: NonNegativeInt = 0
    # version (as a string) -> replicas where it is AVAILABLE
    ready_replicas: dict[VersionKey, NonNegativeInt] = Field(default_factory=dict)
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
    serving_replicas: NonNegativeInt = 0
    health: HealthState = "unknown"
    health_reason: str = ""


class FleetProblem(_DaemonRecord):
    key: str
    section: str  # models, assignments, hosts, hostctl, status, versions, schedules, leader, ...
    error: str
    since: dt.datetime  # when the leading controller first saw this error on this key


class FleetProblems(_DaemonRecord):
    """``<prefix>/problems``: every value in etcd no reader can use, kept by the leader.

    Bounded: the first ``len(problems)`` problems in key order, and the total.
    """

    total: NonNegativeInt
    by_section: dict[str, NonNegativeInt] = Field(default_factory=dict)
    problems: list[FleetProblem] = Field(default_factory=list)
    updated_at: dt.datetime


# -- encoding -----------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


# Limits checked before the JSON decoder runs (so that it cannot recurse or allocate without
# bound): etcd's default request limit is 1.5 MiB, a value can never be larger unless the
# cluster raised it; no tfleet document nests deeper than a handful of levels.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_INT_DIGITS = 20  # int64 has at most 19 digits (and a sign): longer is rejected unread
MAX_PROBLEM_CHARS = 300  # one explained problem, in an error message
MAX_ERROR_CHARS = 2000  # a whole SchemaError message (it is stored in status keys)

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_BRACKETS_RE = re.compile(r"[\[\]{}]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SUSPECT_ESCAPE_RE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")
# a number that may not fit (int64 has 19 digits) or that a float cannot hold (1e999)
_LONG_NUMBER_RE = re.compile(r"[0-9]{20}|[eE][+-]?[0-9]{3}")


class _Rejected(ValueError):
    """Raised by the JSON decoder's hooks; becomes a SchemaError."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _location(loc: tuple[Any, ...]) -> str:
    return _clip(".".join(str(part) for part in loc), 200) or "(document)"


def explain(error: ValidationError) -> str:
    """One line per problem, naming the field path, e.g. ``model_version_policy.latest.num_versions: ...``."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append(_clip(f"{_location(item['loc'])}: {message}", MAX_PROBLEM_CHARS))
    return safe_text("; ".join(problems))


def safe_text(text: str) -> str:
    """Text that encodes as UTF-8 whatever it quotes (a lone surrogate becomes U+FFFD)."""
    return _SURROGATE_RE.sub("\ufffd", text)


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest more than MAX_DEPTH levels (strings skipped), without
    recursing; stops at the first bracket too deep."""
    depth = 0
    for match in _BRACKETS_RE.finditer(_STRING_RE.sub("", text) if '"' in text else text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise _Rejected(f"duplicate key {duplicate!r} (JSON readers disagree on which one wins)")
    return document


def _no_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not a number JSON allows")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Rejected(f"integer {digits[:24]}... has {len(digits)} digits; integers must fit in 64 bits")
    return int(digits)


def _finite_float(text: str) -> float:
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise _Rejected(f"number {text[:24]!r} is out of range")
    return number


def _check_strings(node: Any, path: str) -> None:
    """Reject what no field may hold: lone surrogates (cannot be encoded again) and NUL."""
    stack = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            bad = _SURROGATE_RE.search(item) or ("\x00" in item and "\x00")
            if bad:
                what = "a NUL character" if bad == "\x00" else "a lone UTF-16 surrogate escape"
                raise _Rejected(f"{where or '(document)'}: text holds {what}")
        elif isinstance(item, dict):
            for key, value in item.items():
                child = f"{where}.{_clip(safe_text(key), 60)}" if where else _clip(safe_text(key), 60)
                stack.append((key, child + " (key)"))
                stack.append((value, child))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{index}]") for index, value in enumerate(item))


def _decode(raw: bytes | str) -> tuple[str, Any]:
    """The document's text and its JSON value, after the checks no decoder makes."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _Rejected(f"document is {len(raw)} bytes long; the limit is {MAX_DOCUMENT_BYTES}")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected(f"invalid JSON: not UTF-8 text (byte {exc.start})") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise _Rejected("invalid JSON: starts with a byte order mark")
    if _too_deep(text):
        raise _Rejected(f"invalid JSON: nests arrays or objects more than {MAX_DEPTH} levels deep")
    # The per-number hooks cost a Python call per number: only when a number could be huge.
    numbers = {"parse_int": _bounded_int, "parse_float": _finite_float} if _LONG_NUMBER_RE.search(text) else {}
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, **numbers)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    # Decoded UTF-8 holds no surrogates and JSON strings no raw control characters: only an
    # escape (or a str given directly) can bring in a lone surrogate or NUL; walk the value
    # (to name the field) only then.
    if _SUSPECT_ESCAPE_RE.search(text) or (isinstance(raw, str) and _SURROGATE_RE.search(text)):
        _check_strings(data, "")
    return text, data


def parse(model: type[M], raw: bytes | str, what: str) -> M:
    """Decode and validate one JSON document; ``what`` names it in the error (a key, a file).

    Total: for ANY input this returns a valid document or raises SchemaError, nothing else
    (tests/unit/test_schema_fuzz.py). Strict: no coercion between strings, numbers and
    booleans ("1" is not 1, 2.0 is not 2, "yes" is not true); timestamps are RFC 3339
    strings; duplicate keys, NaN/Infinity, integers beyond int64, lone surrogate escapes and
    NUL characters are refused, and nesting is bounded before the decoder recurses.
    """
    where = _clip(safe_text(what), 300)
    try:
        text, data = _decode(raw)
        if not isinstance(data, dict):
            raise _Rejected(f"must be a JSON object, found {type(data).__name__}")
        return model.model_validate_json(text, strict=True)
    except _Rejected as exc:
        raise SchemaError(_clip(f"{where}: {exc}", MAX_ERROR_CHARS)) from None
    except ValidationError as exc:
        raise SchemaError(_clip(f"{where}: {explain(exc)}", MAX_ERROR_CHARS)) from None
    except Exception as exc:  # noqa: BLE001 - parse is total: a reader's pass must never die on a value
        raise SchemaError(_clip(f"{where}: could not be read ({type(exc).__name__}: {safe_text(str(exc))})", MAX_ERROR_CHARS)) from None


def decode_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """The JSON object in raw, decoded with parse's checks (no schema); SchemaError otherwise."""
    try:
        _, data = _decode(raw)
    except _Rejected as exc:
        raise SchemaError(_clip(f"{safe_text(what)}: {exc}", MAX_ERROR_CHARS)) from None
    except Exception as exc:  # noqa: BLE001 - as total as parse
        raise SchemaError(_clip(f"{safe_text(what)}: could not be read ({type(exc).__name__})", MAX_ERROR_CHARS)) from None
    if not isinstance(data, dict):
        raise SchemaError(f"{safe_text(what)}: must be a JSON object, found {type(data).__name__}")
    return data


def validate(model: type[M], data: Any, what: str) -> M:
    """Validate a document already decoded (a YAML mapping from the CLI), as strictly as parse.

    YAML gives integers, floats and booleans natively, so strict types cost a YAML author
    nothing; a quoted "2" for replicas is refused as it would be in etcd.
    """
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise SchemaError(_clip(f"{safe_text(what)}: {explain(exc)}", MAX_ERROR_CHARS)) from None


def encode(document: BaseModel) -> bytes:
    """Compact JSON as stored in etcd (RFC 3339 timestamps, null fields kept).

    Never raises for text: a lone surrogate (a file name read with surrogateescape, quoted in
    an error message) is written as U+FFFD instead of failing the writer's pass.
    """
    try:
        return document.model_dump_json().encode()
    except ValueError:  # PydanticSerializationError: text that UTF-8 cannot encode
        return pydantic_core.to_json(_safe_tree(document.model_dump(mode="python")))


def _safe_tree(node: Any) -> Any:
    if isinstance(node, str):
        return safe_text(node)
    if isinstance(node, dict):
        return {_safe_tree(key): _safe_tree(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_safe_tree(value) for value in node]
    return node


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
