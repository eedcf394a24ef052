"""The simulated file-system source: which versions each configured model aspires to.

Plays TF Serving's FileSystemStoragePathSource, because the quirks that bite a control
plane live here:

- A reload only changes the source's config. Versions of a newly named model are found at
  the NEXT poll (every --file-system-poll-wait-seconds), never at once; a model left out of
  the new config is un-aspired immediately.
- Every poll re-lists every base_path, so a new version directory appears (and, for the
  latest/all policies, a deleted one disappears) without any reload.
- A base_path that does not exist makes the WHOLE poll fail: nothing is emitted for any
  model until it appears, which is why a reload naming a missing base_path hangs and why
  other models stop seeing new versions meanwhile. A base_path without any numeric child
  emits an empty version list: a new model then never loads (the reload hangs) and an
  existing model is unloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfleet.sim.modeldir import aspired_versions, list_children
from tfleet.tfs.types import VersionPolicy

# callback(model, {version: path}): the manager's aspired-versions callback.
AspiredCallback = Callable[[str, Mapping[int, Path]], None]
# on_problem(message): a poll failed or found no version (reported once per distinct problem).
ProblemHook = Callable[[str], None]


@dataclass(frozen=True)
class ServableToMonitor:
    name: str
    base_path: str
    policy: VersionPolicy


class FileSystemSource:
    def __init__(self, callback: AspiredCallback, on_problem: ProblemHook | None = None) -> None:
        self._callback = callback
        self._on_problem = on_problem
        self._lock = threading.Lock()
        self._config: list[ServableToMonitor] = []
        self._problems: set[str] = set()

    def names(self) -> set[str]:
        with self._lock:
            return {s.name for s in self._config}

    def update_config(self, servables: Sequence[ServableToMonitor]) -> None:
        """Take a new list of models; the ones no longer listed are un-aspired right away."""
        with self._lock:
            kept = {s.name for s in servables}
            for old in self._config:
                if old.name not in kept:
                    self._callback(old.name, {})
            self._config = list(servables)

    def poll(self) -> bool:
        """One pass over every base_path; False when the pass failed and emitted nothing."""
        with self._lock:
            found: dict[str, dict[int, Path]] = {}
            problems: set[str] = set()
            for servable in self._config:
                try:
                    children = list_children(servable.base_path)
                except OSError as err:
                    problems.add(
                        f"Could not find base path {servable.base_path} for servable {servable.name} with error {err}; file system poll skipped for every model"
                    )
                    self._report(problems)
                    return False
                versions = aspired_versions(servable.policy, children)
                if not versions:
                    problems.add(
                        f"No versions of servable {servable.name} found under base path {servable.base_path}. "
                        "Did you forget to name your leaf directory as a number (eg. '/1/')?"
                    )
                found[servable.name] = {v: Path(servable.base_path) / child for v, child in versions.items()}
            self._report(problems)
            for name, paths in found.items():
                self._callback(name, paths)
            return True

    def _report(self, problems: set[str]) -> None:
        if self._on_problem is not None:
            for message in sorted(problems - self._problems):
                self._on_problem(message)
        self._problems = problems
