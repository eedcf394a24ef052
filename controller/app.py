"""The controller process: election, reconcile loop, watch, ops endpoint.

Threads: ``controller-loop`` (the one supervised loop, tfleet/loop.py: runs passes while
leading, a standby's pass does nothing; a pending scheduled action is the pass's requeue_after),
APScheduler jobs ``election-renew`` (every TTL/3, jittered: the leader refreshes its lease, a
standby campaigns; the election also watches the leader key) and ``resync`` (a pass every resync_interval
as the safety net), the fleet cache's watch of the prefix (controller/fleetcache.py: leader or
standby, it keeps the one in-memory copy of the fleet that passes and the dashboard read, and
wakes the loop on every change), ``ops-http``, with ``dashboard_port`` set the dashboard's
``dashboard-state`` and ``dashboard-http`` threads (fed by the same cache), and
``history-recorder`` (idle while standby; while leading it replays the watch of models/ into
the history: controller/history.py; history/ is never in the cache).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from tfleet import __version__, logs, schema
from tfleet.controller.dashboard import Dashboard
from tfleet.controller.discovery import discovery_routes
from tfleet.controller.election import Election
from tfleet.controller.fleetcache import FleetCache
from tfleet.controller.history import HistoryRecorder
from tfleet.controller.collector import Collector
from tfleet.controller.heap import Trimmer
from tfleet.controller.metrics import ControllerMetrics
from tfleet.controller.problems import ProblemsPublisher
from tfleet.controller.reconciler import ControllerReconciler, Outcome
from tfleet.controller.settings import ControllerSettings
from tfleet.httpserver import OpsServer
from tfleet.keyspace import Keyspace
from tfleet.loop import Loop
from tfleet.ports import Store
from tfleet.registry import Registry
from tfleet.controller.snapshot import FleetSnapshot
from tfleet.schema import LeaderRecord
from tfleet.store import EtcdStore


# CPython's default GC thresholds (700, 10, 10) make a process that holds a large fleet
# snapshot rescan it over and over while a pass allocates: measured as a third of the full
# plan time for 10,000 models (bench/controller_plan.py --default-gc). Collecting less often
# costs a little memory; reference counting still frees everything that is not cyclic.
GC_THRESHOLDS = (50_000, 20, 100)
# How often the fleet cache is compared with a fresh read of etcd (seconds); a difference is
# logged, counted and repaired by a re-list.
CACHE_VERIFY_EVERY = 900.0


# How often (seconds) a thread that computes hands the interpreter lock to a waiting one
# (sys.setswitchinterval; CPython's default is 0.005). A pass computes for seconds while the
# watch, transaction and gRPC threads wake many times a second, and each hand-over costs the
# pass the time it takes to get the lock back, more on a machine whose cores are busy with
# etcd and the agents. At 100,000 models, bench/scale's 10 % host loss was re-placed 13.5,
# 14.1, 14.6, 15.8 and 14.9 s after the kill with 0.02 (mean 14.6 s), against 14.9 and
# 15.0 s with 0.005 (docs/operations.md; runs on this shared machine vary by more than
# that, the mechanism is what it is kept for). The other threads wait at most this long for
# the lock: nothing they do (a watch event, /metrics, a lease keepalive every few seconds)
# notices 20 ms.
GIL_SWITCH_INTERVAL = 0.02


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def tune_interpreter() -> Callable[[], None]:
    """The controller process's collector thresholds and lock switch interval; returns what
    puts the previous ones back (a process that goes on without the controller, e.g. tests)."""
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    tune_gc()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    def restore() -> None:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)

    return restore


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        store: Store | None = None,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keyspace = Keyspace(settings.prefix)
        self.store: Store = store or EtcdStore(settings.etcd)
        self.metrics = metrics or ControllerMetrics()
        # etcd-outage retries: warning, rate-limited (tfleet/logs.py OutageLog)
        self.log = logs.OutageLog(logs.get("controller", id=settings.id), logs.CONTROLLER_OUTAGE_EVENTS)
        self._clock = clock
        self._stopped = threading.Event()
        self._since = schema.utc_now()
        # /sd/agents and /sd/tfserving: Prometheus HTTP service discovery of every live host
        self.ops = OpsServer(
            settings.http_host,
            settings.http_port,
            self.metrics.registry,
            healthy=self._healthy,
            ready=self._ready,
            routes=discovery_routes(self.store, self.keyspace, self.log),
        )
        # One cache per process (leader or standby): the passes and the dashboard read it.
        self.cache = FleetCache(self.store, self.keyspace, log=self.log, metrics=self.metrics)
        self.cache.on_change(self.wake)
        self.dashboard = (
            None
            if settings.dashboard_port is None
            else Dashboard(
                self.store, self.keyspace, settings.dashboard_host, settings.dashboard_port, controller_id=settings.id, log=self.log, cache=self.cache
            )
        )
        self.election = Election(
            self.store,
            self.keyspace,
            settings.id,
            settings.lease_ttl,
            self._leader_record,
            self.log,
            clock=clock,
            on_elected=self._on_elected,
            on_lost=self._on_lost,
        )
        self.registry = Registry(self.store, self.keyspace)
        self.reconciler = ControllerReconciler(
            store=self.store,
            keyspace=self.keyspace,
            election=self.election,
            registry=self.registry,
            metrics=self.metrics,
            log=self.log,
            clock=clock,
            cache=self.cache,
            tfs_unresponsive_grace=settings.tfs_unresponsive_grace,
            full_plan_interval=settings.full_plan_interval,
            resync_rate=settings.full_plan_rate,
        )
        # Records every change of models/ in the history while leading (its own thread).
        self.history = HistoryRecorder(
            store=self.store,
            keyspace=self.keyspace,
            registry=self.registry,
            election=self.election,
            metrics=self.metrics,
            log=self.log.bind(component="history"),
            keep=settings.history_keep,
        )
        self._scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self.problems = ProblemsPublisher(store=self.store, keyspace=self.keyspace, election=self.election, metrics=self.metrics, log=self.log)
        self._snapshot: FleetSnapshot | None = None  # the snapshot of the last pass that had one (leading)
        self._trimmer = Trimmer()
        self._collector = Collector(log=self.log, pauses=self.metrics.gc_seconds, clock=clock)
        self._restore_interpreter: Callable[[], None] | None = None
        self.loop = Loop(
            "controller-loop",
            self._pass,
            log=self.log,
            errors=self.metrics.pass_errors,
            failing=self.metrics.pass_failing,
            coalesce=settings.coalesce_window,
            idle=settings.resync_interval,
            clock=clock,
        )

    def _leader_record(self) -> LeaderRecord:
        dashboard = self.dashboard.advertised_address if self.dashboard else None
        return LeaderRecord(id=self.settings.id, since=schema.utc_now(), version=__version__, dashboard_address=dashboard)

    def wake(self) -> None:
        self.loop.wake()

    def stop(self) -> None:
        self.loop.stop()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def run(self) -> None:
        s = self.settings
        self._restore_interpreter = tune_interpreter()
        self._collector.start()
        self.ops.start()
        if self.dashboard is not None:
            self.dashboard.start()
        self.log.info(
            "controller_started",
            version=__version__,
            etcd=list(s.etcd.endpoints),
            prefix=s.prefix,
            ops=self.ops.address,
            dashboard=self.dashboard.url if self.dashboard else None,
        )
        try:
            # Election.renew: the leader refreshes its lease, a standby campaigns (it also
            # watches the leader key, so it campaigns at once when the key goes).
            self._scheduler.add_job(self.election.renew, "interval", seconds=s.renew_interval, jitter=s.renew_interval / 10, id="election-renew")
            self._scheduler.add_job(self.wake, "interval", seconds=s.resync_interval, id="resync")
            # rare: it reads every section, at the cache's revision
            self._scheduler.add_job(self.cache.verify, "interval", seconds=CACHE_VERIFY_EVERY, id="cache-verify")
            self._scheduler.start()
            self.election.start()
            self.history.start()
            self.loop.run()
        finally:
            self._shutdown()

    def _pass(self, woke: bool) -> Outcome:
        """One turn of the loop (its pass guard catches any surprise). The outcome's
        requeue_after wakes the loop when the next scheduled action falls due (the action
        itself is in etcd, so whichever controller leads then runs it)."""
        leading = self.election.is_leader
        self.cache.ensure_started()  # a standby's too: its dashboard reads it
        # A standby's pass returns at once; the first one after losing leadership also
        # drops the fleet gauges this controller reported while it led.
        # (no collection during the pass; what survives it is not scanned again: controller/collector.py)
        with self._collector.during_pass():
            outcome = self.reconciler.reconcile()
        self._trimmer.maybe_trim()  # (a burst's freed C heap back to the system: controller/heap.py)
        if outcome.result == "standby":
            self._snapshot = None
        elif outcome.snapshot is not None:
            self._snapshot = outcome.snapshot
        self._publish_problems(leading)
        self.metrics.is_leader.set(1 if self.election.is_leader else 0)
        return outcome

    def _publish_problems(self, leading: bool) -> None:
        """<prefix>/problems (controller/problems.py): from the leader's snapshot, or from a
        standby when the leader key itself keeps anybody from leading."""
        snap = self._snapshot
        if leading and snap is not None:
            # bad_values_revision moves only when a bad value appears, changes or goes: a pass
            # that changed none costs nothing here
            self.problems.publish(snap.bad_values, snap.bad_values_revision)
            return
        self.problems.clear_gauges()
        orphan = self.election.orphaned_leader_key
        if orphan is not None:
            self.problems.publish_without_leader(orphan[1], orphan[0])

    def _on_elected(self) -> None:
        self.metrics.leadership_changes.labels("won").inc()
        self.log.info("leadership_won")
        self.wake()
        self.history.wake()

    def _on_lost(self) -> None:
        self.metrics.leadership_changes.labels("lost").inc()
        self.metrics.is_leader.set(0)
        self.log.warning("leadership_lost", action="stopped acting")
        self.wake()

    def _shutdown(self) -> None:
        self.log.info("controller_stopping")
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self.cache.stop()
        self.history.stop()
        self.election.resign()
        if self.dashboard is not None:
            self.dashboard.stop()
        self.ops.stop()
        self.store.close()
        self._collector.stop()
        if self._restore_interpreter is not None:
            self._restore_interpreter()
        self._stopped.set()

    def _healthy(self) -> tuple[bool, str]:
        idle = self._clock() - self.loop.beat
        limit = 3 * self.settings.resync_interval + 30
        return (idle <= limit, "ok" if idle <= limit else f"loop has not run for {idle:.0f} s")

    def _ready(self) -> tuple[bool, str]:
        return True, "leader" if self.election.is_leader else "standby"
