"""The fence: the current term, the local view of it, and the writes it guards.

Every controller write is ONE transaction that also compares the leader key's
create_revision with the term's fence (fenced_txn). The local deadline is only the fast
path: once the leader key has expired or been deleted, no key can ever have that
create_revision again, so every write of a former leader fails inside etcd however late it
arrives. The term changes only in _win, _lose and resign, under the _state lock, never across
a network call, so is_leader never waits for etcd.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tfleet.controller.election.term import LOST_DEADLINE, LOST_FENCE, ElectionTiming, NotLeader, Term
from tfleet.keyspace import Keyspace
from tfleet.logs import Logger
from tfleet.ports import Store, WatchHandle
from tfleet.schema import LeaderRecord
from tfleet.store import Compare, Delete, Put


def _nothing(*_args: object) -> None:
    return None


class FencedLeadership:
    """The Election's state and its fence: who leads locally, and writes only while leading.

    The campaign (campaign.py), leader-key care (leader_key.py) and watch (watch.py) build on
    it; Election assembles them.
    """

    def __init__(
        self,
        store: Store,
        keyspace: Keyspace,
        candidate_id: str,
        ttl: int,
        record_factory: Callable[[], LeaderRecord | bytes],
        log: Logger,
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
        self._watch: WatchHandle | None = None
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
