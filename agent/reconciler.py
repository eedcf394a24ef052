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

The reconciler keeps only caches that can be rebuilt (parsed assignments by revision, last
observed TF Serving status, last written status) plus the list TF Serving last accepted,
which is also saved to a local file (see applied.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tfleet import modelfs, schema
from tfleet.agent.applied import AppliedStateFile
from tfleet.agent.heartbeat import HostLease
from tfleet.agent.metrics import AgentMetrics
from tfleet.agent.planner import ModelInput, ModelReport, Plan, PlanInput, plan
from tfleet.agent.settings import AgentSettings
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.schema import Assignment, ModelStatus, SchemaError, VersionReport
from tfleet.store import Delete, EtcdStore, Put, Snapshot, StoreError
from tfleet.tfs.types import ModelConfigSpec, TfsDeadlineExceeded, TfsError, TfsUnavailable, VersionState

STATUS_WRITE_BATCH = 64  # well under etcd's default limit of 128 operations per transaction
MAX_RELOADS_PER_PASS = 2  # the config, then the labels that waited for it


@dataclass(frozen=True)
class Outcome:
    result: str  # ok | pending | etcd_unavailable | tfs_unavailable | reload_failed
    requeue_after: float | None  # None: wait for the next watch event or resync


class Reconciler:
    def __init__(
        self,
        *,
        store: EtcdStore,
        tfs,  # tfleet.tfs.client.TfsClient or a test double with the same two methods
        keyspace: Keyspace,
        settings: AgentSettings,
        lease: HostLease,
        metrics: AgentMetrics,
        log,
        applied_file: AppliedStateFile,
        clock: Callable[[], float] = time.monotonic,
        inspect: Callable[[str], modelfs.DiskFacts] = modelfs.inspect,
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

        applied, warning = applied_file.load()
        if warning:
            log.warning("applied_state_unusable", detail=warning)
        self._applied: dict[str, ModelConfigSpec] = applied
        self._inputs: dict[str, ModelInput] = {}
        self._served: dict[str, tuple | None] = {}
        self._written: dict[str, ModelReport] = {}
        self._written_lease: int | None = None
        self._reload_errors: dict[str, str] = {}
        self._unsettled: set[str] = set()
        self._pending_since: dict[str, tuple[int, float]] = {}
        self._bad_keys_logged: set[tuple[str, int]] = set()
        self._reload_retry_at = 0.0
        self._reload_failures = 0
        self._need_sweep = True
        self._last_sweep = clock()
        self._applied_dirty = False
        self.last_revision = 0
        self.completed = 0

    def forget_written_status(self) -> None:
        """A new lease carries none of the old keys: write every status again."""
        self._written.clear()

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
        try:
            if sweep:
                self._observe(set(models) | set(self._applied))
                self._last_sweep = self._clock()
            else:
                self._observe(dirty | self._unsettled | (self._probe() if full else set()))
            current, reloads = self._plan_and_reload(models)
        except TfsUnavailable as exc:
            self._metrics.tfs_up.set(0)
            self._need_sweep = True
            self._log.warning("reconcile", result="tfs_unavailable", error=exc.message, revision=snapshot.revision)
            return Outcome("tfs_unavailable", self._settings.poll_interval * 4)
        self._metrics.tfs_up.set(1)
        if sweep:
            self._need_sweep = False
        written = self._publish(current)
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
            except TfsUnavailable:
                raise
            except TfsError as exc:
                self._log.info("model_status_failed", model=name, error=exc.message)
                continue
            self._served[name] = tuple(versions) if versions is not None else None

    # -- step 3: plan and reload -----------------------------------------------------------------
    def _plan_and_reload(self, models: dict[str, ModelInput]) -> tuple[Plan, int]:
        reloads = 0
        current = self._plan(models)
        while current.reload_needed and reloads < MAX_RELOADS_PER_PASS and self._clock() >= self._reload_retry_at:
            reloads += 1
            if not self._reload(current):
                current = self._plan(models)
                break
            current = self._plan(models)
        return current, reloads

    def _plan(self, models: dict[str, ModelInput]) -> Plan:
        return plan(PlanInput(models, self._applied, self._served, self._reload_errors))

    def _reload(self, proposed: Plan) -> bool:
        """Send the full list; True when TF Serving took it (or is still working on it)."""
        new = proposed.config_by_name()
        touched = {name for name in set(new) | set(self._applied) if new.get(name) != self._applied.get(name)}
        touched |= {name for name in new if name in self._served and self._served[name] is None}
        started = self._clock()
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
            self._metrics.reload_seconds.labels("rejected").observe(self._clock() - started)
            self._reload_failures += 1
            backoff = min(60.0, self._settings.poll_interval * 2**self._reload_failures)
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

    # -- step 4: publish ---------------------------------------------------------------------------
    def _publish(self, current: Plan) -> int | None:
        """Write changed status keys; the number of keys written, or None when etcd failed."""
        lease = self._lease.lease_id
        if lease is None:
            return 0  # not registered yet: status keys need the lease; written after it
        if lease != self._written_lease:
            self._written.clear()
            self._written_lease = lease
        now = schema.utc_now()
        changes: list[tuple[str, ModelReport | None]] = [
            (name, report) for name, report in current.reports.items() if report != self._written.get(name)
        ]
        changes += [(name, None) for name in self._written if name not in current.reports]
        for start in range(0, len(changes), STATUS_WRITE_BATCH):
            batch = changes[start : start + STATUS_WRITE_BATCH]
            ops = [
                Put(self._ks.status(self._host, name), schema.encode(_status_document(doc, now)), lease)
                if doc
                else Delete(self._ks.status(self._host, name))
                for name, doc in batch
            ]
            try:
                self._store.txn([], ops)
            except StoreError as exc:
                self._log.warning("status_write_failed", error=str(exc), pending=len(changes) - start)
                return None
            for name, doc in batch:
                self._metrics.status_writes.labels("put" if doc else "delete").inc()
                if doc is None:
                    self._written.pop(name, None)
                else:
                    self._written[name] = doc
        return len(changes)

    def _record_convergence(self, reports: dict[str, ModelReport]) -> None:
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

    def _update_gauges(self, reports: dict[str, ModelReport]) -> None:
        counts = {state: 0 for state in VersionState}
        for report in reports.values():
            for status in report.versions.values():
                counts[status.state] += 1
        for state, count in counts.items():
            self._metrics.versions.labels(state.value).set(count)
        self._metrics.models_with_errors.set(sum(1 for r in reports.values() if r.error))
        self._metrics.last_reconcile.set(time.time())


def _status_document(report: ModelReport, now) -> ModelStatus:
    return ModelStatus(
        assignment_revision=report.assignment_revision,
        versions={
            str(version): VersionReport(state=status.state, error_code=status.error_code, error_message=status.error_message)
            for version, status in report.versions.items()
        },
        version_labels=dict(report.version_labels),
        error=report.error,
        updated_at=now,
    )
