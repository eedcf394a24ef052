"""The watch of the leader key: a standby campaigns as soon as the key goes (lease expiry,
resignation), and a leader notices at once when it is deleted or re-created by hand.
renew() is the safety net (every TTL/3) when the watch is down or misses something."""

from __future__ import annotations

from tfleet.controller.election.leader_key import LeaderKeyCare
from tfleet.controller.election.term import LOST_KEY
from tfleet.store import Snapshot, StoreError, WatchEvent


class LeaderWatch(LeaderKeyCare):
    """Watch callbacks of the Election (they run on the watch's thread)."""

    def campaign(self) -> bool:
        """Try to become leader now: Campaign.campaign (campaign.py), which the Election uses."""
        raise NotImplementedError

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
