"""What placement decides over: live hosts, what each model demands, where replicas are now,
and the result. Plus the host filters every rule shares (selector match, spread value).

Pure value types and functions, no I/O; the rules themselves are described in
controller/placement.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

SelectorKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HostInfo:
    name: str
    labels: Mapping[str, str]
    memory_mb: int  # capacity the host offers
    cordoned: bool = False  # no NEW replicas
    draining: bool = False  # move every replica away, make-before-break
    # TF Serving on it has not answered for longer than the grace: moved away like draining
    unresponsive: bool = False

    @property
    def takes_new(self) -> bool:
        return not (self.cordoned or self.draining or self.unresponsive)


# Seconds a host's TF Serving may not answer before its replicas are placed elsewhere: long
# enough for a restart of TF Serving (which the agent reports as unreachable meanwhile),
# short enough that a hung server does not leave a model a replica short for long.
DEFAULT_UNRESPONSIVE_GRACE = 60.0


def unresponsive_past_grace(since: dt.datetime | None, now: dt.datetime, grace_seconds: float) -> bool:
    """True when a host's TF Serving has not answered since ``since`` for longer than the grace."""
    return since is not None and (now - since).total_seconds() >= grace_seconds


@dataclass(frozen=True)
class ModelDemand:
    name: str
    replicas: int
    memory_mb: int  # per replica (from the intent, or estimated by the caller)
    host_selector: Mapping[str, str] = field(default_factory=dict)  # host must carry every label=value
    spread_by: str | None = None  # host label whose values replicas spread over

    @cached_property
    def selector_key(self) -> SelectorKey:
        """The selector as a sorted tuple: hashable, and equal for equal selectors."""
        return tuple(sorted(self.host_selector.items()))


@dataclass(frozen=True)
class PlacementInput:
    hosts: Mapping[str, HostInfo]  # LIVE hosts only (registered in etcd)
    demands: Mapping[str, ModelDemand]  # every valid intent
    current: Mapping[str, frozenset[str]]  # model -> hosts that hold an assignment now (may include dead hosts)
    ready: Mapping[str, frozenset[str]]  # model -> hosts where that replica is ready


@dataclass(frozen=True)
class Placement:
    hosts: Mapping[str, tuple[str, ...]]  # model -> hosts that must hold an assignment (sorted)
    reasons: Mapping[str, tuple[str, ...]]  # model -> why replicas are missing (only models with a shortfall)
    free_memory_mb: Mapping[str, int]  # live host -> memory left after this placement (negative: over-committed)
    notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model -> moves in progress (informational)


def changed_between(old: PlacementInput, new: PlacementInput) -> tuple[set[str], set[str]]:
    """The (models, hosts) whose entries differ between two inputs, for ``IncrementalPlacer.update``.

    O(models + hosts): for callers that do not track their changes (tests, resyncs).
    """
    models: set[str] = set()
    for old_map, new_map in ((old.demands, new.demands), (old.current, new.current), (old.ready, new.ready)):
        models.update(name for name in old_map.keys() | new_map.keys() if old_map.get(name) != new_map.get(name))
    hosts = {name for name in old.hosts.keys() | new.hosts.keys() if old.hosts.get(name) != new.hosts.get(name)}
    return models, hosts


# -- host filters ----------------------------------------------------------------------------------


def matches(host: HostInfo, selector: SelectorKey) -> bool:
    labels = host.labels
    return all(labels.get(key) == value for key, value in selector)


def spread_value(host: HostInfo, spread_by: str | None) -> str:
    """The host's value of the spread label; hosts without it share the value ""."""
    return host.labels.get(spread_by, "") if spread_by else ""


def selector_text(selector: SelectorKey) -> str:
    return ", ".join(f"{key}={value}" for key, value in selector)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
