"""The controller's settings, validated once at start-up (same timing rules as the agent)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tfleet.controller.resync import FULL_PLAN_EVERY, RATE_MAX
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
    # Seconds in which the leader plans every model and host again, the safety net under the
    # incremental planner: a rolling resync (controller/resync.py), a bounded slice per pass,
    # so no pass costs the whole fleet (docs/architecture.md, "The resync rolls; it never
    # holds a pass"). The default keeps the minute the periodic full plan had.
    full_plan_interval: float = Field(default=FULL_PLAN_EVERY, ge=10.0, le=3600.0)
    # At most this many models a second for that net: a larger fleet's cycle (and the hosts',
    # which follows it) is longer than the interval, so the net's CPU stays bounded whatever
    # the fleet's size (a minute's cycle of 100,000 models held a third of a core).
    # controller/resync.py.
    full_plan_rate: float = Field(default=RATE_MAX, ge=1.0, le=100_000.0)
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
