"""The fleet's problems key: every value in etcd that no reader can use, where etcdctl finds it.

A value that fails validation is never acted upon, but it must not vanish either: an
operator who wrote ``etcdctl put /tfleet/hostctl/h1 '{"cordoned": "yes"}'`` has to be able
to find out that the host is *not* cordoned and why. Models have their own place for that
(modelstatus.error); the other sections (hostctl, schedules, versions, hosts, status, the
leader key, keys with invalid names) had none. The leading controller writes
``<prefix>/problems``: a bounded list (first MAX_LISTED problems by key) with the total and a
count per section, and exports the counts as ``tfleet_controller_problems{section}``.

``compute`` is pure (from the snapshot's ``bad_values``); ``ProblemsPublisher`` writes the
result only when it changed, fenced by leadership like every controller write. The work per
pass is proportional to the number of bad values, not to the fleet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from tfleet import schema
from tfleet.controller.election import NotLeader
from tfleet.controller.metrics import ControllerMetrics
from tfleet.keyspace import Keyspace
from tfleet.logs import Logger
from tfleet.ports import Fence, Store
from tfleet.schema import FleetProblem, FleetProblems, SchemaError
from tfleet.store import Compare, Put, StoreError

MAX_LISTED = 200


def compute(bad_values: Mapping[str, str], keyspace: Keyspace, previous: FleetProblems | None, now: dt.datetime) -> FleetProblems:
    """The problems document for these bad values (key -> error).

    ``since`` is kept from ``previous`` for a key whose error did not change, so the document
    changes only when a problem appears, changes or goes.
    """
    known = {p.key: p for p in previous.problems} if previous is not None else {}
    by_section: dict[str, int] = {}
    for key in bad_values:
        section = keyspace.section_of(key) or "other"
        by_section[section] = by_section.get(section, 0) + 1
    listed = []
    for key in sorted(bad_values)[:MAX_LISTED]:
        error = bad_values[key]
        earlier = known.get(key)
        since = earlier.since if earlier is not None and earlier.error == error else now
        listed.append(FleetProblem(key=schema.safe_text(key), section=keyspace.section_of(key) or "other", error=error, since=since))
    return FleetProblems(total=len(bad_values), by_section=dict(sorted(by_section.items())), problems=listed, updated_at=now)


def same(a: FleetProblems | None, b: FleetProblems | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.model_dump(exclude={"updated_at"}) == b.model_dump(exclude={"updated_at"})


class ProblemsPublisher:
    """Keeps ``<prefix>/problems`` equal to ``compute`` of the latest snapshot."""

    def __init__(
        self, *, store: Store, keyspace: Keyspace, election: Fence, metrics: ControllerMetrics, log: Logger, now: Callable[[], dt.datetime] = schema.utc_now
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._election = election
        self._metrics = metrics
        self._log = log
        self._now = now
        self._fence: int | None = None
        self._written: FleetProblems | None = None
        self._revision: int | None = None
        self._posted_without_leader: FleetProblems | None = None

    def publish(self, bad_values: Mapping[str, str], revision: int) -> bool:
        """Leader only: write the document if it changed; True when written."""
        fence = self._election.fence_revision
        if fence is None:
            self._fence = None
            return False
        if fence != self._fence:  # a new term: start from what etcd holds
            self._fence, self._written, self._revision = fence, self._stored(), None
        if revision == self._revision:
            return False  # nothing changed in etcd since the last pass
        document = compute(bad_values, self._ks, self._written, self._now())
        self._gauges(document)
        if same(document, self._written):
            self._revision = revision
            return False
        try:
            self._election.fenced_txn([Put(self._ks.problems(), schema.encode(document))])
        except (NotLeader, StoreError) as exc:  # the next pass tries again (or a successor does)
            self._log.info("fleet_problems_not_written", error=str(exc))
            return False
        self._metrics.writes.labels("problems", "put").inc()
        if document.total != (self._written.total if self._written else 0):
            self._log.warning(
                "fleet_problems",
                total=document.total,
                by_section=document.by_section,
                first=[p.key for p in document.problems[:5]],
                action=f"etcdctl get {self._ks.problems()}",
            )
        self._written, self._revision = document, revision
        return True

    def publish_without_leader(self, key_problem: str, leader_mod_revision: int) -> bool:
        """A standby that finds the leader key unusable (nobody can lead) says so in the
        problems key, guarded by that key being unchanged (no leader can have written since)."""
        document = compute({self._ks.leader(): key_problem}, self._ks, self._posted_without_leader, self._now())
        if same(document, self._posted_without_leader):
            return False
        try:
            result = self._store.txn([Compare(self._ks.leader(), "mod", "==", leader_mod_revision)], [Put(self._ks.problems(), schema.encode(document))])
        except StoreError:
            return False
        if result.succeeded:
            self._posted_without_leader = document
        return result.succeeded

    def clear_gauges(self) -> None:
        self._metrics.problems.clear()

    def _gauges(self, document: FleetProblems) -> None:
        self._metrics.problems.clear()
        for section, count in document.by_section.items():
            self._metrics.problems.labels(section).set(count)

    def _stored(self) -> FleetProblems | None:
        try:
            kv = self._store.get(self._ks.problems())
        except StoreError:
            return None
        if kv is None:
            return None
        try:
            return schema.parse(FleetProblems, kv.value, kv.key)
        except SchemaError:
            return None
