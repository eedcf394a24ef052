"""Leader election among controllers, with every leader write fenced in etcd.

Several controllers run; one leads. The leader holds ``<prefix>/leader`` (a LeaderRecord
bound to its etcd lease) and renews the lease every TTL/3; standbys watch the key and
campaign as soon as it is deleted (lease expiry, resignation), and every TTL/3 as a safety
net.

Why fencing. client-go's leader election (k8s.io/client-go/tools/leaderelection) decides
leadership from timestamps observed locally; its package documentation states that it "does
not guarantee that only one client is acting as a leader (a.k.a. fencing)". A leader that is
paused (GC, SIGSTOP, a VM migration) or partitioned right after checking "am I still
leader?" wakes up believing it still leads and writes, while a new leader already acts.
Here the local timer is only the fast path. The real
guard is etcd itself: a campaign creates the leader key, and the revision that created it
(its create_revision, unique for ever, since revisions only grow) is this term's *fence*.
Every controller write is ONE transaction that also compares the leader key's
create_revision with the fence. Once the key has expired or been deleted, no key can ever
have that create_revision again, so every write of the former leader fails inside etcd,
however late it arrives.

Why these timings (ElectionTiming):

* renew every TTL/3: one renewal may fail and the next still lands before the lease ends.
* local deadline = (clock reading taken *before* the last successful refresh was sent)
  + TTL - margin. etcd restarts the lease's countdown when it receives the refresh, which
  is after that reading, so etcd cannot expire the lease (and nobody else can be elected)
  before the local deadline + margin. After an etcd restart or leader change etcd extends
  lease TTLs, never shortens them.
* margin = TTL/5 by default (2 s for the default 10 s). Safety does not depend on it (the
  fence does that), so it only has to make the common case clean: the former leader stops
  acting, and stops *claiming* leadership on its dashboard, logs and metrics, before a
  successor can exist, even across a scheduling or GC hiccup of up to the margin, plus
  clock-rate differences (parts per million). It must stay below TTL/3 so that a leader
  survives one failed renewal: renewals at TTL/3 and 2*TTL/3 both come before TTL - margin.

Threads. renew() is called by the owner's scheduler; the watch calls back on its own
thread; fenced_txn() and is_leader are called from the controller's loops. One lock
(_ops) serializes the calls that talk to etcd about leadership (campaign, renew, resign);
another (_state) guards the current term only briefly, never across a network call, so
is_leader never waits for etcd. on_elected / on_lost run on whichever thread made the
change and must be quick (set a flag, wake a loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tfleet.keyspace import Keyspace
from tfleet.schema import LeaderRecord, encode, parse
from tfleet.store import (
    Compare,
    Delete,
    EtcdStore,
    LeaseLost,
    PrefixWatch,
    Put,
    Snapshot,
    StoreError,
    WatchEvent,
)

DEFAULT_TTL = 10
MIN_TTL = 3  # etcd rounds shorter TTLs up (to ~2 s); below 3 s one slow call ends a term

# Why a term ended (Election.last_lost_reason, and logged); stable strings, fit for a metric label.
LOST_DEADLINE = "deadline"  # no successful renewal for TTL - margin
LOST_LEASE = "lease_lost"  # etcd said the lease is gone (expired or revoked)
LOST_FENCE = "fence_failed"  # a fenced transaction found the leader key gone or re-created
LOST_KEY = "leader_key_gone"  # the watch or a check saw the leader key deleted or re-created


class NotLeader(Exception):
    """This controller does not lead (any more): stop acting, write nothing.

    reason is one of the LOST_* strings when the leadership ended during the call (e.g. the
    fence failed in etcd), or "standby" when it was not held to begin with.
    """

    def __init__(self, message: str, reason: str = "standby") -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------------------
# Pure parts: timing and the local view of one term


@dataclass(frozen=True)
class ElectionTiming:
    """The election's clock settings, validated against each other at start-up.

    call_timeout (the etcd call deadline), when given, must be shorter than the renew
    interval, so a hanging renewal ends before the next one is due.
    """

    ttl: int = DEFAULT_TTL
    margin: float | None = None
    call_timeout: float | None = None

    def __post_init__(self) -> None:
        ttl = self.ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < MIN_TTL:
            raise ValueError(f"leader lease TTL must be a whole number of seconds >= {MIN_TTL}, not {ttl!r}")
        margin = ttl / 5 if self.margin is None else self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin < ttl / 3:
            raise ValueError(
                f"leadership margin {margin!r} s must be above 0 and below TTL/3 ({ttl / 3:g} s): "
                "a larger margin gives up leadership after a single failed renewal"
            )
        object.__setattr__(self, "margin", float(margin))
        if self.call_timeout is not None and self.call_timeout >= self.renew_interval:
            raise ValueError(
                f"the etcd call timeout ({self.call_timeout:g} s) must be shorter than the leader renew interval (TTL {ttl} s / 3 = {self.renew_interval:g} s)"
            )

    @property
    def renew_interval(self) -> float:
        """How often the owner calls renew() (leader: refresh; standby: campaign)."""
        return self.ttl / 3

    @property
    def renew_jitter(self) -> float:
        """Jitter for the owner's scheduler, so that controllers do not renew in lockstep."""
        return self.renew_interval / 10

    def deadline(self, sent_at: float, granted_ttl: float | None = None) -> float:
        """Until when leadership is held locally after a refresh (or grant) sent at sent_at.

        granted_ttl is what etcd reported; a smaller one than configured is believed, a
        larger one (etcd rounds short TTLs up) is not relied upon.
        """
        ttl = self.ttl if granted_ttl is None else min(float(self.ttl), float(granted_ttl))
        assert self.margin is not None
        return sent_at + ttl - self.margin


