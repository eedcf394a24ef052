"""The agent's status keys (``status/<host>/<model>``): writing them, and owning them.

The agent owns its status keys: a change or delete of one by anybody else (seen through the
watch of ``status/<host>/``, ``on_events``) makes the next write put it back (under the
lease) or delete a key it never wrote. Apart from the reconcile pass (agent/reconciler.py),
because the watch thread and the pass both touch what was written, under one lock.

Status keys are written only when their content changes, in transactions of at most
STATUS_WRITE_BATCH operations, bound to the host's lease.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping

from tfleet import schema
from tfleet.agent.metrics import AgentMetrics
from tfleet.agent.planner import ModelReport
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.logs import Logger
from tfleet.schema import ModelStatus, VersionReport
from tfleet.ports import KeyWriter
from tfleet.store import Delete, Put, StoreError, WatchEvent
from tfleet.tfs.types import UNAVAILABLE, VersionState, VersionStatus

STATUS_WRITE_BATCH = 64  # well under etcd's default limit of 128 operations per transaction


class StatusKeys:
    """What this agent last wrote per status key, the revision of that write, and the keys
    somebody else created: a watch event for a key at another revision is somebody else's."""

    def __init__(
        self,
        *,
        store: KeyWriter,
        keyspace: Keyspace,
        host: str,
        lease_id: Callable[[], int | None],
        metrics: AgentMetrics,
        log: Logger,
        now: Callable[[], dt.datetime] = schema.utc_now,
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._host = host
        self._lease_id = lease_id
        self._metrics = metrics
        self._log = log
        self._now = now
        self._lock = threading.Lock()
        self._written: dict[str, ModelReport] = {}
        self._written_rev: dict[str, int] = {}
        self._written_lease: int | None = None
        self._strays: set[str] = set()  # status keys somebody else created: deleted by the next write

    def forget(self) -> None:
        """Write every status again (a new lease carries none of the old keys)."""
        with self._lock:
            self._written.clear()
            self._written_rev.clear()

    def on_events(self, events: list[WatchEvent]) -> bool:
        """Events under status/<host>/ (the store's watch thread). True when one of them is
        somebody else's change, so a pass must write the key again.

        An event at (or before) the revision of this agent's last write of the key is its own;
        a later put, and a later delete of a key it means to have, is foreign: the key is
        forgotten as written, so the next pass puts it back (under the lease) or deletes a
        key it never wrote.
        """
        foreign: list[str] = []
        with self._lock:
            for event in events:
                try:
                    name = self._ks.name_after(event.key, self._ks.status_prefix(self._host))
                except InvalidName:
                    continue
                mine = self._written_rev.get(name)
                if mine is not None and event.mod_revision <= mine:
                    # this agent's own write, or one its later write already replaced
                    if event.kind == "delete" and event.mod_revision == mine and name not in self._written:
                        del self._written_rev[name]  # its own delete, seen: nothing left to track
                    continue
                if name not in self._written:
                    if event.kind == "delete":
                        continue  # a key this agent does not want anyway
                    self._strays.add(name)  # created by somebody else: the next pass deletes it
                self._written.pop(name, None)
                foreign.append(name)
        if foreign:
            self._metrics.foreign_key_writes.labels("status").inc(len(foreign))
            self._log.warning("status_key_changed_by_another_writer", models=sorted(foreign)[:10], count=len(foreign), action="writing it again")
        return bool(foreign)

    def publish(self, reports: Mapping[str, ModelReport]) -> int | None:
        """Write changed status keys; the number of keys written, or None when etcd failed.

        A key is written when its content differs from what this agent last wrote, or when
        somebody else changed it meanwhile (on_events forgot it as written); a status key
        somebody else created for a model this host does not report is deleted.
        """
        lease = self._lease_id()
        if lease is None:
            return 0  # not registered yet: status keys need the lease; written after it
        with self._lock:
            if lease != self._written_lease:
                self._written.clear()
                self._written_rev.clear()
                self._written_lease = lease
            changes: list[tuple[str, ModelReport | None]] = [(name, report) for name, report in reports.items() if report != self._written.get(name)]
            changes += [(name, None) for name in self._written if name not in reports]
            changes += [(name, None) for name in self._strays if name not in reports and name not in self._written]
            self._strays.clear()
        now = self._now()
        for start in range(0, len(changes), STATUS_WRITE_BATCH):
            batch = changes[start : start + STATUS_WRITE_BATCH]
            ops = [
                Put(self._ks.status(self._host, name), schema.encode(status_document(doc, now)), lease) if doc else Delete(self._ks.status(self._host, name))
                for name, doc in batch
            ]
            with self._lock:  # the watch sees this write only once its revision is known
                try:
                    result = self._store.txn([], ops)
                except StoreError as exc:
                    self._log.warning("status_write_failed", error=str(exc), pending=len(changes) - start)
                    return None
                for name, doc in batch:
                    self._metrics.status_writes.labels("put" if doc else "delete").inc()
                    self._written_rev[name] = result.revision
                    if doc is None:
                        self._written.pop(name, None)
                    else:
                        self._written[name] = doc
        return len(changes)


def status_document(report: ModelReport, now: dt.datetime) -> ModelStatus:
    return ModelStatus(
        assignment_revision=report.assignment_revision,
        versions={
            str(version): VersionReport(state=status.state, error_code=status.error_code, error_message=status.error_message)
            for version, status in report.versions.items()
        },
        version_labels=dict(report.version_labels),
        error=report.error,
        updated_at=now,
    )


def not_serving(report: ModelReport, reason: str) -> ModelReport:
    """A report while TF Serving does not answer: no version is claimed AVAILABLE (or in any
    other state TF Serving did not just say); each one is UNKNOWN with the reason."""
    versions = {version: VersionStatus(version, VersionState.UNKNOWN, UNAVAILABLE, reason) for version in report.versions}
    return ModelReport(report.assignment_revision, versions, report.version_labels, reason, settled=False)
