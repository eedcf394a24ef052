"""Keeping the leader key usable: what it holds, and repairing it after hand edits.

An operator can break the key with etcdctl: ``put`` without ``--lease`` detaches it from the
leader's lease (it would outlive the leader, and nobody could lead after it), ``del`` lets
a standby win while the old leader still claims. The leader checks the key after every
refresh (_verify) and writes it back under its lease (_repair); a standby deletes a key
bound to no lease after one TTL (_remove_orphan), since no controller could ever lead
while it is there.
"""

from __future__ import annotations

from tfleet.controller.election.fencing import FencedLeadership
from tfleet.controller.election.term import LOST_KEY, Term
from tfleet.schema import LeaderRecord, encode, parse
from tfleet.store import Compare, Delete, KeyValue, Put, StoreError


def record_bytes(record: LeaderRecord | bytes) -> bytes:
    """What the leader key stores for a record_factory result."""
    if isinstance(record, bytes):
        return record
    if isinstance(record, LeaderRecord):
        return encode(record)
    raise TypeError(f"record_factory must return a LeaderRecord or bytes, not {type(record).__name__}")


class LeaderKeyCare(FencedLeadership):
    """Who leads (leader()), and the checks and repairs of the leader key."""

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

    def _verify(self, term: Term) -> None:
        try:
            kv = self._store.get(self.key)
        except StoreError:
            return  # the refresh worked; the next tick checks again
        if kv is None or kv.create_revision != term.fence:
            self._lose(term, LOST_KEY, detail="the leader key was deleted or re-created")
        elif kv.lease != term.lease_id or (self._record is not None and kv.value != self._record):
            self._repair(term, kv)

    def _repair(self, term: Term, kv: KeyValue) -> None:
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

    def _remove_orphan(self, kv: KeyValue) -> bool:
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
