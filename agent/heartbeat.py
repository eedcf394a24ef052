"""The host's heartbeat: ``<prefix>/hosts/<host>`` on an etcd lease, renewed every TTL/3.

Everything the agent writes about itself (host record, status keys) is bound to this lease,
so a dead host disappears by itself within the TTL. pyetcd has no background keepalive, so
renewal is driven from outside (an APScheduler job with jitter) through ``renew()``.

Only etcd decides that the lease is gone: when a renewal or a write says so (LeaseLost), the
same call grants a new lease, registers again and tells the owner, which rewrites every
status key on the new lease. Renewals that fail for a whole TTL do NOT give the lease up:
etcd may well still honour it, because a new etcd leader extends every lease by the TTL
plus an election timeout when it takes over (lessor.Promote), so a lease outlives a frozen
or killed etcd leader even when no renewal got through for longer than the TTL. Granting a
new lease then would rewrite every status key of the host for nothing. The agent only
reports it (``lease_unconfirmed``, /readyz) and goes on renewing the same lease until etcd
answers either way.

The agent owns the host key: a put or delete of it by anybody else (``on_host_events``, fed by
a watch of the key; an event after this agent's own last write is somebody else's) makes the
record be written again under the lease (``rewrite``, run from the agent's loop). So an
``etcdctl put /tfleet/hosts/h1 '{}'`` or a delete heals within moments instead of leaving an
empty, unleased record that would outlive the agent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from tfleet.agent.metrics import AgentMetrics
from tfleet.store import LeaseLost, StoreError, WatchEvent
from tfleet.ports import Store


class HostLease:
    def __init__(
        self,
        store: Store,
        host_key: str,
        *,
        record: Callable[[], bytes],
        ttl: int,
        metrics: AgentMetrics,
        log: FilteringBoundLogger,
        on_new_lease: Callable[[int], None] = lambda lease_id: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key = host_key
        self._record = record
        self._ttl = ttl
        self._metrics = metrics
        self._log = log
        self._on_new_lease = on_new_lease
        self._clock = clock
        self._lock = threading.Lock()
        self._lease_id: int | None = None
        self._last_renewed = 0.0
        self._unconfirmed_reported = False  # lease_unconfirmed logged since the last renewal
        self._written_rev = 0  # revision of this agent's last write of the host key
        self._rewrite_due = False

    @property
    def key(self) -> str:
        return self._key

    @property
    def lease_id(self) -> int | None:
        """The current lease, or None while the host is not registered."""
        return self._lease_id

    def registered_recently(self) -> bool:
        """True while the lease is confirmed: granted or renewed within the TTL. False while
        renewals fail for longer (the lease is kept and renewed, but unconfirmed)."""
        return self._lease_id is not None and self._clock() - self._last_renewed < self._ttl

    def renew(self) -> None:
        """Register if needed, otherwise renew; never raises (failures are counted and logged)."""
        with self._lock:
            try:
                if self._lease_id is None:
                    self._register()
                    return
                self._store.refresh_lease(self._lease_id)
                self._renewed()
                if self._rewrite_due:
                    self._put()
            except LeaseLost:
                self._register_again()
            except StoreError as exc:
                self._metrics.lease_renew_failures.inc()
                if self._lease_id is not None and not self._unconfirmed_reported and self._clock() - self._last_renewed >= self._ttl:
                    # Not "lost": a new etcd leader extends the lease (see the module docstring).
                    self._unconfirmed_reported = True
                    self._log.warning(
                        "lease_unconfirmed",
                        lease=self._lease_id,
                        error=str(exc),
                        action="renewing the same lease until etcd answers; a new one only if etcd says it is gone",
                    )
                else:
                    self._log.info("lease_renew_failed", lease=self._lease_id, error=str(exc))

    def _renewed(self) -> None:
        if self._unconfirmed_reported:
            self._log.info("lease_confirmed", lease=self._lease_id, unconfirmed_s=round(self._clock() - self._last_renewed, 1))
        self._last_renewed = self._clock()
        self._unconfirmed_reported = False

    def _register_again(self) -> None:
        """etcd says the lease is gone (expired or revoked): register on a new one now, so that
        the owner rewrites every status key on it (a failure is retried at the next renewal)."""
        self._log.warning("lease_lost", lease=self._lease_id, action="registering again")
        self._lease_id = None
        try:
            self._register()
        except StoreError as exc:
            self._metrics.lease_renew_failures.inc()
            self._log.info("register_failed", error=str(exc))

    def _register(self) -> None:
        lease_id = self._store.grant_lease(self._ttl)
        self._lease_id = lease_id
        try:
            self._put()
        except StoreError:
            self._lease_id = None
            raise
        self._last_renewed = self._clock()
        self._unconfirmed_reported = False
        self._metrics.lease_grants.inc()
        self._log.info("registered", key=self._key, lease=lease_id, ttl=self._ttl)
        self._on_new_lease(lease_id)

    def _put(self) -> None:
        assert self._lease_id is not None
        self._rewrite_due = True  # until the put is known to have landed
        self._written_rev = self._store.put(self._key, self._record(), lease=self._lease_id)
        self._rewrite_due = False

    def rewrite(self) -> None:
        """Write the host record again under the current lease (its content changed, or
        somebody else changed or deleted the key); never raises. A failure is retried at
        the next renewal."""
        with self._lock:
            if self._lease_id is None:
                return  # registering writes it anyway
            try:
                self._put()
            except LeaseLost:
                self._register_again()
            except StoreError as exc:
                self._log.info("host_record_write_failed", error=str(exc), action="retrying at the next renewal")

    def on_host_events(self, events: list[WatchEvent]) -> bool:
        """Events of the host key's watch (store's thread). True when somebody else changed
        or deleted the key after this agent's last write: the caller must rewrite() it."""
        with self._lock:
            if self._lease_id is None:
                return False
            foreign = [e for e in events if e.key == self._key and e.mod_revision > self._written_rev]
            if not foreign:
                return False
            self._rewrite_due = True
        self._metrics.foreign_key_writes.labels("host").inc()
        self._log.warning(
            "host_key_changed_by_another_writer",
            key=self._key,
            change=foreign[-1].kind,
            revision=foreign[-1].mod_revision,
            action="writing it again under the lease",
        )
        return True

    @property
    def written_revision(self) -> int:
        """Revision of this agent's last write of the host key (0: none yet)."""
        return self._written_rev

    def verify(self) -> None:
        """The safety net of the watch (one key read, on full passes): rewrite the record if
        the key is not the agent's last write under its lease. Never raises."""
        lease = self._lease_id
        if lease is None:
            return
        try:
            kv = self._store.get(self._key)
        except StoreError:
            return  # the renewal reports etcd trouble
        if kv is None or kv.lease != lease or kv.mod_revision != self._written_rev:
            with self._lock:
                if self._lease_id != lease:
                    return
                self._rewrite_due = True
            self._metrics.foreign_key_writes.labels("host").inc()
            self._log.warning("host_key_changed_by_another_writer", key=self._key, change="found on a full pass", action="writing it again under the lease")

    def request_rewrite(self) -> None:
        """The host key's watch lost its history: write the record again to be sure."""
        self._rewrite_due = True

    @property
    def rewrite_due(self) -> bool:
        return self._rewrite_due

    def revoke(self) -> None:
        """Drop the lease: the host record and every status key vanish at once."""
        with self._lock:
            if self._lease_id is None:
                return
            try:
                self._store.revoke_lease(self._lease_id)
                self._log.info("lease_revoked", lease=self._lease_id)
            except StoreError as exc:
                self._log.warning("lease_revoke_failed", lease=self._lease_id, error=str(exc), note="keys expire with the TTL")
            self._lease_id = None
