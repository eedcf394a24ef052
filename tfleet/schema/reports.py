"""What the leading controller publishes for readers: who leads (``leader``), each model's
account (``modelstatus/``), where to route (``routes/``) and every unusable value (``problems``).

All are daemon records: written by tfleet only, read by the CLI, the dashboard, load
balancers and etcdctl users, so unknown fields are ignored and new ones can be added.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from tfleet.schema.base import DaemonRecord
from tfleet.schema.fields import Address, HealthState, NonNegativeInt, ShortText, VersionKey
from tfleet.tfs.types import VersionState


class LeaderRecord(DaemonRecord):
    """``<prefix>/leader``, bound to the leader's lease."""

    id: ShortText
    since: dt.datetime
    version: ShortText
    dashboard_address: Address | None = None


class ReplicaReport(DaemonRecord):
    host: str
    versions: dict[VersionKey, VersionState] = Field(default_factory=dict)
    labels: dict[str, NonNegativeInt] = Field(default_factory=dict)
    ready: bool = False
    canary: bool = False
    # What the agent reports wrong with this replica (its error, versions failing or UNKNOWN),
    # as tfleet/health.py words it (added field).
    errors: list[str] = Field(default_factory=list)


class VersionFailure(DaemonRecord):
    version: NonNegativeInt
    host: str
    error: str
    at: dt.datetime
    retry_after: dt.datetime


class RolloutReport(DaemonRecord):
    phase: Literal["stable", "adding", "labeling", "removing", "canary", "aborting", "backoff"] = "stable"
    from_versions: list[NonNegativeInt] = Field(default_factory=list)
    to_versions: list[NonNegativeInt] = Field(default_factory=list)
    reason: str = ""
    # The labels served before the rollout (added field): an abort, or an automatic abort
    # after a failed load, puts them back together with from_versions.
    from_labels: dict[str, NonNegativeInt] = Field(default_factory=dict)


class RouteEndpoint(DaemonRecord):
    host: ShortText
    grpc_address: Address
    rest_address: Address


class RouteTable(DaemonRecord):
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


class ModelStatusReport(DaemonRecord):
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


class FleetProblem(DaemonRecord):
    key: str
    section: str  # models, assignments, hosts, hostctl, status, versions, schedules, leader, ...
    error: str
    since: dt.datetime  # when the leading controller first saw this error on this key


class FleetProblems(DaemonRecord):
    """``<prefix>/problems``: every value in etcd no reader can use, kept by the leader.

    Bounded: the first ``len(problems)`` problems in key order, and the total.
    """

    total: NonNegativeInt
    by_section: dict[str, NonNegativeInt] = Field(default_factory=dict)
    problems: list[FleetProblem] = Field(default_factory=list)
    updated_at: dt.datetime
