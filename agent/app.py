"""The agent process: wires the heartbeat, the reconcile loop, the watch and the ops endpoint.

Threads, each named and owned here:

* ``agent-loop`` (the caller of ``run``): the one supervised loop (tfleet/loop.py) waits to be
  woken, coalesces bursts for a short window, then runs one reconcile pass; a pass that is not
  settled asks to run again soon (its Outcome's requeue_after).
* APScheduler jobs: ``lease-renew`` every TTL/3 with jitter, ``resync`` (a full pass) every
  ``resync_interval`` as the safety net for anything a watch missed.
* ``watch:<prefix>`` (the store's): wakes the loop on any change under assignments/<host>/.
  The loop re-reads the prefix itself, so the watch carries no state of its own.
* ``ops-http``: /metrics, /healthz, /readyz.

Shutdown (SIGTERM) revokes the lease, so the host and status keys vanish at once, and leaves
TF Serving serving what it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from tfleet import __version__, logs, schema
from tfleet.agent.applied import AppliedStateFile
from tfleet.agent.heartbeat import HostLease
from tfleet.agent.metrics import AgentMetrics
from tfleet.agent.reconciler import Reconciler
from tfleet.agent.settings import AgentSettings
from tfleet.httpserver import OpsServer
from tfleet.keyspace import Keyspace
from tfleet.loop import Loop, Outcome
from tfleet.ports import ModelServer, Store, WatchHandle
from tfleet.schema import HostRecord
from tfleet.store import EtcdStore, Snapshot, WatchEvent


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        store: Store | None = None,
        tfs: ModelServer | None = None,
        metrics: AgentMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tfs is None:
            from tfleet.tfs.client import TfsClient

            tfs = TfsClient(settings.tfs_grpc)
        self.settings = settings
        self.keyspace = Keyspace(settings.prefix)
        self.store: Store = store or EtcdStore(settings.etcd)
        self.tfs = tfs
        self.metrics = metrics or AgentMetrics()
        self.log = logs.get("agent", host=settings.host)
        self._clock = clock
        self._full = threading.Event()
        self._pass = threading.Event()  # a reconcile pass is wanted (not just a probe)
        self._probe = threading.Event()
        self._stopped = threading.Event()
        self._started_at = schema.utc_now()
        self._watch: WatchHandle | None = None
        self._status_watch: WatchHandle | None = None
        self._host_watch: WatchHandle | None = None
        self.ops = OpsServer(settings.http_host, settings.http_port, self.metrics.registry, healthy=self._healthy, ready=self._ready)
        self.lease = HostLease(
            self.store,
            self.keyspace.host(settings.host),
            record=self._host_record,
            ttl=settings.lease_ttl,
            metrics=self.metrics,
            log=self.log,
            on_new_lease=self._on_new_lease,
            clock=clock,
        )
        self.reconciler = Reconciler(
            store=self.store,
            tfs=tfs,
            keyspace=self.keyspace,
            settings=settings,
            lease=self.lease,
            metrics=self.metrics,
            log=self.log,
            applied_file=AppliedStateFile(settings.state_file),
            clock=clock,
            on_tfs_change=self.lease.rewrite,
        )
        self._scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        # A failed pass may have left caches half-updated: the one after its backoff is full.
        self.loop = Loop(
            "agent-loop",
            self._step,
            log=self.log,
            errors=self.metrics.pass_errors,
            failing=self.metrics.pass_failing,
            coalesce=settings.coalesce_window,
            on_failure=lambda: self.wake(full=True),
            clock=clock,
        )

    # -- control ---------------------------------------------------------------------------
    def wake(self, full: bool = False) -> None:
        if full:
            self._full.set()
        self._pass.set()
        self.loop.wake()

    def _wake_probe(self) -> None:
        self._probe.set()
        self.loop.wake()

    def stop(self) -> None:
        """Ask run() to finish; safe from a signal handler or another thread."""
        self.loop.stop()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        self.ops.start()
        self.log.info("agent_started", version=__version__, etcd=list(s.etcd.endpoints), tfs=s.tfs_grpc, ops=self.ops.address, prefix=s.prefix)
        try:
            self.lease.renew()
            self._scheduler.add_job(self.lease.renew, "interval", seconds=s.renew_interval, jitter=s.renew_interval / 10, id="lease-renew")
            self._scheduler.add_job(lambda: self.wake(full=True), "interval", seconds=s.resync_interval, jitter=s.resync_interval / 10, id="resync")
            self._scheduler.add_job(self._wake_probe, "interval", seconds=s.tfs_probe_interval, id="tfs-probe")
            self._scheduler.start()
            self._full.set()  # the first pass is full, and runs at once
            self.loop.run()
        finally:
            self._shutdown()

    def _step(self, woke: bool) -> Outcome | None:
        """One turn of the loop after a wake: the host record's rewrite when due, then a probe
        of TF Serving or a pass (None: neither asked for a pass). Everything in here runs
        under the loop's pass guard, so a surprise anywhere cannot stop the agent."""
        if self.lease.rewrite_due:
            self.lease.rewrite()
        wanted = not woke or self._pass.is_set()  # a requeue that came due, or a wake
        self._pass.clear()
        probe = self._probe.is_set()
        self._probe.clear()
        if not wanted and probe:
            # Between passes only TF Serving is looked at (one cheap call); a pass follows
            # at once when it restarted, hangs no more, or the probed model changed.
            wanted = self.reconciler.probe()
        if not wanted:
            return None
        full = self._full.is_set()
        self._full.clear()
        if full:
            self.lease.verify()
            if self.lease.rewrite_due:
                self.lease.rewrite()
        outcome = self.reconciler.reconcile(full=full)
        self._ensure_watch()
        return outcome

    def _ensure_watch(self) -> None:
        if not self.reconciler.last_revision:
            return
        start = self.reconciler.last_revision + 1
        if self._watch is None:
            self._watch = self.store.watch_prefix(
                self.keyspace.assignments_prefix(self.settings.host),
                start,
                on_events=lambda events: self.wake(),
                on_reset=lambda snapshot: self.wake(full=True),
                on_error=self._on_watch_error,
            )
        if self._status_watch is None:
            # The agent owns its status keys: somebody else's change is put right by a pass.
            self._status_watch = self.store.watch_prefix(
                self.keyspace.status_prefix(self.settings.host),
                start,
                on_events=self._on_status_events,
                on_reset=self._on_status_reset,
                on_error=self._on_watch_error,
            )
        if self._host_watch is None and self.lease.written_revision:
            # ... and its host record: rewritten under the lease by the loop. Watched from
            # the agent's own registration on, so no change after it is missed.
            self._host_watch = self.store.watch_prefix(
                self.lease.key,
                self.lease.written_revision + 1,
                on_events=self._on_host_events,
                on_reset=self._on_host_reset,
                on_error=self._on_watch_error,
            )

    def _on_status_events(self, events: list[WatchEvent]) -> None:
        if self.reconciler.on_status_events(events):
            self.wake()

    def _on_status_reset(self, snapshot: Snapshot) -> None:
        self.reconciler.on_status_reset()
        self.wake()

    def _on_host_events(self, events: list[WatchEvent]) -> None:
        if self.lease.on_host_events(events):
            self.loop.wake()  # the loop rewrites the record; no pass needed

    def _on_host_reset(self, snapshot: Snapshot) -> None:
        self.lease.request_rewrite()
        self.loop.wake()

    def _on_watch_error(self, error: Exception) -> None:
        self.metrics.watch_restarts.inc()
        self.log.info("watch_interrupted", error=str(error), action="resuming from the last revision")
        self.wake(full=True)

    def _on_new_lease(self, lease_id: int) -> None:
        self.reconciler.forget_written_status()
        self.wake(full=True)

    def _shutdown(self) -> None:
        self.log.info("agent_stopping", action="revoking lease; TF Serving keeps serving")
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for watch in (self._watch, self._status_watch, self._host_watch):
            if watch is not None:
                watch.cancel()
        self.lease.revoke()
        self.ops.stop()
        self.store.close()
        self.tfs.close()
        self._stopped.set()

    # -- records and probes ----------------------------------------------------------------
    def _host_record(self) -> bytes:
        s = self.settings
        host = s.advertised_host
        record = HostRecord(
            host=s.host,
            grpc_address=f"{host}:{s.tfs_grpc.rpartition(':')[2]}",
            rest_address=f"{host}:{s.tfs_rest.rpartition(':')[2]}",
            memory_mb=s.memory_mb,
            labels=s.labels,
            agent_version=__version__,
            started_at=self._started_at,
            metrics_address=f"{host}:{self.ops.port}",
            tfs_unresponsive_since=self.reconciler.unresponsive_since,
        )
        return schema.encode(record)

    def _healthy(self) -> tuple[bool, str]:
        # The loop wakes at least every resync_interval; a reload may hold it for reload_timeout.
        limit = 2 * self.settings.resync_interval + self.settings.reload_timeout + 10
        idle = self._clock() - self.loop.beat
        if idle > limit:
            return False, f"reconcile loop has not run for {idle:.0f} s"
        return True, "ok"

    def _ready(self) -> tuple[bool, str]:
        if not self.lease.registered_recently():
            if self.lease.lease_id is None:
                return False, "not registered in etcd (no lease)"
            return False, "lease not confirmed: no renewal reached etcd within the lease TTL"
        if self.reconciler.unresponsive_since is not None:
            return False, self.reconciler.unresponsive_reason
        if self.reconciler.completed == 0:
            return False, "first reconcile not completed"
        return True, "ok"
