"""The soak's settings: fleet size, timings, the checker's windows and bounds."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from bench.chaos.schedule import FAULT_KINDS, Fault, make_schedule


@dataclass
class Settings:
    """One soak's settings (the command line's, or a test's)."""

    seed: int = 1
    duration: float = 600.0
    hosts: int = 4
    models: int = 8
    kinds: tuple[str, ...] = FAULT_KINDS
    lease_ttl: int = 6
    etcd_timeout: float = 1.0
    reload_timeout: float = 4.0
    gap: tuple[float, float] = (4.0, 12.0)
    write_interval: tuple[float, float] = (0.5, 3.0)
    sample_interval: float = 0.5
    health_grace: float = 10.0
    unload_lookback: float = 30.0
    watch_lag: float = 5.0
    converge_bound: float = 30.0
    startup_timeout: float = 180.0
    max_faults: int = 1000
    # "any": a new version is any other of VERSIONS, so a version removed earlier comes back
    # (a rollback); "forward": always a version never served before (upgrades only)
    writer_mode: str = "any"
    root: pathlib.Path | None = None
    keep: bool = False
    verbose: bool = True

    def schedule(self, count: int | None = None) -> list[Fault]:
        """The first ``count`` faults (default max_faults) of the schedule this soak runs:
        what run() injects, --print-schedule prints and a test can predict."""
        return make_schedule(
            self.seed, self.max_faults if count is None else count, self.kinds, self.hosts, self.models, self.lease_ttl, self.gap, self.reload_timeout
        )
