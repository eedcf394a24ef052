"""The seeded fault schedule (pure): the same seed gives the same faults, in the same order,
with the same targets, holds and gaps (--print-schedule shows them)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

FAULT_KINDS = (
    "etcd_kill_leader",
    "etcd_freeze_member",
    "etcd_rolling_restart",
    "tfs_restart",
    "tfs_hang",
    "tfs_slow_reload",
    "controller_kill",
    "controller_freeze",
    "agent_freeze",
    "bad_values",
)
HOST_FAULTS = frozenset({"tfs_restart", "tfs_hang", "agent_freeze"})
JUNK_MODEL = "chaos-junk"  # the model (and assignment) bad_values fills with garbage


@dataclass(frozen=True)
class Fault:
    """One planned fault: wait `gap` seconds after the previous recovery, inject, hold, recover.

    `target` indexes whatever the kind acts on (a host, a model, a garbage variant); faults
    that act on "the leader" or "the member in use" find it when they run.
    """

    index: int
    kind: str
    gap: float
    hold: float
    target: int
    load_seconds: float = 0.0  # tfs_slow_reload only


def _hold(rng: random.Random, kind: str, ttl: int) -> float:
    ranges = {
        "etcd_kill_leader": (2.0, 6.0),
        "etcd_freeze_member": (2.0, 8.0),
        "etcd_rolling_restart": (1.0, 3.0),  # pause between two members
        "tfs_restart": (0.0, 2.0),  # down time before the empty restart
        "tfs_hang": (3.0, 10.0),
        "tfs_slow_reload": (10.0, 20.0),
        "controller_kill": (1.0, 5.0),
        "controller_freeze": (2.0, 2.0 * ttl),
        "agent_freeze": (ttl + 2.0, ttl + 6.0),
        "bad_values": (3.0, 10.0),
    }
    low, high = ranges[kind]
    return round(rng.uniform(low, high), 2)


def make_schedule(
    seed: int, count: int, kinds: Sequence[str], hosts: int, models: int, ttl: int, gap: tuple[float, float] = (4.0, 12.0), reload_timeout: float = 4.0
) -> list[Fault]:
    """The first `count` faults of the schedule of `seed` (a pure function of its arguments)."""
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(unknown)} (known: {', '.join(FAULT_KINDS)})")
    rng = random.Random(seed)
    faults = []
    for index in range(count):
        kind = rng.choice(list(kinds))
        target_space = {"tfs_slow_reload": models, "bad_values": 1 << 16}.get(kind, hosts)
        faults.append(
            Fault(
                index=index,
                kind=kind,
                gap=round(rng.uniform(*gap), 2),
                hold=_hold(rng, kind, ttl),
                target=rng.randrange(target_space),
                load_seconds=round(rng.uniform(reload_timeout + 1.0, reload_timeout + 4.0), 2) if kind == "tfs_slow_reload" else 0.0,
            )
        )
    return faults
