"""The controller process: election, reconcile loop, watch, ops endpoint.

Threads: ``controller-loop`` (runs passes while leading; a standby's pass does nothing),
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
from tfleet.controller.metrics import ControllerMetrics
from tfleet.controller.problems import ProblemsPublisher
from tfleet.controller.reconciler import ControllerReconciler
from tfleet.controller.settings import ControllerSettings
from tfleet.httpserver import OpsServer
from tfleet.keyspace import Keyspace
from tfleet.passguard import PassGuard
from tfleet.registry import Registry
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


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        *,
        store: EtcdStore | None = None,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keyspace = Keyspace(settings.prefix)
        self.store = store or EtcdStore(settings.etcd)
        self.metrics = metrics or ControllerMetrics()
        # etcd-outage retries: warning, rate-limited (tfleet/logs.py OutageLog)
        self.log = logs.OutageLog(logs.get("controller", id=settings.id), logs.CONTROLLER_OUTAGE_EVENTS)
        self._clock = clock
        self._wake = threading.Event()
        self._requeue_after: float | None = None
        self._stop = threading.Event()
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
        self._loop_beat = clock()
        self.problems = ProblemsPublisher(store=self.store, keyspace=self.keyspace, election=self.election, metrics=self.metrics, log=self.log)
        self._guard = PassGuard("controller-loop", self.log, self.metrics.pass_errors, self.metrics.pass_failing)

    def _leader_record(self) -> LeaderRecord:
        dashboard = self.dashboard.advertised_address if self.dashboard else None
        return LeaderRecord(id=self.settings.id, since=schema.utc_now(), version=__version__, dashboard_address=dashboard)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def run(self) -> None:
        s = self.settings
        tune_gc()
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
            self._loop()
        finally:
            self._shutdown()

    def _loop(self) -> None:
        self._wake.set()
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.settings.resync_interval, self._requeue_after or self.settings.resync_interval))
            if self._stop.is_set():
                break
            if self.settings.coalesce_window:
                self._stop.wait(self.settings.coalesce_window)
            self._wake.clear()
            self._loop_beat = self._clock()
            try:
                self._pass()
            except Exception as exc:  # noqa: BLE001 - a pass never stops the controller (tfleet/passguard.py)
                self._stop.wait(self._guard.failed(exc))
                self._wake.set()
            else:
                self._guard.succeeded()

    def _pass(self) -> None:
        leading = self.election.is_leader
        self.cache.ensure_started()  # a standby's too: its dashboard reads it
        # A standby's pass returns at once; the first one after losing leadership also
        # drops the fleet gauges this controller reported while it led.
        # requeue_after: a rolling-resync slice is owed by then (controller/resync.py)
        self._requeue_after = self.reconciler.reconcile().requeue_after
        if leading:
            self._schedule_next_action()
        self._publish_problems(leading)
        self.metrics.is_leader.set(1 if self.election.is_leader else 0)

    def _publish_problems(self, leading: bool) -> None:
        """<prefix>/problems (controller/problems.py): from the leader's snapshot, or from a
        standby when the leader key itself keeps anybody from leading."""
        snap = self.reconciler.last_snapshot
        if leading and snap is not None:
            # bad_values_revision moves only when a bad value appears, changes or goes: a pass
            # that changed none costs nothing here
            self.problems.publish(snap.bad_values, snap.bad_values_revision)
            return
        self.problems.clear_gauges()
        orphan = self.election.orphaned_leader_key
        if orphan is not None:
            self.problems.publish_without_leader(orphan[1], orphan[0])

    def _schedule_next_action(self) -> None:
        """Wake the loop when the next scheduled action falls due (the action itself is in etcd)."""
        from tfleet.controller.schedules import next_due

        snap = self.reconciler.last_snapshot
        when = next_due(snap) if snap is not None else None
        if when is None:
            if self._scheduler.get_job("scheduled-action") is not None:
                self._scheduler.remove_job("scheduled-action")
            return
        self._scheduler.add_job(self.wake, "date", run_date=max(when, schema.utc_now()), id="scheduled-action", replace_existing=True)

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
        self._stopped.set()

    def _healthy(self) -> tuple[bool, str]:
        idle = self._clock() - self._loop_beat
        limit = 3 * self.settings.resync_interval + 30
        return (idle <= limit, "ok" if idle <= limit else f"loop has not run for {idle:.0f} s")

    def _ready(self) -> tuple[bool, str]:
        return True, "leader" if self.election.is_leader else "standby"