class Term:
    """One tenure as leader: the fence, the lease, and the local deadline.

    The deadline only moves forward: a late answer to an older refresh cannot shorten it.
    """

    __slots__ = ("fence", "lease_id", "deadline")

    def __init__(self, fence: int, lease_id: int, deadline: float) -> None:
        self.fence = fence
        self.lease_id = lease_id
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"Term(fence={self.fence}, lease={self.lease_id:x}, deadline={self.deadline:.3f})"

    def held(self, now: float) -> bool:
        return now < self.deadline

    def extend(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)


def record_bytes(record: LeaderRecord | bytes) -> bytes:
    """What the leader key stores for a record_factory result."""
    if isinstance(record, bytes):
        return record
    if isinstance(record, LeaderRecord):
        return encode(record)
    raise TypeError(f"record_factory must return a LeaderRecord or bytes, not {type(record).__name__}")


# ---------------------------------------------------------------------------------------
# The election


def _nothing(*_args: object) -> None:
    return None


class Election:
    """Campaign for, hold, renew and give up ``<prefix>/leader``; fence every leader write.

    Lifecycle: start() (watch the key, campaign once), then renew() every
    timing.renew_interval with timing.renew_jitter from the owner's scheduler, write with
    fenced_txn(), and resign() at shutdown. renew(), start() and resign() never raise.
    """

    def __init__(
        self,
        store: EtcdStore,
        keyspace: Keyspace,
        candidate_id: str,
        ttl: int,
        record_factory: Callable[[], LeaderRecord | bytes],
        log,  # structlog bound logger
        clock: Callable[[], float] = time.monotonic,
        on_elected: Callable[[], None] = _nothing,
        on_lost: Callable[[], None] = _nothing,
        *,
        margin: float | None = None,
    ) -> None:
        """on_elected() and on_lost() fire once per term (on_lost not on resign()); they take
        no arguments: fence_revision and last_lost_reason say the rest."""
        if not candidate_id:
            raise ValueError("candidate id must not be empty")
        settings = getattr(store, "settings", None)
        self.timing = ElectionTiming(ttl, margin, getattr(settings, "call_timeout", None))
        self.candidate_id = candidate_id
        self.key = keyspace.leader()
        self._store = store
        self._record_factory = record_factory
        self._log = log.bind(candidate=candidate_id, key=self.key)
        self._clock = clock
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._ops = threading.Lock()  # campaign / renew / resign, across network calls
        self._state = threading.Lock()  # _term, _closed, _stale: brief, never across a call
        self._term: Term | None = None
        self._closed = False
        self._watch_wanted = False
        self._watch: PrefixWatch | None = None
        # A lease of a campaign whose transaction had no answer: it may hold the key.
        self._spare_lease: int | None = None
        # Leases of ended terms, revoked on the next renew() so that their key goes at once.
        self._stale: list[int] = []
        self.elections_won = 0
        self.leadership_lost = 0
        self.renew_failures = 0
        self.last_lost_reason: str | None = None  # one of the LOST_* strings
        # What this controller wrote into the leader key when it won (rewritten if changed).
        self._record: bytes | None = None
        # A leader key bound to no lease (put by hand): (mod_revision, first seen). Nobody
        # could ever lead again once its writer is gone, so a standby deletes it after a TTL.
        self._orphan: tuple[int, float] | None = None
        self.leader_key_repairs = 0

    def __repr__(self) -> str:
        return f"Election({self.candidate_id!r}, {self.key!r}, term={self._term!r})"

    # -- the local view ---------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this controller leads; checks the local deadline on every call.

        The call that finds the deadline passed ends the term, so on_lost may fire inside it.
        """
        return self._current() is not None

    @property
    def fence_revision(self) -> int | None:
        term = self._current()
        return None if term is None else term.fence

    @property
    def lease_id(self) -> int | None:
        term = self._current()
        return None if term is None else term.lease_id

    def fence(self) -> list[Compare]:
        """The guard every leader write carries: the leader key is still the one we created."""
        return self._fence_of(self._require_term())

    def _fence_of(self, term: Term) -> list[Compare]:
        return [Compare(self.key, "create", "==", term.fence)]

    def _current(self) -> Term | None:
        """The current term, ending it first when its local deadline has passed."""
        with self._state:
            term = self._term
            if term is None or term.held(self._clock()):
                return term
        self._lose(term, LOST_DEADLINE)
        return None

    def _require_term(self) -> Term:
        term = self._current()
        if term is None:
            raise NotLeader(f"controller {self.candidate_id!r} does not lead ({self.key})")
        return term

    # -- writes -----------------------------------------------------------------------

    def fenced_txn(self, ops: Sequence[Put | Delete], extra_compares: Sequence[Compare] = ()) -> bool:
        """Apply ops in one etcd transaction, only while this controller leads.

        Returns True when applied, False when an extra compare failed while the fence held
        (the caller's own precondition: re-read and decide again). Raises NotLeader when
        not leading, and when the fence failed in etcd: leadership then ends at once
        (on_lost fires) and nothing was written. StoreError (e.g. a timeout: the write may
        or may not have happened) propagates and leaves leadership to the deadline.
        """
        term = self._require_term()
        result = self._store.txn([*self._fence_of(term), *extra_compares], list(ops))
        if result.succeeded:
            return True
        if extra_compares:
            # etcd does not say which compare failed. A fence that fails never holds again
            # (no key can get this create_revision again), so reading the key afterwards
            # tells which one it was.
            current = self._store.get(self.key)
            if current is not None and current.create_revision == term.fence:
                return False
        self._lose(term, LOST_FENCE)
        raise NotLeader(
            f"controller {self.candidate_id!r} lost leadership: {self.key} no longer has "
            f"create_revision {term.fence}; the transaction (revision {result.revision}) wrote nothing",
            LOST_FENCE,
        )

    @property
    def orphaned_leader_key(self) -> tuple[int, str] | None:
        """(mod_revision, why) while a standby sees a leader key that no lease keeps."""
        orphan = self._orphan
        if orphan is None:
            return None
        return orphan[0], (
            f"{self.key} is bound to no lease (written by hand?): no controller can lead while it is there; "
            f"a standby deletes it {self.timing.ttl} s after it first saw it, unless a leader rewrites it"
        )

    # -- who leads --------------------------------------------------------------------

    def leader(self) -> LeaderRecord | None:
        """The record of the current leader, None when nobody leads.

        Raises StoreError when etcd cannot be read, SchemaError for a value that is not a
        LeaderRecord (written by hand).
        """
        kv = self._store.get(self.key)
        return None if kv is None else parse(LeaderRecord, kv.value, self.key)

    # -- campaign and renewal ---------------------------------------------------------

    def start(self) -> None:
        """Watch the leader key (campaign when it goes) and campaign once. Never raises:
        when etcd is down, renew() starts the watch later."""
        try:
            with self._ops:
                self._watch_wanted = True
                self._ensure_watch()
                self._campaign()
        except Exception:
            self._log.exception("election_start_error")

    def campaign(self) -> bool:
        """Try to become leader now; True when leading afterwards. Never raises StoreError."""
        with self._ops:
            return self._campaign()

    def renew(self) -> None:
        """The periodic tick: a leader refreshes its lease, a standby campaigns. Never raises."""
        try:
            with self._ops:
                if self._closed:
                    return
                released = self._revoke_stale()
                if self._watch_wanted:
                    self._ensure_watch()
                term = self._current()
                if term is not None:
                    self._refresh(term)
                elif not released:
                    # After releasing the key of a term that just ended, sit out one tick:
                    # the standbys' watches fire now, and a controller that just failed to
                    # renew in time should not win its own key straight back.
                    self._campaign()
        except Exception:  # never let a bug stop the owner's scheduler
            self._log.exception("election_renew_error")

    def _refresh(self, term: Term) -> None:
        sent_at = self._clock()
        try:
            granted = self._store.refresh_lease(term.lease_id)
        except LeaseLost as exc:
            self._lose(term, LOST_LEASE, detail=str(exc), revoke=False)
            return
        except StoreError as exc:
            self.renew_failures += 1
            self._log.info("leader_renew_failed", fence=term.fence, error=str(exc))
            self._current()  # ends the term if the deadline passed meanwhile
            return
        with self._state:
            if self._term is term:
                term.extend(self.timing.deadline(sent_at, granted))
        # The lease is alive, but is the key still ours? Someone may have deleted it by
        # hand (etcdctl del) and a standby won since; then our writes fail on the fence
        # anyway, but a check here ends the double claim within one renew interval.
        self._verify(term)

    def _verify(self, term: Term) -> None:
        try:
            kv = self._store.get(self.key)
        except StoreError:
            return  # the refresh worked; the next tick checks again
        if kv is None or kv.create_revision != term.fence:
            self._lose(term, LOST_KEY, detail="the leader key was deleted or re-created")
        elif kv.lease != term.lease_id or (self._record is not None and kv.value != self._record):
            self._repair(term, kv)

    def _repair(self, term: Term, kv) -> None:
        """Someone overwrote our key (etcdctl put without --lease detaches it from the lease:
        it would outlive us and nobody could lead after us). Write it back under our lease,
        fenced on our create_revision and on the value we saw."""
        record = self._record if self._record is not None else record_bytes(self._record_factory())
        try:
            result = self._store.txn([*self._fence_of(term), Compare(self.key, "mod", "==", kv.mod_revision)], [Put(self.key, record, term.lease_id)])
        except StoreError as exc:
            self._log.info("leader_key_repair_failed", error=str(exc), retry="next renew")
            return
        if result.succeeded:
            self._record = record
            self.leader_key_repairs += 1
            self._log.warning(
                "leader_key_repaired",
                fence=term.fence,
                found_lease=f"{kv.lease:x}",
                detail="the leader key was overwritten; rewritten under the leader's lease",
            )

    def _campaign(self) -> bool:
        """One attempt (under _ops): create the key if it does not exist, on a new lease."""
        if self._closed:
            return False
        if self._current() is not None:
            return True
        try:
            kv = self._store.get(self.key)
            if kv is not None:
                if self._spare_lease is not None and kv.lease == self._spare_lease:
                    return self._adopt(kv.create_revision)
                if kv.lease != 0 or not self._remove_orphan(kv):
                    return False  # somebody leads
            else:
                self._orphan = None
            if self._spare_lease is not None:
                self._retire(self._spare_lease)
                self._spare_lease = None
            record = record_bytes(self._record_factory())
            self._record = record
            sent_at = self._clock()
            lease_id = self._store.grant_lease(self.timing.ttl)
        except StoreError as exc:
            self._log.info("campaign_failed", error=str(exc))
            return False
        try:
            result = self._store.txn([Compare(self.key, "create", "==", 0)], [Put(self.key, record, lease_id)])
        except StoreError as exc:
            # No answer: the key may or may not be ours. Keep the lease; the next campaign
            # finds the key on it (and adopts it) or not (and revokes it).
            self._spare_lease = lease_id
            self._log.info("campaign_unanswered", lease=f"{lease_id:x}", error=str(exc))
            return False
        if not result.succeeded:
            self._retire(lease_id)
            self._revoke_stale()
            return False
        # The transaction created the key, so its revision is the key's create_revision.
        return self._win(Term(result.revision, lease_id, self.timing.deadline(sent_at)))

    def _remove_orphan(self, kv) -> bool:
        """A leader key with no lease: wait one TTL (a live leader rewrites it under its lease
        within a renew interval), then delete it if it is still the same; True when gone."""
        now = self._clock()
        if self._orphan is None or self._orphan[0] != kv.mod_revision:
            self._orphan = (kv.mod_revision, now)
            self._log.warning("leader_key_orphaned", mod_revision=kv.mod_revision, action=f"deleting it in {self.timing.ttl} s unless a leader rewrites it")
            return False
        if now - self._orphan[1] < self.timing.ttl:
            return False
        result = self._store.txn([Compare(self.key, "mod", "==", kv.mod_revision)], [Delete(self.key)])
        if not result.succeeded:
            return False  # changed meanwhile: look again next tick
        self._orphan = None
        self._log.warning("leader_key_deleted", mod_revision=kv.mod_revision, reason="bound to no lease", action="campaigning")
        return True

    def _adopt(self, fence: int) -> bool:
        """Take up the term of an earlier campaign that won without our hearing of it."""
        assert self._spare_lease is not None
        lease_id, self._spare_lease = self._spare_lease, None
        sent_at = self._clock()
        try:
            granted = self._store.refresh_lease(lease_id)
        except LeaseLost:
            return False  # expired: the key goes with it
        except StoreError as exc:
            self._spare_lease = lease_id
            self._log.info("campaign_failed", error=str(exc))
            return False
        return self._win(Term(fence, lease_id, self.timing.deadline(sent_at, granted)))

    # -- transitions ------------------------------------------------------------------

    def _win(self, term: Term) -> bool:
        with self._state:
            if self._closed:
                self._stale.append(term.lease_id)
                return False
            self._term = term
            self.elections_won += 1
        self._log.info("elected", fence=term.fence, lease=f"{term.lease_id:x}", ttl=self.timing.ttl)
        self._fire(self._on_elected)
        return True

    def _lose(self, term: Term, reason: str, detail: str = "", revoke: bool = True) -> bool:
        """End term (if it is still current); on_lost fires once per term.

        The term's lease is revoked on the next renew() (revoke=True), not here: this runs
        inside is_leader and on the controller's threads, which must not wait for etcd.
        """
        with self._state:
            if self._term is not term:
                return False
            self._term = None
            if revoke:
                self._stale.append(term.lease_id)
            self.leadership_lost += 1
            self.last_lost_reason = reason
        self._log.warning("leadership_lost", reason=reason, fence=term.fence, detail=detail or None)
        self._fire(self._on_lost)
        return True

    def _fire(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            self._log.exception("election_callback_failed", callback=getattr(callback, "__name__", repr(callback)))

    def _retire(self, lease_id: int) -> None:
        with self._state:
            self._stale.append(lease_id)

    def _revoke_stale(self) -> int:
        """Revoke leases of ended terms and lost campaigns: their key (if any) goes now,
        instead of after the TTL, so that a successor is elected at once. Returns how many."""
        with self._state:
            stale, self._stale = self._stale, []
        for index, lease_id in enumerate(stale):
            try:
                self._store.revoke_lease(lease_id)
            except StoreError as exc:
                self._log.info("lease_revoke_failed", lease=f"{lease_id:x}", error=str(exc))
                with self._state:
                    self._stale[:0] = stale[index:]  # again on the next tick
                return index
        return len(stale)

    # -- the watch --------------------------------------------------------------------

    def _ensure_watch(self) -> None:
        if self._watch is not None or self._closed:
            return
        try:
            snapshot = self._store.list_prefix(self.key)
            watch = self._store.watch_prefix(self.key, snapshot.revision + 1, self._on_events, self._on_reset)
        except StoreError as exc:
            self._log.info("leader_watch_failed", error=str(exc), retry="next renew")
            return
        with self._state:
            if self._closed:
                cancel = True
            else:
                self._watch, cancel = watch, False
        if cancel:
            watch.cancel()

    def _on_events(self, events: list[WatchEvent]) -> None:
        # The watch covers a prefix: "<prefix>/leader" is also a prefix of "<prefix>/leaderX".
        mine = [event for event in events if event.key == self.key]
        if not mine or self._closed:
            return
        term = self._current()
        if term is not None:
            # Events at or before the fence belong to earlier incarnations of the key.
            later = [event for event in mine if event.mod_revision > term.fence]
            if any(event.kind == "delete" for event in later):
                self._lose(term, LOST_KEY, detail="the watch saw the leader key deleted")
            elif later:
                with self._ops:  # overwritten by hand? re-created? ask etcd
                    self._verify(term)
        if mine[-1].kind == "delete":
            self.campaign()

    def _on_reset(self, snapshot: Snapshot) -> None:
        if self._closed:
            return
        kv = snapshot.get(self.key)
        term = self._current()
        if term is not None and (kv is None or kv.create_revision != term.fence):
            self._lose(term, LOST_KEY, detail="the leader key was deleted or re-created")
        if kv is None:
            self.campaign()

    # -- shutdown ---------------------------------------------------------------------

    def resign(self) -> None:
        """Give up leadership (if held) and stop campaigning, for a clean shutdown.

        Leadership ends locally first (is_leader is False before anything is sent), then
        the leader key is deleted with a fenced transaction (it can only delete our own
        key) and the lease revoked, so a standby's watch sees the delete and takes over at
        once. on_lost does not fire. Never raises: if etcd is unreachable, the key expires
        with the lease.
        """
        with self._state:
            self._closed = True
            ended = [self._term] if self._term is not None else []
            self._term = None
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        with self._ops:  # no campaign runs after this point: they check _closed under _ops
            with self._state:
                if self._term is not None:
                    ended.append(self._term)
                    self._term = None
                leases = [t.lease_id for t in ended] + self._stale
                self._stale = []
            if self._spare_lease is not None:
                leases.append(self._spare_lease)
                self._spare_lease = None
            for term in ended:
                try:
                    self._store.txn(self._fence_of(term), [Delete(self.key)])
                except StoreError as exc:
                    self._log.warning("resign_delete_failed", fence=term.fence, error=str(exc))
            for lease_id in leases:
                try:
                    self._store.revoke_lease(lease_id)
                except StoreError as exc:
                    self._log.warning("lease_revoke_failed", lease=f"{lease_id:x}", error=str(exc), note="the leader key expires with the TTL")
            for term in ended:
                self._log.info("resigned", fence=term.fence)
