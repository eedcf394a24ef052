"""One reconcile pass of the agent: snapshot -> plan -> act.

1. Read one consistent snapshot of ``assignments/<host>/`` (a single etcd range read).
   If etcd cannot be read, stop here: nothing is changed on TF Serving, so it keeps serving
   exactly what it serves (static stability).
2. Look at the disk for assignments that changed, and ask TF Serving for the status of the
   models that changed or are still moving (every model on a full resync).
3. Let the pure planner decide; send the full model list when it differs; look again at the
   models it changed, and plan again (a label waits for a second reload once its version is
   AVAILABLE).
4. Write the status keys whose content changed, bound to the host's lease.

Between passes, ``probe()`` asks TF Serving about one model it was given (every
``tfs_probe_interval``): NOT_FOUND means it restarted empty and a pass follows at once; a
deadline passed ``tfs_unresponsive_after`` times in a row (or a refused connection) means it
is not serving: every status key stops claiming AVAILABLE (state UNKNOWN with the reason)
until TF Serving answers again, and the host record says since when.

The agent owns its status keys: a change or delete of one by anybody else (seen through the
watch of ``status/<host>/``, ``on_status_events``) makes the next pass write it again
(agent/status_keys.py writes them and tells its own writes from others').

The reconciler keeps only caches that can be rebuilt (parsed assignments by revision, last
observed TF Serving status, last written status) plus the list TF Serving last accepted,
which is also saved to a local file (see applied.py).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Mapping

from tfleet import modelfs, schema
from tfleet.agent.applied import AppliedStateFile
from tfleet.agent.heartbeat import HostLease
from tfleet.agent.metrics import AgentMetrics
from tfleet.agent.planner import ModelInput, ModelReport, Plan, PlanInput, plan
from tfleet.agent.settings import AgentSettings
from tfleet.agent.status_keys import STATUS_WRITE_BATCH, StatusKeys, not_serving
from tfleet.backoff import Backoff
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.logs import Logger
from tfleet.loop import Outcome
from tfleet.schema import Assignment, SchemaError
from tfleet.store import Snapshot, StoreError, WatchEvent
from tfleet.ports import ModelServer, Store
from tfleet.tfs.types import (
    FAILED_PRECONDITION,
    ModelConfigSpec,
    TfsDeadlineExceeded,
    TfsError,
    TfsUnavailable,
    VersionState,
    VersionStatus,
)

# Outcome.result: ok | pending | etcd_unavailable | tfs_unavailable | tfs_unresponsive | reload_failed
__all__ = ["MAX_RELOADS_PER_PASS", "Outcome", "Reconciler", "STATUS_WRITE_BATCH"]
MAX_RELOADS_PER_PASS = 3  # the config, then the labels that waited for it (+1: a refused label dropped)
# The model a probe asks about when TF Serving was given none: any answer (NOT_FOUND) shows it alive.
PROBE_NOTHING = "tfleet-probe"


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        tfs: ModelServer,
        keyspace: Keyspace,
        settings: AgentSettings,
        lease: HostLease,
        metrics: AgentMetrics,
        log: Logger,
        applied_file: AppliedStateFile,
        clock: Callable[[], float] = time.monotonic,
        inspect: Callable[[str], modelfs.DiskFacts] = modelfs.inspect,
        on_tfs_change: Callable[[], None] = lambda: None,
        now: Callable[[], dt.datetime] = schema.utc_now,
    ) -> None:
        self._store = store
        self._tfs = tfs
        self._ks = keyspace
        self._settings = settings
        self._host = settings.host
        self._lease = lease
        self._metrics = metrics
        self._log = log
        self._applied_file = applied_file
        self._clock = clock
        self._inspect = inspect
        self._on_tfs_change = on_tfs_change
        self._now = now

        applied, warning = applied_file.load()
        if warning:
            log.warning("applied_state_unusable", detail=warning)
        self._applied: dict[str, ModelConfigSpec] = applied
        self._inputs: dict[str, ModelInput] = {}
        self._served: dict[str, tuple[VersionStatus, ...] | None] = {}
        self._status = StatusKeys(store=store, keyspace=keyspace, host=settings.host, lease_id=lambda: lease.lease_id, metrics=metrics, log=log)
        self._reports: dict[str, ModelReport] = {}  # the reports of the last completed pass
        self._labels_refused: frozenset[str] = frozenset()
        self._labels_refused_until = 0.0
        # TF Serving's health: consecutive calls past their deadline, and since when (and why)
        # it counts as not serving. Read by the agent for /readyz and the host record.
        self._tfs_failures = 0
        self.unresponsive_since: dt.datetime | None = None
        self.unresponsive_reason = ""
        self._reload_errors: dict[str, str] = {}
        self._unsettled: set[str] = set()
        self._pending_since: dict[str, tuple[int, float]] = {}
        self._bad_keys_logged: set[tuple[str, int]] = set()
        self._last_rejection: TfsError | None = None  # the error of the last refused reload
        self._tfs_forgot = False  # set by _observe: a model TF Serving knew answered NOT_FOUND
        self._reload_retry_at = 0.0
        self._reload_failures = 0
        # a refused reload is tried again after poll_interval * 2, 4, 8... (at most a minute);
        # not jittered: the agent's TF Serving is its own, no fleet retries in step with it
        self._reload_backoff = Backoff(initial=min(settings.poll_interval * 2, 60.0), cap=60.0, jitter=0)
        self._need_sweep = True
        self._last_sweep = clock()
        self._applied_dirty = False
        self.last_revision = 0
        self.completed = 0

    def forget_written_status(self) -> None:
        """A new lease carries none of the old keys: write every status again."""
        self._status.forget()

    # -- owning the status keys (agent/status_keys.py) ----------------------------------
    def on_status_events(self, events: list[WatchEvent]) -> bool:
        """Events under status/<host>/ (the store's watch thread); True when somebody else
        changed one of this agent's keys, so a pass must write it again."""
        return self._status.on_events(events)

    def on_status_reset(self) -> None:
        """The status watch lost its history (compaction): check every key by writing it again."""
        self._status.forget()

    # -- the pass --------------------------------------------------------------------------
    def reconcile(self, full: bool = False) -> Outcome:
        started = self._clock()
        try:
            outcome = self._reconcile(full)
        finally:
            self._metrics.reconcile_seconds.observe(self._clock() - started)
        self._metrics.reconcile_total.labels(outcome.result).inc()
        return outcome

    def _reconcile(self, full: bool) -> Outcome:
        try:
            snapshot = self._store.list_prefix(self._ks.assignments_prefix(self._host))
        except StoreError as exc:
            self._metrics.etcd_up.set(0)
            self._log.warning("reconcile", result="etcd_unavailable", error=str(exc), action="keeping TF Serving as it is")
            return Outcome("etcd_unavailable", self._settings.poll_interval * 4)
        self._metrics.etcd_up.set(1)
        self.last_revision = snapshot.revision
        models, dirty = self._read(snapshot, full)
        sweep = self._sweep_due(full)
        self._tfs_forgot = False
        if self._labels_refused and self._clock() >= self._labels_refused_until:
            self._labels_refused = frozenset()
        try:
            if sweep:
                self._observe(set(models) | set(self._applied))
                self._last_sweep = self._clock()
            else:
                self._observe(dirty | self._unsettled | (self._probe() if full else set()))
                if self._tfs_forgot:
                    # TF Serving forgot a model it was given: it restarted empty, so every
                    # cached status is stale. Look at all of them now, before planning, so
                    # that no label is sent for a version it no longer serves and no status
                    # keeps claiming AVAILABLE.
                    sweep = True
                    self._log.warning("tfs_lost_models", action="TF Serving restarted empty: looking at every model, sending the list again")
                    self._observe(set(models) | set(self._applied))
                    self._last_sweep = self._clock()
            current, reloads = self._plan_and_reload(models)
        except (TfsUnavailable, TfsDeadlineExceeded) as exc:
            return self._tfs_failed(exc, snapshot.revision)
        self._tfs_answered()
        if sweep:
            self._need_sweep = False
        self._reports = dict(current.reports)
        written = self._status.publish(current.reports)
        if self._applied_dirty:
            self._save_applied()  # after the status writes: it is a restart aid, not on the hot path
        self._unsettled = {name for name, report in current.reports.items() if not report.settled}
        self._record_convergence(current.reports)
        self._update_gauges(current.reports)
        self.completed += 1

        result = "ok" if current.settled else "pending"
        requeue = None if current.settled else self._settings.poll_interval
        if any(name in self._reload_errors for name in current.reports):
            result, requeue = "reload_failed", max(self._reload_retry_at - self._clock(), self._settings.poll_interval)
        if written is None:
            result, requeue = "etcd_unavailable", self._settings.poll_interval * 4
        changed = bool(reloads or written)
        log = self._log.info if changed or result != "ok" else self._log.debug
        log(
            "reconcile",
            result=result,
            revision=snapshot.revision,
            models=len(models),
            reloads=reloads,
            status_writes=written or 0,
            unsettled=sorted(self._unsettled)[:10],
            full=full,
            sweep=sweep,
        )
        return Outcome(result, requeue)

    # -- TF Serving's health -----------------------------------------------------------------
    def probe(self) -> bool:
        """Between passes: ask TF Serving about one model it was given. True when a pass is
        needed now (it restarted empty, it answers again after failing, or the model's state
        changed); a failure is counted and may mark TF Serving unresponsive."""
        name = self._probe_name()
        try:
            versions = self._tfs.get_model_status(name, self._settings.status_timeout)
        except (TfsUnavailable, TfsDeadlineExceeded) as exc:
            self._tfs_failed(exc, self.last_revision)
            return False
        except TfsError as exc:
            # It answered, so it is alive; the answer says nothing about the model.
            self._log.info("probe_answered_with_error", model=name, error=exc.message)
            recovered = self._tfs_failures > 0 or self.unresponsive_since is not None
            self._tfs_answered()
            return recovered
        recovered = self._tfs_failures > 0 or self.unresponsive_since is not None
        self._tfs_answered()
        if recovered:
            return True
        if name not in self._applied:
            return False
        observed = tuple(versions) if versions is not None else None
        if observed is None and self._served.get(name) is not None:
            self._need_sweep = True  # it knew the model and forgot it: it restarted empty
            self._log.warning("tfs_lost_models", model=name, action="TF Serving restarted empty: sending the list again")
        return observed != self._served.get(name)

    def _probe_name(self) -> str:
        return min(self._applied) if self._applied else PROBE_NOTHING

    def _tfs_failed(self, exc: TfsError, revision: int) -> Outcome:
        """TF Serving could not be reached or did not answer in time."""
        self._metrics.tfs_up.set(0)
        self._need_sweep = True
        self._tfs_failures += 1
        unreachable = isinstance(exc, TfsUnavailable)
        if self.unresponsive_since is None and (unreachable or self._tfs_failures >= self._settings.tfs_unresponsive_after):
            what = "unreachable" if unreachable else "unresponsive"
            self.unresponsive_since = self._now()
            self.unresponsive_reason = f"TF Serving {what} since {self.unresponsive_since.isoformat()}: {exc.message}"
            self._metrics.tfs_unresponsive.set(1)
            self._log.warning("tfs_not_serving", reason=self.unresponsive_reason, failures=self._tfs_failures, action="status keys stop claiming AVAILABLE")
            self._on_tfs_change()
        if self.unresponsive_since is not None:
            degraded = {name: not_serving(report, self.unresponsive_reason) for name, report in self._reports.items()}
            self._status.publish(degraded)
            self._update_gauges(degraded)
        result = "tfs_unavailable" if unreachable else "tfs_unresponsive"
        self._log.warning("reconcile", result=result, error=exc.message, failures=self._tfs_failures, revision=revision)
        return Outcome(result, self._settings.poll_interval * 4 if unreachable else None)

    def _tfs_answered(self) -> None:
        self._metrics.tfs_up.set(1)
        self._tfs_failures = 0
        if self.unresponsive_since is not None:
            self._log.warning("tfs_serving_again", was=self.unresponsive_reason, action="reporting TF Serving's states again")
            self.unresponsive_since = None
            self.unresponsive_reason = ""
            self._metrics.tfs_unresponsive.set(0)
            self._on_tfs_change()

    def _sweep_due(self, full: bool) -> bool:
        """Ask TF Serving about every model: at start, after it was unreachable or seems to
        have restarted, and every status_sweep_interval on a full pass. Other full passes
        only probe one model, which keeps an idle agent with many models cheap."""
        if self._need_sweep:
            return True
        return full and self._clock() - self._last_sweep >= self._settings.status_sweep_interval

    def _probe(self) -> set[str]:
        """One model TF Serving was given: NOT_FOUND for it means TF Serving lost its list."""
        return {min(self._applied)} if self._applied else set()

    # -- step 1: read --------------------------------------------------------------------------
    def _read(self, snapshot: Snapshot, full: bool) -> tuple[dict[str, ModelInput], set[str]]:
        models: dict[str, ModelInput] = {}
        dirty: set[str] = set()
        for kv in snapshot.items:
            try:
                name = self._ks.model_of_assignment(kv.key, self._host)
            except InvalidName as exc:
                if (kv.key, kv.mod_revision) not in self._bad_keys_logged:
                    self._bad_keys_logged.add((kv.key, kv.mod_revision))
                    self._log.warning("assignment_key_ignored", key=kv.key, error=str(exc))
                continue
            cached = self._inputs.get(name)
            if cached is None or cached.revision != kv.mod_revision:
                cached = self._parse(name, kv.key, kv.value, kv.mod_revision)
                dirty.add(name)
                self._pending_since[name] = (kv.mod_revision, self._clock())
            elif cached.assignment is not None and (full or (cached.disk is not None and cached.disk.error)):
                # A missing base_path may have appeared; a new version directory may exist.
                disk = self._inspect(cached.assignment.base_path)
                if disk != cached.disk:
                    cached = ModelInput(name, cached.revision, cached.assignment, None, disk)
                    dirty.add(name)
            self._inputs[name] = cached
            models[name] = cached
        for gone in set(self._inputs) - set(models):
            del self._inputs[gone]
            self._pending_since.pop(gone, None)
            dirty.add(gone)
        return models, dirty

    def _parse(self, name: str, key: str, value: bytes, revision: int) -> ModelInput:
        try:
            assignment = schema.parse(Assignment, value, key)
        except SchemaError as exc:
            return ModelInput(name, revision, None, error=str(exc))
        return ModelInput(name, revision, assignment, disk=self._inspect(assignment.base_path))

    # -- step 2: observe TF Serving -------------------------------------------------------------
    def _observe(self, names: Iterable[str]) -> None:
        timeout = self._settings.status_timeout
        for name in sorted(names):
            try:
                versions = self._tfs.get_model_status(name, timeout)
            except (TfsUnavailable, TfsDeadlineExceeded):
                raise  # TF Serving is down or hangs: asking about the next model would too
            except TfsError as exc:
                self._log.info("model_status_failed", model=name, error=exc.message)
                continue
            if versions is None and name in self._applied and self._served.get(name) is not None:
                # TF Serving knew this model and forgot it: it restarted with an empty list.
                # (A model it was just given may be NOT_FOUND until its first file-system
                # scan; that is not a restart, hence "knew".)
                self._tfs_forgot = True
            self._served[name] = tuple(versions) if versions is not None else None

    # -- step 3: plan and reload -----------------------------------------------------------------
    def _plan_and_reload(self, models: dict[str, ModelInput]) -> tuple[Plan, int]:
        reloads = 0
        current = self._plan(models)
        while current.reload_needed and reloads < MAX_RELOADS_PER_PASS and self._clock() >= self._reload_retry_at:
            reloads += 1
            if not self._reload(current):
                refused = self._labels_refused_in(current)
                if not refused:
                    current = self._plan(models)
                    break
                # TF Serving refused a label (its version is not AVAILABLE there, e.g. it
                # restarted): look at those models again and send the list without the
                # labels it has not accepted before, at once instead of after the backoff.
                self._observe(refused)
                self._labels_refused = frozenset(refused)
                self._labels_refused_until = self._reload_retry_at
                self._reload_retry_at = 0.0
                for name in refused:
                    self._reload_errors.pop(name, None)
            current = self._plan(models)
        return current, reloads

    def _labels_refused_in(self, rejected: Plan) -> set[str]:
        """The labelled models of a reload TF Serving refused because of a label (not already
        held back): empty when the refusal had another reason."""
        if self._last_rejection is None or self._last_rejection.code != FAILED_PRECONDITION:
            return set()
        labelled = {spec.name for spec in rejected.config if spec.version_labels and spec.name not in self._labels_refused}
        if "label" not in self._last_rejection.message:
            return set()
        named = {name for name in labelled if f"model {name}," in self._last_rejection.message}
        return named or labelled

    def _plan(self, models: dict[str, ModelInput]) -> Plan:
        return plan(PlanInput(models, self._applied, self._served, self._reload_errors, self._labels_refused))

    def _reload(self, proposed: Plan) -> bool:
        """Send the full list; True when TF Serving took it (or is still working on it)."""
        new = proposed.config_by_name()
        touched = {name for name in set(new) | set(self._applied) if new.get(name) != self._applied.get(name)}
        touched |= {name for name in new if name in self._served and self._served[name] is None}
        started = self._clock()
        self._last_rejection = None
        try:
            self._tfs.reload_config(proposed.config, self._settings.reload_timeout)
            result = "ok"
        except TfsDeadlineExceeded:
            # TF Serving keeps loading after the client gives up: treat the list as sent and
            # follow progress through GetModelStatus.
            result = "deadline_exceeded"
            self._log.warning("reload_slow", timeout=self._settings.reload_timeout, models=sorted(touched)[:10])
        except TfsUnavailable:
            self._metrics.reload_seconds.labels("unavailable").observe(self._clock() - started)
            raise
        except TfsError as exc:
            self._last_rejection = exc
            self._metrics.reload_seconds.labels("rejected").observe(self._clock() - started)
            self._reload_failures += 1
            backoff = self._reload_backoff.delay(self._reload_failures, _NO_JITTER)
            self._reload_retry_at = self._clock() + backoff
            for name in touched & set(new):
                self._reload_errors[name] = f"TF Serving rejected the reload (code {exc.code}): {exc.message}"
            self._log.warning("reload_rejected", code=exc.code, error=exc.message, retry_in=round(backoff, 2))
            return False
        self._metrics.reload_seconds.labels(result).observe(self._clock() - started)
        self._reload_failures = 0
        self._reload_retry_at = 0.0
        for name in touched:
            self._reload_errors.pop(name, None)
        forgotten = any(self._served.get(name, ()) is None for name in self._applied if name in new)
        self._applied = new
        self._applied_dirty = True
        if forgotten:
            # TF Serving restarted: every cached status is stale, look at all of them next.
            self._need_sweep = True
        for name in touched - set(new):
            self._served.pop(name, None)
        self._observe(touched & set(new))
        return True

    def _save_applied(self) -> None:
        try:
            self._applied_file.save(self._applied)
            self._applied_dirty = False
        except OSError as exc:
            self._log.warning("applied_state_not_saved", path=str(self._applied_file.path), error=str(exc))

    # -- step 4: publish (the status keys: agent/status_keys.py) and measure ---------------
    def _record_convergence(self, reports: Mapping[str, ModelReport]) -> None:
        now = self._clock()
        for name, (revision, since) in list(self._pending_since.items()):
            report = reports.get(name)
            if report is None or report.assignment_revision != revision:
                continue
            if report.error is not None:
                del self._pending_since[name]
            elif report.settled and report.versions and all(s.state == VersionState.AVAILABLE for s in report.versions.values()):
                self._metrics.assignment_to_available.observe(now - since)
                del self._pending_since[name]

    def _update_gauges(self, reports: Mapping[str, ModelReport]) -> None:
        counts = {state: 0 for state in VersionState}
        for report in reports.values():
            for status in report.versions.values():
                counts[status.state] += 1
        for state, count in counts.items():
            self._metrics.versions.labels(state.value).set(count)
        self._metrics.models_with_errors.set(sum(1 for r in reports.values() if r.error))
        self._metrics.last_reconcile.set(time.time())


_NO_JITTER = random.Random(0)  # the reload backoff has no jitter: never drawn from
