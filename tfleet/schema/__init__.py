"""Pydantic models of every JSON value tfleet keeps in etcd (keyspace version 1).

One module per subject, so that a reader finds a document by what it is about:

* fields      the bounded numbers and checked text every document is built from
* base        the two kinds of document (written by people: strict; by daemons: lenient)
* codec       parse / validate / encode: total, strict JSON in and out (SchemaError)
* assignment  assignments/<host>/<model> and TF Serving's version policies
* hosts       hosts/<host>, status/<host>/<model> (the agent's), hostctl/<host> (the operator's)
* intent      models/<model> (with its rollout and alert settings), schedules/<model>/<id>
* versions    versions/<model>/<version> (the registry's records)
* history     history/<model>/<seq> and the recorder's historycursor
* reports     what the leading controller publishes: leader, modelstatus/, routes/, problems

Everything is re-exported here: ``from tfleet.schema import ModelIntent, parse`` is the
import path callers use; the modules are the map. Field names follow TensorFlow Serving's
own ModelConfig so that its users recognise them.
"""

from __future__ import annotations

from tfleet.schema.assignment import AllPolicy, Assignment, LatestPolicy, ModelVersionPolicy, SpecificPolicy
from tfleet.schema.base import DaemonRecord, OperatorDocument, utc_now
from tfleet.schema.codec import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_ERROR_CHARS,
    MAX_INT_DIGITS,
    MAX_PROBLEM_CHARS,
    SchemaError,
    decode_object,
    encode,
    explain,
    parse,
    safe_text,
    validate,
)
from tfleet.schema.fields import (
    INT64_MAX,
    INT64_MIN,
    MAX_SECONDS,
    PATH_MAX_LENGTH,
    Address,
    HealthState,
    Int32,
    Int64,
    LabelName,
    NonNegativeInt,
    PathText,
    PositiveInt,
    ShortText,
    UInt32Positive,
    VersionKey,
)
from tfleet.schema.history import HistoryAction, HistoryCursor, HistoryEntry, HistoryGap, HistorySource, RevisionSpan
from tfleet.schema.hosts import HostControl, HostRecord, ModelStatus, ReplicaStatus, StatusFacts, VersionReport
from tfleet.schema.intent import AlertThresholds, ModelIntent, RolloutSpec, ScheduledAction
from tfleet.schema.reports import (
    FleetProblem,
    FleetProblems,
    LeaderRecord,
    ModelStatusReport,
    ReplicaReport,
    RolloutReport,
    RouteEndpoint,
    RouteTable,
    VersionFailure,
)
from tfleet.schema.versions import VersionRecord

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_ERROR_CHARS",
    "MAX_INT_DIGITS",
    "MAX_PROBLEM_CHARS",
    "MAX_SECONDS",
    "PATH_MAX_LENGTH",
    "Address",
    "AlertThresholds",
    "AllPolicy",
    "Assignment",
    "DaemonRecord",
    "FleetProblem",
    "FleetProblems",
    "HealthState",
    "HistoryAction",
    "HistoryCursor",
    "HistoryEntry",
    "HistoryGap",
    "HistorySource",
    "HostControl",
    "HostRecord",
    "Int32",
    "Int64",
    "LabelName",
    "LatestPolicy",
    "LeaderRecord",
    "ModelIntent",
    "ModelStatus",
    "ModelStatusReport",
    "ModelVersionPolicy",
    "NonNegativeInt",
    "OperatorDocument",
    "PathText",
    "PositiveInt",
    "ReplicaReport",
    "ReplicaStatus",
    "RevisionSpan",
    "RolloutReport",
    "RolloutSpec",
    "RouteEndpoint",
    "RouteTable",
    "ScheduledAction",
    "SchemaError",
    "ShortText",
    "SpecificPolicy",
    "StatusFacts",
    "UInt32Positive",
    "VersionFailure",
    "VersionKey",
    "VersionRecord",
    "VersionReport",
    "decode_object",
    "encode",
    "explain",
    "parse",
    "safe_text",
    "utc_now",
    "validate",
]
