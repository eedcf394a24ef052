"""The controller's settings, validated once at start-up (same timing rules as the agent)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tfleet.keyspace import DEFAULT_PREFIX, validate_name, validate_prefix
from tfleet.store import EtcdSettings
from tfleet.timing import check_lease_timing


class ControllerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str
    etcd: EtcdSettings
    http_port: int = Field(ge=0, le=65535)
    # All interfaces: Prometheus scrapes /metrics and uses /sd (docs/operations.md, "Exposure").
    http_host: str = "0.0.0.0"
    prefix: str = DEFAULT_PREFIX
    lease_ttl: int = 10
    resync_interval: float = Field(default=10.0, ge=0.2)
    coalesce_window: float = Field(default=0.1, ge=0.0, le=5.0)
    # The read-only web dashboard (controller/dashboard/): None = not served, 0 = any free port.
    dashboard_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback by default: the dashboard has no authentication; expose it on purpose.
    dashboard_host: str = "127.0.0.1"
    # Seconds a host's TF Serving may not answer (its agent's tfs_unresponsive_since) before
    # its replicas are placed elsewhere, make-before-break (controller/placement.py, rule 3).
    tfs_unresponsive_grace: float = Field(default=60.0, ge=0.0)
    # Seconds between the leader's periodic full plans, the safety net under the incremental
    # planner (controller/reconciler.py). A full plan holds every change-driven pass behind it
    # (about 1.4 s of CPU at 10,000 models, 14 s at 100,000): a large fleet may run it less
    # often (docs/architecture.md, "The full plan is a costly net"). The default keeps the
    # minute it always had.
    full_plan_interval: float = Field(default=60.0, ge=10.0, le=3600.0)
    # History retention: the newest N entries of each model are kept (controller/history.py).
    history_keep: int = Field(default=100, ge=1, le=1_000_000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return validate_name("controller id", value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @model_validator(mode="after")
    def _timing(self) -> ControllerSettings:
        check_lease_timing(self.lease_ttl, self.etcd.call_timeout, "one slow call loses leadership")
        return self

    @property
    def renew_interval(self) -> float:
        return self.lease_ttl / 3
