"""One pass of the leading controller: snapshot -> plan -> fenced writes.

1. Take from the fleet cache (controller/fleetcache.py, kept current by a watch) the
   revision it reached and the keys changed since the previous pass, and apply only those
   to this pass's snapshot (one revision, never half a watch response; no etcd read).
2. Let the pure planner decide (placement + rollout).
3. Write only what differs, in transactions that each carry the leadership fence: a paused
   or partitioned former leader cannot write anything (its fence no longer holds).

A standby does nothing here; the app campaigns for it. The history of intents is recorded by
controller/history.py on its own thread, not by the pass.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from collections.abc import Iterator

from tfleet import routing, schema
from tfleet.controller.election import NotLeader
from tfleet.controller.metrics import ControllerMetrics
from tfleet.controller.planner import ControllerPlan
from tfleet.controller.incremental import EchoLedger, IncrementalPlanner, quiet_assignment, quiet_delete
from tfleet.controller.placement import DEFAULT_UNRESPONSIVE_GRACE
from tfleet.controller.resync import FULL_PLAN_EVERY, RATE_MAX, SLICE_MAX, RollingResync
from tfleet.controller.schedules import ScheduleRunner, next_due
from tfleet.controller.fleetcache import FleetCache
from tfleet.controller.snapshot import Announced, FleetBuilder, FleetSnapshot, announced_assignment, announced_report, announced_route
from tfleet.controller.txn_pipeline import DEFAULT_DEPTH, TxnPipeline
from tfleet.keyspace import Keyspace
from tfleet.ports import Fence, IntentRegistry, Store
from tfleet.logs import Logger
from tfleet.schema import ModelIntent, ModelStatusReport
from tfleet.store import Delete, Put, StoreError

WRITE_BATCH = 100  # etcd allows 128 operations per transaction by default
# Writes whose echo is not a change worth planning: the planner's reports and the route
# tables are functions of the snapshot, so writing them back changes no decision; so are
# the assignments of new replicas (incremental.quiet_assignment; their models' placement
# input still takes them), and the deletes of gone hosts' assignments (incremental.quiet_delete).
# A changed assignment's echo is not quiet: its new mod_revision means the agent has not acted
# on it yet, which changes readiness and the rollout step (tests/unit/test_fleetcache.py).
QUIET_ECHOES = ("modelstatus", "routes", "new replica", "gone host's replica")
_ASSIGNMENT_KINDS = ("assignment", "new replica", "gone host's replica")
HISTORY_RECHECK = 30.0
# A pass that re-places the replicas of lost hosts lets this many or more models whose only
# change is an agent's status wait for the next pass (readiness behind placement: see
# ControllerReconciler._defer_readiness), pass after pass while hosts keep being lost, for
# at most this long (seconds) from the first pass that let them wait.
DEFER_READINESS_AT = 1000
DEFER_READINESS_AT_MOST = 10.0
# The deletes of lost hosts' assignments wait for a pass in which no host was lost, at most
# this long (seconds): see ControllerReconciler._gone_deletes_wait.
GONE_DELETES_WAIT_AT_MOST = 30.0


@dataclass(frozen=True)
class Outcome:
    """What a pass tells the loop (tfleet/loop.py) and the process, controller-runtime style."""

    result: str  # ok | standby | etcd_unavailable | cache_behind | lost_leadership
    writes: int = 0
    # seconds until the next scheduled action falls due (None: none pending): the loop runs then
    requeue_after: float | None = None
    retry: bool = False  # never set: after etcd_unavailable the loop waits for the cache to wake it, or the resync
    # the snapshot this term last decided from (None: standby, or none read yet this term);
    # after a pass that could not read one, the previous one
    snapshot: FleetSnapshot | None = None


class ControllerReconciler:
    def __init__(
        self,
        *,
        store: Store,
        keyspace: Keyspace,
        election: Fence,
        registry: IntentRegistry,
        metrics: ControllerMetrics,
        log: Logger,
        now: Callable[[], dt.datetime] = schema.utc_now,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        cache: FleetCache | None = None,
        tfs_unresponsive_grace: float = DEFAULT_UNRESPONSIVE_GRACE,
        full_plan_interval: float = FULL_PLAN_EVERY,
        resync_slice: int = SLICE_MAX,
        resync_rate: float | None = RATE_MAX,
        txns_in_flight: int = DEFAULT_DEPTH,
        defer_readiness_at: int = DEFER_READINESS_AT,
    ) -> None:
        """cache: the process's fleet cache (app.py shares one with the dashboard); without
        one the reconciler keeps its own. full_plan_interval: every model and host is planned
        again this often, at most resync_slice of each per pass and resync_rate a second
        (None: no ceiling; controller/resync.py).
        txns_in_flight: a pass's write transactions sent at once (controller/txn_pipeline.py).
        defer_readiness_at: see DEFER_READINESS_AT."""
        self._store = store
        self._ks = keyspace
        self._election = election
        self._registry = registry
        self._metrics = metrics
        self._log = log
        self._now = now
        self._clock = clock
        self._cpu_clock = cpu_clock  # (the pass's own CPU seconds, for its log line)
        self._last_valid: dict[str, ModelIntent] = {}
        # model -> (intent revision, when): its history held no valid intent; looked at again
        # after HISTORY_RECHECK seconds (the recorder may still be catching up after a restart)
        self._no_valid_history: dict[str, tuple[int, float]] = {}
        self._schedules = ScheduleRunner(store=store, keyspace=keyspace, registry=registry, election=election, log=log, now=now)
        self._cache = cache if cache is not None else FleetCache(store, keyspace, log=log, metrics=metrics)
        self._cursor = self._cache.cursor("controller", echoes=True)
        self._builder = FleetBuilder(keyspace)
        self._planner = IncrementalPlanner(tfs_unresponsive_grace)
        self._phases: dict[str, str] = {}  # model -> rollout phase last set in the gauge
        self._unplaced: set[str] = set()
        # the net under the incremental planner: every model and host planned again per interval
        self._resync_models = RollingResync(full_plan_interval, resync_slice, resync_rate)
        self._resync_hosts = RollingResync(full_plan_interval, resync_slice, resync_rate)
        self._was_leader = False
        self._echoed: set[str] = set()  # models whose new replicas' assignments came back this pass
        self._ledger = EchoLedger(keyspace)
        self._resynced_hosts: frozenset[str] = frozenset()  # hosts this pass plans for the resync only
        self._txns: TxnPipeline[Put | Delete] = TxnPipeline(self._election.fenced_txn, txns_in_flight, observe=self._metrics.write_txn_seconds.observe)
        # models whose writes may not have landed (a failed pass): planned again by the next one
        self._owed: frozenset[str] = frozenset()
        # models whose readiness waits behind placement, and since when (_defer_readiness)
        self._waiting: frozenset[str] = frozenset()
        self._waiting_since: float | None = None
        # models whose lost hosts' assignments are still to be deleted, and since when
        # (_gone_deletes_wait)
        self._gone_models: set[str] = set()
        self._gone_since: float | None = None
        self._defer_readiness_at = defer_readiness_at
        self.last_snapshot: FleetSnapshot | None = None

    @property
    def reports(self) -> Mapping[str, ModelStatusReport]:
        """Latest report of every managed model, as last planned (for the dashboard)."""
        return self._planner.reports

    @property
    def planner(self) -> IncrementalPlanner:
        return self._planner

    def _start_over(self) -> None:
        """Plan everything next time (a new term, or an unexpected error), from the cache: it
        is what etcd holds, kept by the watch."""
        self._cache.forget_echoes()
        self._ledger.reset()
        self._planner.reset()
        self._owed = frozenset()
        self._waiting, self._waiting_since = frozenset(), None
        self._gone_models, self._gone_since = set(), None  # (a full plan deletes them)

    def _after_failed_writes(self, models: Iterable[str]) -> None:
        """Some of this pass's writes may not have landed (etcd timed out or failed): plan the
        models they were for again next time, not the fleet. The cache still holds what etcd
        holds (its watch is not the write path), and every write is a difference from it, so
        planning those models again from the next snapshot writes whatever did not land. The
        writes that did land come back as changes, not as echoes (none is expected any more).
        At 100,000 models, planning everything after one timed-out transaction took ~21 s of
        planning and ~10 s of writes (bench/scale on a loaded machine), with every other change
        waiting. (A pass that planned everything starts over instead.)"""
        self._cache.forget_echoes()
        self._ledger.reset()
        self._owed = self._owed | frozenset(models) | self._waiting
        self._waiting, self._waiting_since = frozenset(), None

    def reconcile(self) -> Outcome:
        started = self._clock()
        try:
            outcome = self._reconcile()
        finally:
            self._metrics.reconcile_seconds.observe(self._clock() - started)
        self._metrics.reconcile_total.labels(outcome.result).inc()
        return self._completed(outcome)

    def _completed(self, outcome: Outcome) -> Outcome:
        """The outcome with what the process acts on: the snapshot, and when to run again."""
        snap = self.last_snapshot
        if snap is None or outcome.result in ("standby", "lost_leadership"):
            return outcome
        when = next_due(snap)
        action = None if when is None else max(0.0, (when - self._now()).total_seconds())
        # the sooner of: the next scheduled action, the next rolling-resync slice (controller/resync.py)
        owed = [t for t in (action, outcome.requeue_after) if t is not None]
        return replace(outcome, requeue_after=min(owed) if owed else None, snapshot=snap)

    def _reconcile(self) -> Outcome:
        if not self._election.is_leader:
            if self._was_leader:
                self._clear_gauges()  # a standby must not keep reporting the fleet as it last saw it
                self._cursor.forget()  # nor keep a parsed copy of it: a new term takes everything
                self._builder.forget()
                self.last_snapshot = None
            self._was_leader = False
            return Outcome("standby")
        if not self._was_leader:
            self._start_over()  # a new term starts from what etcd holds, not from memory
            self._was_leader = True
        take_started, cpu_started = self._clock(), self._cpu_clock()
        self._txns.waited = 0.0
        snap = self._take()
        took = self._clock() - take_started
        if snap is None:
            return Outcome("etcd_unavailable")
        fence = self._election.fence_revision
        if fence is not None and snap.revision < fence:
            # The cache has not yet seen this term's own leader key: it may miss the former
            # leader's last writes. Its watch wakes the loop when it gets there.
            self._log.info("reconcile", result="cache_behind", revision=snap.revision, fence=fence)
            return Outcome("cache_behind")
        self.last_snapshot = snap
        owed, self._owed = self._owed, frozenset()
        waited, self._waiting = self._waiting, frozenset()
        fresh = snap.changed_models
        if (owed or waited) and not self._planner.plans_all(snap):
            assert snap.changed_models is not None  # (plans_all)
            snap.changed_models = snap.changed_models | owed | waited
        planned = False
        try:
            # (hosts lost in this pass's changes: their replicas come first, see the three below)
            lost = not self._planner.plans_all(snap) and _hosts_lost(snap)
            defer_gone, flush_gone = self._gone_deletes_wait(snap, lost)
            deferred = self._defer_readiness(snap, lost, owed, waited, fresh)
            resynced = self._add_resync_slice(snap, lost)
            self._remember_valid_intents(snap)
            plan_started = self._clock()
            chunks = _Timed(self._planner.plan_chunks(snap, self._last_valid, self._now(), self._echoed), self._clock)
            planned = True
            placed = self._clock() - plan_started
            self._ledger.planned(self._planner.planned)
            self._metrics.models_planned.inc(len(self._planner.planned))
            writes = self._write(snap, chunks, defer_gone, flush_gone)
            writes += self._schedules.run_due(snap)
            plan_took = placed + chunks.seconds  # (placement, then the chunks as the writes drew them)
            wrote = self._clock() - plan_started - plan_took
            self._metrics.plan_seconds.observe(plan_took)
        except NotLeader as exc:
            self._start_over()
            self._metrics.fenced_rejections.inc()
            self._log.warning("reconcile", result="lost_leadership", reason=exc.reason, action="stopped acting")
            return Outcome("lost_leadership")
        except StoreError as exc:
            # some writes may not have landed: their models are planned again next time
            replan: int | str = "all"
            if planned and not self._planner.full:
                self._after_failed_writes(self._planner.planned | self._route_models(snap))
                self._leave_gone(flush_gone)  # (a later pass deletes what is still there)
                replan = len(self._owed)
            else:
                self._start_over()
            self._log.warning("reconcile", result="etcd_unavailable", error=str(exc), replan=replan)
            return Outcome("etcd_unavailable")
        except Exception:
            # The pass guard (app.py) logs it and backs off; the changes this pass took from
            # the cache were not planned, so the next pass plans everything.
            self._start_over()
            raise
        if self._planner.full:  # everything was just planned: the next resync cycle starts now
            self._resync_models.restart(self._clock())
            self._resync_hosts.restart(self._clock())
        self._update_gauges(snap)
        log = self._log.info if writes else self._log.debug
        # (where a slow pass spent its time: taking the cache's changes, planning, writing)
        log(
            "reconcile",
            result="ok",
            revision=snap.revision,
            models=len(snap.intents),
            hosts=len(snap.hosts),
            planned=len(self._planner.planned),
            writes=writes,
            resynced=resynced,
            deferred=len(deferred),
            gone_waiting=len(self._gone_models),
            take_s=round(took, 3),
            plan_s=round(plan_took, 3),
            write_s=round(wrote, 3),
            # (of the pass's time: its thread's CPU, and waiting for etcd's commits; the rest
            # is waiting for a core or the interpreter lock, which other threads held)
            cpu_s=round(self._cpu_clock() - cpu_started, 3),
            etcd_wait_s=round(self._txns.waited, 3),
        )
        # (deferred models wait for the next pass, and so do the waiting deletes: the
        # next pass comes at once)
        return Outcome("ok", writes, 0.0 if deferred or self._gone_models else self.resync_due_in())

    def _gone_deletes_wait(self, snap: FleetSnapshot, lost: bool) -> tuple[bool, frozenset[str]]:
        """Whether this pass leaves the deletes of lost hosts' assignments to a later pass,
        and the models whose waiting deletes it writes.

        They wait while hosts are being lost, at most GONE_DELETES_WAIT_AT_MOST seconds.
        Nothing waits for them (the host is gone, its replica is neither served nor routed,
        and placement ignores it), while the next pass, which re-places the replicas of the
        hosts lost meanwhile, waits for every write of this one: in a pass that re-places
        lost hosts' replicas they are a quarter of the writes. The first pass in which no
        host was lost (the one that reports the new replicas ready, usually) writes them,
        last: for each waiting model, the delete of every assignment the snapshot still holds
        on a host that is still gone (a host that came back keeps what the plan gives it; a
        new term's full plan deletes whatever is left)."""
        if self._planner.plans_all(snap):
            self._gone_models, self._gone_since = set(), None
            return False, frozenset()
        overdue = self._gone_since is not None and self._clock() - self._gone_since >= GONE_DELETES_WAIT_AT_MOST
        if self._gone_models and (not lost or overdue):
            flush = frozenset(self._gone_models)
            self._gone_models, self._gone_since = set(), None
            return False, flush
        return lost, frozenset()

    def _leave_gone(self, models: Iterable[str]) -> None:
        """These models' lost hosts' assignments wait for a later pass (_gone_deletes_wait)."""
        self._gone_models.update(models)
        if self._gone_models and self._gone_since is None:
            self._gone_since = self._clock()

    def _defer_readiness(self, snap: FleetSnapshot, lost: bool, owed: frozenset[str], waited: frozenset[str], fresh: frozenset[str] | None) -> frozenset[str]:
        """Placement before readiness: when hosts were lost, the models whose only change is an
        agent's status (DEFER_READINESS_AT or more of them) wait for the next pass, which comes
        at once. Their replicas are placed already; planning them reports readiness and routes
        new replicas, while the lost hosts' replicas have no replacement until this pass
        writes one. At 100,000 models a pass that re-placed 40 lost hosts' replicas also
        reported the previous pass's ~12,000 new replicas ready, and took 14.6 s instead of
        ~6 s (bench/scale, docs/operations.md).

        They wait again while hosts keep being lost (the next wave's replicas come first:
        at 100,000 models the pass that re-placed the last 53 hosts' replicas also planned
        the ~2,400 models that had waited once, ~18% of it), but never longer than
        DEFER_READINESS_AT_MOST seconds from the first pass that let them wait; the first
        pass in which no host was lost plans them all. Not deferred: models on a changed host
        (placement looks at them anyway), models whose writes may not have landed (owed),
        models with another change this pass (waited: those that waited before; fresh: this
        pass's changed models), and anything on a pass that plans everything."""
        since, self._waiting_since = self._waiting_since, None
        if self._planner.plans_all(snap) or fresh is None:
            return frozenset()
        assert snap.changed_models is not None and snap.changed_hosts is not None  # (plans_all)
        now = self._clock()
        if not lost or (since is not None and now - since >= DEFER_READINESS_AT_MOST):
            return frozenset()
        # What moved for a model that waited is its statuses (a model with another change of
        # its own this pass is planned); the placement input reads their readiness again
        # (IncrementalPlanner._next_input).
        snap.changed_by_status = snap.changed_by_status | (waited - (fresh - snap.changed_by_status))
        if len(snap.changed_by_status) < self._defer_readiness_at:
            return frozenset()
        waiting = snap.changed_by_status - owed - _held_by_any(snap, snap.changed_hosts)
        if len(waiting) < self._defer_readiness_at:
            return frozenset()
        snap.changed_models = snap.changed_models - waiting
        self._waiting, self._waiting_since = waiting, since if since is not None else now
        return waiting

    # -- the rolling resync ---------------------------------------------------------------------
    def _add_resync_slice(self, snap: FleetSnapshot, lost: bool) -> int:
        """Add the models and hosts the rolling resync owes by now to the pass's changes (they
        are planned as if they had changed: the incremental planner then re-derives them from
        the snapshot). Nothing on a pass that plans everything anyway, nor on one in which
        hosts were lost: the slice stays owed to the next pass (the net can wait seconds; the
        lost hosts' replicas cannot: a slice of 500 models was ~5% of such a pass at 100,000
        models, bench/scale)."""
        self._resynced_hosts = frozenset()
        if self._planner.plans_all(snap):
            return 0
        assert snap.changed_models is not None and snap.changed_hosts is not None
        if lost:
            return 0
        now = self._clock()
        models = self._resync_models.take(now, lambda: _managed_names(snap, self._planner))
        # (a host's turn re-accounts every replica it holds: its cycle is the models' or longer)
        hosts = self._resync_hosts.take(now, lambda: snap.hosts.keys(), at_least=self._resync_models.span)
        if models:
            snap.changed_models = snap.changed_models | frozenset(models)
        # (their models' route tables are not rebuilt for it: each model's comes with its own
        # turn in the resync; a host's would cost every model it holds)
        self._resynced_hosts = frozenset(hosts) - snap.changed_hosts
        if hosts:
            snap.changed_hosts = snap.changed_hosts | frozenset(hosts)
        return len(models) + len(hosts)

    def resync_due_in(self) -> float | None:
        """Seconds until the rolling resync owes the next slice (None: nothing owed this cycle)."""
        now = self._clock()
        due = [d for d in (self._resync_models.due_in(now), self._resync_hosts.due_in(now)) if d is not None]
        return min(due) if due else None

    # -- the snapshot -------------------------------------------------------------------------
    def _take(self) -> FleetSnapshot | None:
        """This pass's snapshot: the previous one with the keys changed since then applied."""
        if not self._cache.ensure_started():
            return None
        changes = self._cursor.take()
        if changes is None:
            return None
        if changes.everything or self._builder.fleet is None:
            snap = self._builder.rebuild(changes.revision, (f for f in changes.files.values() if f is not None))
            self._echoed = set()
            self._ledger.reset()
        else:
            snap = self._builder.apply(changes.revision, changes.files, changes.quiet, previous=changes.previous)
            stale, self._echoed = self._ledger.arrived(changes.files.keys(), changes.quiet)
            if stale:  # echoes of writes whose model was planned again before they came back
                snap.changed_models = (snap.changed_models or frozenset()) | stale
        self._metrics.pass_keys.inc(self._builder.applied)
        return snap

    # -- intents and history ------------------------------------------------------------------
    def _remember_valid_intents(self, snap: FleetSnapshot) -> None:
        """Keep the last valid intent of each model (only the changed ones, after the first),
        and of the models whose history held none when last looked at, once HISTORY_RECHECK
        has passed (the recorder may have caught up; only models with an invalid intent)."""
        everything = self._planner.plans_all(snap)
        if everything:
            models: Iterable[str] = snap.intents.keys()
        else:
            now = self._clock()
            due = {m for m, (_, at) in self._no_valid_history.items() if now - at >= HISTORY_RECHECK}
            models = set(snap.changed_models or ()) | due
        restored: set[str] = set()
        for model in list(models):
            parsed = snap.intents.get(model)
            if parsed is None:
                self._last_valid.pop(model, None)
            elif parsed.value is not None:
                self._last_valid[model] = parsed.value
            elif model not in self._last_valid:
                found = self._last_valid_from_history(model, parsed.revision)
                if found is not None:
                    self._last_valid[model] = found
                    restored.add(model)
        if restored and snap.changed_models is not None:
            # its effective intent changed though its key did not: the planner plans it again
            snap.changed_models = snap.changed_models | restored
        if everything:
            for model in list(self._last_valid):
                if model not in snap.intents:
                    del self._last_valid[model]
        for model in list(self._no_valid_history):  # (models with an invalid intent only)
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
    def _route_models(self, snap: FleetSnapshot) -> set[str]:
        """The models whose route tables a pass that does not plan everything looks at: those
        whose keys changed, and those on changed hosts."""
        assert snap.changed_models is not None and snap.changed_hosts is not None
        return set(snap.changed_models) | _held_by_any(snap, snap.changed_hosts - self._resynced_hosts)

    def _route_ops(self, snap: FleetSnapshot) -> Iterator[tuple[str, Put | Delete, bytes | None]]:
        """Route tables of the models whose statuses or hosts changed (all on a full pass),
        each (model, operation, the put table's content digest: what the cache keeps of its echo)."""
        models = None if snap.changed_models is None or snap.changed_hosts is None else self._route_models(snap)
        return routing.plan_routes(snap, snap.routes, self._now(), models).writes(self._ks)

    def _operations(
        self, snap: FleetSnapshot, chunks: Iterable[ControllerPlan], defer_gone: bool, flush_gone: frozenset[str]
    ) -> Iterator[tuple[str, Put | Delete, Announced | None, str]]:
        """(kind, operation, how a Put's echo files (the report, assignment or route table
        digest it encodes, in its slot), its model) in write order,
        encoded one at a time: a first pass at 100,000 models writes ~300,000 keys, which must
        not all be held encoded at once (it was the peak of the controller's memory). Each
        chunk of the plan is planned only once the previous one's writes are on their way
        (IncrementalPlanner.plan_chunks), so planning overlaps etcd's commits: at 100,000 models
        a pass that re-placed the replicas of 65 lost hosts spent 1.6 s planning and then
        3.4 s writing, most of it waiting for etcd (bench/scale, py-spy). Route tables come
        after the plan's writes: they are built from the snapshot, not from the plan.

        The deletes of lost hosts' assignments come last of all, in a pass in which no host
        was lost (while hosts are being lost they wait: _gone_deletes_wait gives defer_gone,
        and flush_gone, the models whose waiting deletes this pass writes). Nothing waits for
        them (the host is gone, its replica is neither served nor routed, and placement
        already ignores it), while everything before them is what an agent, a router or an
        operator waits for; in a pass that re-places lost hosts' replicas they are a quarter
        of the writes (a new assignment, the old one's delete, the report, the route table
        per model)."""
        gone: list[tuple[str, Delete, None, str]] = []
        for plan in chunks:
            for (host, model), assignment in sorted(plan.puts.items()):
                kind = "new replica" if quiet_assignment(snap, host, model) else "assignment"
                yield kind, Put(self._ks.assignment(host, model), schema.encode(assignment)), announced_assignment(host, model, assignment), model
            for host, model in sorted(plan.deletes):
                if quiet_delete(snap, host, model):
                    if defer_gone:
                        self._leave_gone((model,))
                    else:
                        gone.append(("gone host's replica", Delete(self._ks.assignment(host, model)), None, model))
                else:
                    yield "assignment", Delete(self._ks.assignment(host, model)), None, model
            for model, report in sorted(plan.reports.items()):
                # (plan_model gives the stored report itself when only updated_at would change)
                if report is not snap.modelstatus.get(model):
                    yield "modelstatus", Put(self._ks.modelstatus(model), schema.encode(report)), announced_report(model, report), model
            for model in sorted(plan.report_deletes):
                yield "modelstatus", Delete(self._ks.modelstatus(model)), None, model
        for model, op, digest in self._route_ops(snap):
            yield "routes", op, None if digest is None else announced_route(model, digest), model
        yield from gone
        deleted = {op.key for _, op, _, _ in gone}
        for model in sorted(flush_gone):
            for host in sorted(snap.holders.get(model, ())):
                if quiet_delete(snap, host, model):  # (a live host's replica is not gone: no key to build)
                    key = self._ks.assignment(host, model)
                    if key not in deleted:
                        yield "gone host's replica", Delete(key), None, model

    def _write(self, snap: FleetSnapshot, chunks: Iterable[ControllerPlan], defer_gone: bool, flush_gone: frozenset[str]) -> int:
        try:
            return self._send(self._operations(snap, chunks, defer_gone, flush_gone))
        finally:
            self._txns.drain()  # (raises the first failure of those still in flight)

    def _send(self, operations: Iterator[tuple[str, Put | Delete, Announced | None, str]]) -> int:
        written = 0
        while batch := list(itertools.islice(operations, WRITE_BATCH)):
            # Announced to the cache before they are written: the report and route echoes are
            # quiet, and reports and assignments come back filed as these objects (in the
            # slots the writer knows: their keys are not parsed again).
            echoes = [(op, model) for kind, op, _, model in batch if kind in QUIET_ECHOES]
            quiet = {op.key: op.value if isinstance(op, Put) else None for op, _ in echoes}
            self._ledger.announce(quiet, {op.key: model for op, model in echoes})
            self._cache.expect(quiet, {op.key: (op.value, value) for _, op, value, _ in batch if isinstance(op, Put) and value is not None})
            # A failure raises NotLeader when the fence fails (False would mean an extra compare
            # failed, and these writes carry none), here or in drain().
            self._txns.submit([op for _, op, _, _ in batch])
            # (counted per batch: a labels() lookup per key cost ~7 us, a fifth of a moved replica's writes)
            counts = Counter(("assignment" if kind in _ASSIGNMENT_KINDS else kind, "put" if isinstance(op, Put) else "delete") for kind, op, _, _ in batch)
            for labels, count in counts.items():
                self._metrics.writes.labels(*labels).inc(count)
            written += len(batch)
        return written

    def _clear_gauges(self) -> None:
        self._phases.clear()
        self._unplaced.clear()
        for gauge in (self._metrics.rollout_phase, self._metrics.replicas_wanted, self._metrics.replicas_ready):
            gauge.clear()
        for total in (self._metrics.live_hosts, self._metrics.invalid_intents, self._metrics.unplaced_models):
            total.set(0)

    def _update_gauges(self, snap: FleetSnapshot) -> None:
        """Per-model gauges of the models this pass planned (all of them on a full plan),
        each gauge updated once (ModelGauge.update)."""
        metrics = self._metrics
        metrics.live_hosts.set(len(snap.hosts))
        metrics.invalid_intents.set(len(snap.invalid_intents))
        phases, unplaced = self._phases, self._unplaced
        if self._planner.full:
            for gauge in (metrics.rollout_phase, metrics.replicas_wanted, metrics.replicas_ready):
                gauge.clear()
            phases.clear()
            unplaced.clear()
        wanted: dict[tuple[str, ...], float] = {}
        ready: dict[tuple[str, ...], float] = {}
        in_phase: dict[tuple[str, ...], float] = {}
        gone: list[tuple[str, ...]] = []
        left_phase: list[tuple[str, ...]] = []
        report_of = self._planner.report
        for model in self._planner.planned:
            report = report_of(model)
            phase = phases.pop(model, None)
            if phase is not None and (report is None or report.rollout.phase != phase):
                left_phase.append((model, phase))
            labels = (model,)  # (one tuple for both gauges: it is the key each keeps)
            if report is None:
                unplaced.discard(model)
                gone.append(labels)
                continue
            wanted[labels] = report.wanted_replicas
            ready[labels] = sum(1 for r in report.replicas if r.ready)
            phase = report.rollout.phase
            in_phase[(model, phase)] = 1
            phases[model] = phase
            if report.reasons:
                unplaced.add(model)
            else:
                unplaced.discard(model)
        metrics.rollout_phase.update(in_phase, left_phase)
        metrics.replicas_wanted.update(wanted, gone)
        metrics.replicas_ready.update(ready, gone)
        metrics.unplaced_models.set(len(unplaced))


class _Timed:
    """An iterator's items, counting the seconds spent producing them: a pass's chunks are
    planned as its writes draw them, and ``seconds`` is then that planning time."""

    def __init__(self, items: Iterator[ControllerPlan], clock: Callable[[], float]) -> None:
        self._items, self._clock = items, clock
        self.seconds = 0.0

    def __iter__(self) -> Iterator[ControllerPlan]:
        while True:
            started = self._clock()
            item = next(self._items, None)
            self.seconds += self._clock() - started
            if item is None:
                return
            yield item


def _hosts_lost(snap: FleetSnapshot) -> bool:
    """Whether a host changed by going away (an incremental snapshot: changed_hosts is set)."""
    assert snap.changed_hosts is not None
    return any(host not in snap.hosts for host in snap.changed_hosts)


def _held_by_any(snap: FleetSnapshot, hosts: Iterable[str]) -> set[str]:
    """The models with an assignment on any of these hosts."""
    models: set[str] = set()
    for host in hosts:
        models |= snap.held_by.get(host, set())
    return models


def _managed_names(snap: FleetSnapshot, planner: IncrementalPlanner) -> list[str]:
    """Every model a resync cycle covers: with an intent, a report, or a result kept by the
    planner (one list of names per cycle)."""
    return list(dict.fromkeys([*snap.intents.keys(), *snap.modelstatus.keys(), *planner.known_models]))


__all__ = ["ControllerReconciler", "Outcome"]
