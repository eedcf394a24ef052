"""``models/<model>``: what the operator wants for a model fleet-wide, how a change rolls out,
its alert thresholds, and the actions scheduled on it (``schedules/<model>/<id>``)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from tfleet.schema.assignment import Assignment, LatestPolicy, ModelVersionPolicy, SpecificPolicy
from tfleet.schema.base import OperatorDocument
from tfleet.schema.fields import MAX_SECONDS, LabelName, NonNegativeInt, PathText, PositiveInt, ShortText


class RolloutSpec(OperatorDocument):
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


class AlertThresholds(OperatorDocument):
    """Per-model alert thresholds, rendered into Prometheus rules by `tfleet alerts render`."""

    latency_p99_ms: Annotated[float, Field(gt=0, le=MAX_SECONDS * 1000, allow_inf_nan=False)] | None = None
    error_rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None  # share of failed requests
    for_: Annotated[str, Field(alias="for", pattern=r"^[0-9]+[smh]$")] = "5m"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


class ModelIntent(OperatorDocument):
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
        policy = self.model_version_policy if versions is None else _specific_policy(tuple(versions))
        return Assignment(
            base_path=self.base_path,
            model_platform=self.model_platform,
            model_version_policy=policy,
            version_labels=self.version_labels if labels is None else labels,
        )


@functools.lru_cache(maxsize=1024)
def _specific_policy(versions: tuple[int, ...]) -> ModelVersionPolicy:
    """One (frozen) policy object per version list: a rollout step builds one per replica,
    and validating it again each time was a tenth of planning a moved replica."""
    return ModelVersionPolicy(specific=SpecificPolicy(versions=list(versions)))


class ScheduledAction(OperatorDocument):
    """``<prefix>/schedules/<model>/<id>``: promote a canary or roll back at a given time."""

    at: dt.datetime
    action: Literal["promote", "abort", "rollback"]
    # rollback: the history sequence whose intent to restore (default: the one before the last)
    to_sequence: NonNegativeInt | None = None
    created_by: str = ""
    done_at: dt.datetime | None = None
    outcome: str | None = None
