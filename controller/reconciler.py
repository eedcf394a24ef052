"""One pass of the leading controller: snapshot -> plan -> fenced writes.

1. Read the whole prefix in one etcd range read (one consistent revision) and parse it.
2. Let the pure planner decide (placement + rollout).
3. Write only what differs, in transactions that each carry the leadership fence: a paused
   or partitioned former leader cannot write anything (its fence no longer holds).

A standby does nothing here; the app campaigns for it. The history of intents is recorded by
controller/history.py on its own thread, not by the pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tfleet import routing, schema
from tfleet.controller import planner
from tfleet.controller.election import NotLeader
from tfleet.controller.metrics import ControllerMetrics
from tfleet.controller.incremental import IncrementalPlanner
from tfleet.controller.placement import DEFAULT_UNRESPONSIVE_GRACE
from tfleet.controller.schedules import ScheduleRunner
from tfleet.controller.snapshot import FleetSnapshot, SnapshotReader
from tfleet.keyspace import Keyspace
from tfleet.schema import ModelIntent, ModelStatusReport
from tfleet.store import Delete, EtcdStore, Put, StoreError

WRITE_BATCH = 100  # etcd allows 128 operations per transaction by default
# The incremental planner is checked by a full plan this often (seconds): a safety net for
# any change it might have missed.
FULL_PLAN_EVERY = 60.0
HISTORY_RECHECK = 30.0


@dataclass(frozen=True)
class Outcome:
    result: str  # ok | standby | etcd_unavailable | lost_leadership
    writes: int = 0


class ControllerReconciler:
    def __init__(
        self,
        *,
        store: EtcdStore,
        keyspace: Keyspace,
        election,  # tfleet.controller.election.Election
        registry,  # tfleet.registry.Registry
        metrics: ControllerMetrics,
        log,
        now: Callable = schema.utc_now,
        clock: Callable[[], float] = time.monotonic,
        tfs_unresponsive_grace: float = DEFAULT_UNRESPONSIVE_GRACE,
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._election = election
        self._registry = registry
        self._metrics = metrics
        self._log = log
        self._now = now
        self._clock = clock
        self._last_valid: dict[str, ModelIntent] = {}
        # model -> (intent revision, when): its history held no valid intent; looked at again
        # after HISTORY_RECHECK seconds (the recorder may still be catching up after a restart)
        self._no_valid_history: dict[str, tuple[int, float]] = {}
        self._schedules = ScheduleRunner(store=store, keyspace=keyspace, registry=registry, election=election, log=log, now=now)
        self._reader = SnapshotReader(keyspace)
        self._planner = IncrementalPlanner(tfs_unresponsive_grace)
        self._last_full_plan = float("-inf")
        self._was_leader = False
        self.last_snapshot: FleetSnapshot | None = None

    @property
    def reports(self):
        """Latest report of every managed model, as last planned (for the dashboard)."""
        return self._planner.reports

    def _start_over(self) -> None:
        """Plan everything from a fresh read next time (after failed writes, or a new term)."""
        self._reader.forget()
        self._planner.reset()

    def reconcile(self) -> Outcome:
        started = self._clock()
        try:
            outcome = self._reconcile()
        finally:
            self._metrics.reconcile_seconds.observe(self._clock() - started)
        self._metrics.reconcile_total.labels(outcome.result).inc()
        return outcome

    def _reconcile(self) -> Outcome:
        if not self._election.is_leader:
            if self._was_leader:
                self._clear_gauges()  # a standby must not keep reporting the fleet as it last saw it
            self._was_leader = False
            return Outcome("standby")
        if not self._was_leader or self._clock() - self._last_full_plan >= FULL_PLAN_EVERY:
            self._start_over()  # a new term starts from what etcd holds, not from memory
            self._last_full_plan = self._clock()
            self._was_leader = True
        try:
            snap = self._reader.read(self._store.list_prefix(self._ks.prefix + "/"))
        except StoreError as exc:
            self._log.warning("reconcile", result="etcd_unavailable", error=str(exc))
            return Outcome("etcd_unavailable")
        self.last_snapshot = snap
        try:
            self._remember_valid_intents(snap)
            plan_started = self._clock()
            plan = self._planner.plan(snap, self._last_valid, self._now())
            self._metrics.plan_seconds.observe(self._clock() - plan_started)
            writes = self._write(snap, plan)
            writes += self._schedules.run_due(snap)
        except NotLeader as exc:
            self._start_over()
            self._metrics.fenced_rejections.inc()
            self._log.warning("reconcile", result="lost_leadership", reason=exc.reason, action="stopped acting")
            return Outcome("lost_leadership")
        except StoreError as exc:
            self._start_over()  # some writes may not have landed: plan everything again
            self._log.warning("reconcile", result="etcd_unavailable", error=str(exc))
            return Outcome("etcd_unavailable")
        self._update_gauges(snap)
        log = self._log.info if writes else self._log.debug
        log("reconcile", result="ok", revision=snap.revision, models=len(snap.intents), hosts=len(snap.hosts), writes=writes)
        return Outcome("ok", writes)

    # -- intents and history ------------------------------------------------------------------
    def _remember_valid_intents(self, snap: FleetSnapshot) -> None:
        for model, parsed in snap.intents.items():
            if parsed.value is not None:
                self._last_valid[model] = parsed.value
            elif model not in self._last_valid:
                restored = self._last_valid_from_history(model, parsed.revision)
                if restored is not None:
                    self._last_valid[model] = restored
        for model in list(self._last_valid):
            if model not in snap.intents:
                del self._last_valid[model]
        for model in list(self._no_valid_history):
            if model not in snap.intents or snap.intents[model].value is not None:
                del self._no_valid_history[model]

    def _last_valid_from_history(self, model: str, revision: int) -> ModelIntent | None:
        """After a restart, the last valid intent of a model whose intent is now invalid: the
        newest entries only, a few at a time (Registry.last_valid_intent), once per revision."""
        checked = self._no_valid_history.get(model)
        if checked is not None and checked[0] == revision and self._clock() - checked[1] < HISTORY_RECHECK:
            return None
        try:
            found = self._registry.last_valid_intent(model)
        except Exception as exc:  # noqa: BLE001 (history is a fallback; never fail the pass)
            self._log.info("history_unreadable", model=model, error=str(exc))
            return None
        if found is None:
            self._no_valid_history[model] = (revision, self._clock())
        return found

    # -- writes ------------------------------------------------------------------------------------
    def _route_ops(self, snap: FleetSnapshot) -> list[Put | Delete]:
        """Route tables of the models whose statuses or hosts changed (all on a full pass)."""
        models: set[str] | None = None
        if snap.changed_models is not None and snap.changed_hosts is not None:
            models = set(snap.changed_models)
            for host in snap.changed_hosts:
                models |= snap.held_by.get(host, set())
        return list(routing.plan_routes(snap, snap.routes, self._now(), models).operations(self._ks))

    def _write(self, snap: FleetSnapshot, plan: planner.ControllerPlan) -> int:
        ops: list[tuple[str, Put | Delete]] = []
        for (host, model), assignment in sorted(plan.puts.items()):
            ops.append(("assignment", Put(self._ks.assignment(host, model), schema.encode(assignment))))
        for host, model in sorted(plan.deletes):
            ops.append(("assignment", Delete(self._ks.assignment(host, model))))
        for model, report in sorted(plan.reports.items()):
            if not _same_report(report, snap.modelstatus.get(model)):
                ops.append(("modelstatus", Put(self._ks.modelstatus(model), schema.encode(report))))
        for model in sorted(plan.report_deletes):
            ops.append(("modelstatus", Delete(self._ks.modelstatus(model))))
        ops += [("routes", op) for op in self._route_ops(snap)]
        for start in range(0, len(ops), WRITE_BATCH):
            batch = ops[start : start + WRITE_BATCH]
            # Raises NotLeader when the fence fails; False would mean an extra compare failed,
            # and these writes carry none.
            self._election.fenced_txn([op for _, op in batch])
            for kind, op in batch:
                self._metrics.writes.labels(kind, "put" if isinstance(op, Put) else "delete").inc()
        return len(ops)

    def _clear_gauges(self) -> None:
        for gauge in (self._metrics.rollout_phase, self._metrics.replicas_wanted, self._metrics.replicas_ready):
            gauge.clear()
        for gauge in (self._metrics.live_hosts, self._metrics.invalid_intents, self._metrics.unplaced_models):
            gauge.set(0)

    def _update_gauges(self, snap: FleetSnapshot) -> None:
        reports = self._planner.reports
        self._metrics.live_hosts.set(len(snap.hosts))
        self._metrics.invalid_intents.set(sum(1 for p in snap.intents.values() if p.value is None))
        self._metrics.unplaced_models.set(sum(1 for r in reports.values() if r.reasons))
        self._metrics.rollout_phase.clear()
        self._metrics.replicas_wanted.clear()
        self._metrics.replicas_ready.clear()
        for model, report in reports.items():
            self._metrics.replicas_wanted.labels(model).set(report.wanted_replicas)
            self._metrics.replicas_ready.labels(model).set(sum(1 for r in report.replicas if r.ready))
            self._metrics.rollout_phase.labels(model, report.rollout.phase).set(1)


def _same_report(new: ModelStatusReport, old: ModelStatusReport | None) -> bool:
    if old is None:
        return False
    return new.model_dump(exclude={"updated_at"}) == old.model_dump(exclude={"updated_at"})


__all__ = ["ControllerReconciler", "Outcome"]
