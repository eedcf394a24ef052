"""The simulated model manager: aspired versions in, load / unload / retry, version states out.

It plays the part of TF Serving's AspiredVersionsManager + ServableStateMonitor, and knows
nothing about gRPC, REST, reload requests or the file system poller:

- `set_aspired(model, versions)` is the aspired-versions callback. Requests are queued and
  applied by `step()`, as in the real server; a request that re-aspires a version still
  being torn down waits until that version is gone.
- `step()` is one turn of the manage-state loop: forget finished un-aspired versions, apply
  queued requests, take ONE policy action (see policy.py). With `num_load_threads=0` (the
  real server's default) a load runs inline, so one slow or retrying load holds up every
  other load and unload of the server, exactly like tensorflow_model_server does.
- A failed load attempt is retried `max_load_retries` times (so 1 + max_load_retries
  attempts), `load_retry_interval` seconds apart, then the version is left in END with the
  error. It is not retried while it stays aspired; only un-aspiring and re-aspiring it (e.g.
  removing and re-adding the model) loads it again.
- The monitor keeps the last state of every version ever seen, so a removed model keeps
  answering with its versions in END. Every state change gets a sequence number;
  `wait_models` uses them like the real server's fresh ServableStateMonitor.

Time is injected (`clock`, `sleep`) so that unit tests run the state machine without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tfleet.sim.modeldir import VersionSpec, read_version
from tfleet.sim.policy import HarnessState, Snapshot, next_action
from tfleet.sim.status import CANCELLED, OK_STATUS, UNKNOWN, SimError, Status
from tfleet.tfs.types import VersionState

# sleep(seconds, interrupt) -> True when the full time passed, False when `interrupt` was set.
Sleep = Callable[[float, threading.Event], bool]
# on_event(model, version, state, status): every state change, with the manager's lock held.
EventHook = Callable[[str, int, VersionState, Status], None]
# on_attempt(model, version, status): the outcome of every load attempt (metrics, logs).
AttemptHook = Callable[[str, int, Status], None]


def event_sleep(seconds: float, interrupt: threading.Event) -> bool:
    return not interrupt.wait(seconds)


@dataclass(frozen=True)
class MonitorEntry:
    state: VersionState
    status: Status
    seq: int
    time: float


@dataclass(frozen=True)
class ServedVersion:
    model: str
    version: int
    spec: VersionSpec


class _Harness:
    def __init__(self, model: str, version: int, path: Path) -> None:
        self.model, self.version, self.path = model, version, path
        self.state = HarnessState.NEW
        self.aspired = True
        self.cancel = threading.Event()  # set when un-aspired: stops load retries
        self.spec: VersionSpec | None = None


class _Waiter:
    def __init__(self, models: Sequence[str], since: int) -> None:
        self.models, self.since = list(models), since
        self.result: Status | None = None


class ModelManager:
    def __init__(
        self,
        *,
        max_load_retries: int = 5,
        load_retry_interval: float = 60.0,
        num_load_threads: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = event_sleep,
        on_event: EventHook | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self.max_load_retries = max_load_retries
        self.load_retry_interval = load_retry_interval
        self._clock, self._sleep = clock, sleep
        self._on_event, self._on_attempt = on_event, on_attempt
        self._cond = threading.Condition(threading.RLock())
        self._harnesses: dict[str, dict[int, _Harness]] = {}
        self._pending: dict[str, dict[int, Path]] = {}
        self._monitor: dict[str, dict[int, MonitorEntry]] = {}
        self._waiters: list[_Waiter] = []
        self._seq = 0
        self._stopping = threading.Event()
        self.wake = threading.Event()  # set whenever step() may have something to do
        self._pool = ThreadPoolExecutor(num_load_threads, "sim-load") if num_load_threads > 0 else None

    # ----------------------------------------------------------------- input side
    def set_aspired(self, model: str, versions: Mapping[int, Path]) -> None:
        """The aspired-versions callback: `versions` is the complete wanted set of `model`."""
        with self._cond:
            self._pending[model] = dict(versions)
        self.wake.set()

    # ----------------------------------------------------------------- manage-state loop
    def step(self) -> bool:
        """One turn of the manage-state loop; True when it acted (call again at once)."""
        with self._cond:
            if self._stopping.is_set():
                return False
            self._flush()
            self._apply_pending()
            snapshots = {name: [Snapshot(h.version, h.state, h.aspired) for h in versions.values()] for name, versions in self._harnesses.items()}
            action = next_action(snapshots)
            if action is None:
                return False
            harness = self._harnesses[action.model][action.version]
            if action.kind == "unload":
                self._publish(harness, HarnessState.UNLOADING, VersionState.UNLOADING)
                unload_seconds = harness.spec.unload_seconds if harness.spec is not None else 0.0
            else:
                self._publish(harness, HarnessState.LOADING, VersionState.LOADING)
        if action.kind == "unload":
            # Outside the lock, like a real unload: status and Predict keep answering meanwhile.
            if unload_seconds > 0 and not self._sleep(unload_seconds, self._stopping):
                return False
            with self._cond:
                harness.spec = None
                self._publish(harness, HarnessState.DISABLED, VersionState.END)
            return True
        if self._pool is None:
            self._load(harness)
        else:
            try:
                self._pool.submit(self._load, harness)
            except RuntimeError:  # stop() shut the pool down meanwhile
                return False
        return True

    def _flush(self) -> None:
        """Forget un-aspired versions that are not loaded (the monitor still remembers them)."""
        for model, versions in list(self._harnesses.items()):
            for version, h in list(versions.items()):
                idle = h.state in (HarnessState.NEW, HarnessState.DISABLED, HarnessState.ERROR)
                if idle and not h.aspired:
                    del versions[version]
            if not versions:
                del self._harnesses[model]

    def _apply_pending(self) -> None:
        for model, wanted in list(self._pending.items()):
            managed = self._harnesses.setdefault(model, {})
            if any(not h.aspired and v in wanted for v, h in managed.items()):
                continue  # re-aspired version not torn down yet: keep the request queued
            del self._pending[model]
            for version, h in managed.items():
                if h.aspired and version not in wanted:
                    h.aspired = False
                    h.cancel.set()
            for version, path in sorted(wanted.items()):
                if version not in managed:
                    managed[version] = harness = _Harness(model, version, path)
                    self._publish(harness, HarnessState.NEW, VersionState.START)

    def _load(self, h: _Harness) -> None:
        attempt = 0
        while True:
            status, spec = self._attempt(h, attempt)
            if self._stopping.is_set():
                return
            if self._on_attempt is not None:
                self._on_attempt(h.model, h.version, status)
            if status.ok and spec is not None:
                with self._cond:
                    h.spec = spec
                    self._publish(h, HarnessState.READY, VersionState.AVAILABLE, status)
                return
            attempt += 1
            if attempt > self.max_load_retries or h.cancel.is_set():
                break
            if not self._sleep(self.load_retry_interval, h.cancel):
                break  # un-aspired (or shutting down) while waiting to retry
        with self._cond:
            self._publish(h, HarnessState.ERROR, VersionState.END, status)

    def _attempt(self, h: _Harness, attempt: int) -> tuple[Status, VersionSpec | None]:
        try:
            spec = read_version(h.path)
        except SimError as err:
            return err.status, None
        if spec.load_seconds > 0 and not self._sleep(spec.load_seconds, self._stopping):
            return Status(CANCELLED, "server is shutting down"), None
        if spec.attempt_fails(attempt):
            return Status(spec.fail_code, spec.fail_message), None
        return OK_STATUS, spec

    def _publish(self, h: _Harness, state: HarnessState, reported: VersionState, status: Status = OK_STATUS) -> None:
        h.state = state
        self._seq += 1
        entry = MonitorEntry(reported, status, self._seq, self._clock())
        self._monitor.setdefault(h.model, {})[h.version] = entry
        if self._on_event is not None:
            self._on_event(h.model, h.version, reported, status)
        for waiter in list(self._waiters):
            self._check(waiter)
        self._cond.notify_all()
        self.wake.set()

    # ----------------------------------------------------------------- waiting for models
    def seq(self) -> int:
        """The sequence number of the last state change (take it BEFORE changing the config)."""
        with self._cond:
            return self._seq

    def wait_models(self, models: Sequence[str], since: int, timeout: float | None = None) -> Status | None:
        """Block until every model in `models` has a version whose latest state change after
        `since` is AVAILABLE or END, as TF Serving's reload does. OK when all became AVAILABLE;
        UNKNOWN naming the ones that ended in END; CANCELLED at shutdown; None on timeout
        (the real server has no timeout: only tests pass one)."""
        waiter = _Waiter(models, since)
        with self._cond:
            self._check(waiter)
            if waiter.result is None:
                self._waiters.append(waiter)
                self._cond.wait_for(lambda: waiter.result is not None or self._stopping.is_set(), timeout)
                self._waiters.remove(waiter)
            if waiter.result is None and self._stopping.is_set():
                return Status(CANCELLED, "server is shutting down")
            return waiter.result

    def _check(self, waiter: _Waiter) -> None:
        if waiter.result is not None:
            return
        reached: list[tuple[str, int, MonitorEntry]] = []
        for model in waiter.models:
            found = None
            for version, entry in sorted(self._monitor.get(model, {}).items()):
                if entry.seq > waiter.since and entry.state in (VersionState.AVAILABLE, VersionState.END):
                    found = (model, version, entry)
                    break
            if found is None:
                return
            reached.append(found)
        failed = [item for item in reached if item[2].state is not VersionState.AVAILABLE]
        if not failed:
            waiter.result = OK_STATUS
            return
        parts = []
        for model, version, entry in failed:
            error = "" if entry.status.ok else f" due to error: {entry.status}"
            parts.append(f"{{{{name: {model} version: {version}}}{error}}}, ")
        waiter.result = Status(UNKNOWN, f"{len(failed)} model(s) did not become available: {{{''.join(parts)}}}")

    # ----------------------------------------------------------------- queries
    def version_states(self, model: str) -> dict[int, MonitorEntry]:
        with self._cond:
            return dict(self._monitor.get(model, {}))

    def all_states(self) -> dict[str, dict[int, MonitorEntry]]:
        with self._cond:
            return {name: dict(versions) for name, versions in self._monitor.items()}

    def serving(self, model: str, version: int | None = None) -> ServedVersion | None:
        """The READY version asked for (None: the highest READY one), or None."""
        with self._cond:
            ready = {v: h.spec for v, h in self._harnesses.get(model, {}).items() if h.state is HarnessState.READY and h.spec is not None}
            chosen = max(ready, default=None) if version is None else (version if version in ready else None)
            return None if chosen is None else ServedVersion(model, chosen, ready[chosen])

    def served_versions(self) -> list[ServedVersion]:
        with self._cond:
            return [
                ServedVersion(h.model, h.version, h.spec)
                for versions in self._harnesses.values()
                for h in versions.values()
                if h.state is HarnessState.READY and h.spec is not None
            ]

    # ----------------------------------------------------------------- shutdown
    def stop(self) -> None:
        """Interrupt load waits, retry waits and reload waits; no further actions."""
        with self._cond:
            self._stopping.set()
            for versions in self._harnesses.values():
                for h in versions.values():
                    h.cancel.set()
            self._cond.notify_all()
        self.wake.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
