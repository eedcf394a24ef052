"""Campaign and renewal: win the leader key on a new lease, keep the lease alive, give it up.

Why these timings (ElectionTiming, term.py): renew every TTL/3, so that one renewal may fail
and the next still lands before the lease ends; the local deadline is counted from a clock
reading taken *before* the refresh was sent, so etcd cannot expire the lease before it.
A campaign whose transaction got no answer keeps its lease (the "spare"): the next campaign
adopts the key if it is on it, revokes the lease otherwise. Leases of ended terms are
revoked on the next tick, not on the thread that noticed the end (it must not wait for etcd).
"""

from __future__ import annotations

from tfleet.controller.election.leader_key import record_bytes
from tfleet.controller.election.term import LOST_LEASE, Term
from tfleet.controller.election.watch import LeaderWatch
from tfleet.store import Compare, Delete, LeaseLost, Put, StoreError


class Campaign(LeaderWatch):
    """start / campaign / renew / resign: the lifecycle the owner drives."""

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
