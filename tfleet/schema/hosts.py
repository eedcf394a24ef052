"""Documents about one host: its record and per-model status (written by its agent, bound to
the agent's lease) and the operator's controls of it (``hostctl/``, which outlive the agent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field

from tfleet.schema.base import DaemonRecord, OperatorDocument
from tfleet.schema.fields import Address, Int32, NonNegativeInt, ShortText, VersionKey
from tfleet.tfs.types import VersionState


class HostRecord(DaemonRecord):
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


class VersionReport(DaemonRecord):
    state: VersionState
    error_code: Int32 = 0
    error_message: str = ""


class ModelStatus(DaemonRecord):
    """``<prefix>/status/<host>/<model>``, bound to the agent's lease."""

    # mod_revision of the assignment this status describes the outcome of (null when the
    # agent reports a model whose assignment it could not read).
    assignment_revision: NonNegativeInt | None
    versions: dict[VersionKey, VersionReport] = Field(default_factory=dict)
    # Labels TF Serving currently applies (a label waits here until its version is AVAILABLE).
    version_labels: dict[str, NonNegativeInt] = Field(default_factory=dict)
    error: str | None = None
    updated_at: dt.datetime


class ReplicaStatus(Protocol):
    """What readers use of an agent's status (tfleet/health.py, routing, the planner, the
    dashboard, the CLI): a ModelStatus as parsed, or the StatusFacts the fleet cache keeps."""

    @property
    def assignment_revision(self) -> int | None: ...
    @property
    def versions(self) -> Mapping[str, VersionReport]: ...
    @property
    def version_labels(self) -> Mapping[str, int]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def updated_at(self) -> dt.datetime: ...


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """A validated ModelStatus as the controller's fleet cache keeps it: the same fields in a
    slotted value (72 bytes, against 264 for the pydantic object and its ``__dict__``).

    Why: a fleet of 100,000 models has 200,000 agent statuses, each held for as long as its
    key exists. Built only from a ModelStatus that parsed (``of``), so it is as validated as
    the document; its mappings are read-only by convention and may be shared between equal
    statuses (controller/keyfile.py shares them through controller/compact.py).
    """

    assignment_revision: int | None
    versions: Mapping[str, VersionReport]
    version_labels: Mapping[str, int]
    error: str | None
    updated_at: dt.datetime

    @classmethod
    def of(cls, status: ModelStatus) -> StatusFacts:
        return cls(status.assignment_revision, status.versions, status.version_labels, status.error, status.updated_at)


class HostControl(OperatorDocument):
    """``<prefix>/hostctl/<host>``: operator controls of a host (survive agent restarts)."""

    cordoned: bool = False  # no new replicas
    draining: bool = False  # move every replica away, make-before-break
    reason: str = ""
