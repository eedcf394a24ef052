"""The agent's settings: built once at start-up from flags / TFLEET_* variables, validated
against each other, then frozen.

The timing rules keep the safety promises true: every remote call must end (and a lease
renewal be retried) well within the lease TTL, otherwise a slow call would let the host's
lease lapse and its keys vanish while it is healthy.
"""

from __future__ import annotations

import os
import pathlib

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tfleet.keyspace import DEFAULT_PREFIX, validate_name, validate_prefix
from tfleet.store import EtcdSettings
from tfleet.timing import check_lease_timing, check_unresponsive_timing


def default_state_dir() -> pathlib.Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return pathlib.Path(base) / "tfleet"


def detect_memory_mb() -> int:
    """Total memory of the machine, the default capacity the host advertises."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        return 0


def _check_address(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {value!r} must have the form HOST:PORT")
    return value


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    host: str
    etcd: EtcdSettings
    tfs_grpc: str
    tfs_rest: str
    http_port: int = Field(ge=0, le=65535)
    http_host: str = "0.0.0.0"
    # The address other machines use to reach this host's ports (defaults to the TF Serving host).
    advertise_host: str | None = None
    prefix: str = DEFAULT_PREFIX
    lease_ttl: int = 10
    memory_mb: int = Field(default_factory=detect_memory_mb, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    state_dir: pathlib.Path = Field(default_factory=default_state_dir)
    resync_interval: float = Field(default=30.0, ge=0.5)
    # A full pass re-reads etcd and the disk but asks TF Serving about one model only; every
    # status_sweep_interval it asks about all of them (catches drift no event announces).
    status_sweep_interval: float = Field(default=300.0, ge=1.0)
    coalesce_window: float = Field(default=0.02, ge=0.0, le=2.0)
    reload_timeout: float = Field(default=8.0, gt=0)
    status_timeout: float = Field(default=2.0, gt=0)
    poll_interval: float = Field(default=0.25, gt=0)
    # Every tfs_probe_interval the agent asks TF Serving about one model it was given: NOT_FOUND
    # means TF Serving restarted empty (the agent sends the list again at once); a deadline
    # passed tfs_unresponsive_after times in a row means it hangs (status stops claiming
    # AVAILABLE, /readyz fails, the host record says since when).
    tfs_probe_interval: float = Field(default=3.0, gt=0)
    tfs_unresponsive_after: int = Field(default=3, ge=1)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return validate_name("host", value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @field_validator("tfs_grpc", "tfs_rest")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        return _check_address(value, "--" + (info.field_name or "address").replace("_", "-"))

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            validate_name("label", key)
        return value

    @model_validator(mode="after")
    def _timing(self) -> AgentSettings:
        ttl = self.lease_ttl
        check_lease_timing(ttl, self.etcd.call_timeout, "one slow call loses the lease")
        for name in ("reload_timeout", "status_timeout"):
            value = getattr(self, name)
            if value >= ttl:
                raise ValueError(f"--{name.replace('_', '-')} ({value:g} s) must be shorter than --lease-ttl ({ttl} s)")
        check_unresponsive_timing(ttl, self.tfs_probe_interval, self.status_timeout, self.tfs_unresponsive_after)
        return self

    @property
    def renew_interval(self) -> float:
        return self.lease_ttl / 3

    @property
    def advertised_host(self) -> str:
        return self.advertise_host or self.tfs_grpc.rpartition(":")[0]

    @property
    def state_file(self) -> pathlib.Path:
        return self.state_dir / f"agent-{self.host}.json"
