"""The version policy of the simulated manager: which single action to take next.

TF Serving's model server runs its AspiredVersionsManager with the availability-preserving
policy, and the simulator reproduces it because fleet behaviour depends on it: a new version
is loaded BEFORE the old one is unloaded, and if the new version fails to load the old one
stays in service. Pure functions, table-tested in tests/unit/test_sim_manager.py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


class HarnessState(enum.Enum):
    """Lifecycle of one managed version (TF Serving's LoaderHarness, simplified)."""

    NEW = "new"  # aspired, not yet loaded: reported as START
    LOADING = "loading"  # an attempt (or the wait before a retry) is under way
    READY = "ready"  # serving: reported as AVAILABLE
    UNLOADING = "unloading"
    DISABLED = "disabled"  # unloaded: reported as END with OK
    ERROR = "error"  # gave up loading: reported as END with the load error


@dataclass(frozen=True)
class Snapshot:
    version: int
    state: HarnessState
    aspired: bool


@dataclass(frozen=True)
class Action:
    kind: Literal["load", "unload"]
    model: str
    version: int


def model_action(model: str, versions: Iterable[Snapshot]) -> Action | None:
    """The availability-preserving choice for one model.

    Unload the lowest un-aspired serving version when that cannot leave the model without a
    serving version (no version is aspired any more, an aspired one already serves, or more
    than one un-aspired version still serves). Otherwise load the highest aspired version
    that is still NEW.
    """
    snapshots = list(versions)
    has_aspired = any(s.aspired for s in snapshots)
    aspired_serving = any(s.aspired and s.state is HarnessState.READY for s in snapshots)
    unaspired_serving = [s for s in snapshots if not s.aspired and s.state is HarnessState.READY]
    if unaspired_serving and (not has_aspired or aspired_serving or len(unaspired_serving) > 1):
        return Action("unload", model, min(s.version for s in unaspired_serving))
    new = [s.version for s in snapshots if s.aspired and s.state is HarnessState.NEW]
    if new:
        return Action("load", model, max(new))
    return None


def next_action(models: dict[str, list[Snapshot]]) -> Action | None:
    """One action for the whole server: unloads before loads, then by model name."""
    actions = [a for name in sorted(models) if (a := model_action(name, models[name])) is not None]
    actions.sort(key=lambda a: a.kind != "unload")
    return actions[0] if actions else None
