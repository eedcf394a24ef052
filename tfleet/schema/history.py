"""``history/<model>/<seq>`` and ``historycursor``: the append-only record of intent changes,
and how far the leading controller's recorder got (tfleet/registry, controller/history.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from tfleet.schema.base import DaemonRecord
from tfleet.schema.fields import NonNegativeInt, PositiveInt

# What a history entry records, and who wrote the change (the CLI, or etcdctl seen by the recorder).
HistoryAction = Literal["create", "update", "delete", "rollback", "gap"]
HistorySource = Literal["cli", "etcd"]


class RevisionSpan(DaemonRecord):
    """An inclusive range of etcd revisions, e.g. the ones a history gap could not record."""

    first: NonNegativeInt
    last: NonNegativeInt


class HistoryEntry(DaemonRecord):
    """``<prefix>/history/<model>/<seq>``: one change of a model's intent, append-only.

    action "gap" (written by the history recorder when etcd compacted revisions it had not
    read yet): the model's intent may have changed any number of times within ``revisions``
    without an entry; ``new`` is its value as of ``revision`` (null: it had none).
    """

    sequence: NonNegativeInt
    model: str
    action: HistoryAction
    # None: written in the same transaction as the change, so the entry key's mod_revision is
    # the change's revision (Registry.history fills it in); otherwise the recorded revision.
    revision: NonNegativeInt | None
    at: dt.datetime
    author: str | None = None
    source: HistorySource = "etcd"
    previous: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    # Only on gap entries: the revisions whose changes could not be recorded one by one.
    revisions: RevisionSpan | None = None
    # Why an entry says less than usual, e.g. "the stored value is not a JSON object".
    note: str | None = None


class HistoryGap(DaemonRecord):
    """The last gap of the history recorder, kept in its cursor for etcdctl readers."""

    revisions: RevisionSpan
    at: dt.datetime
    models: NonNegativeInt  # how many models got a gap entry


class HistoryCursor(DaemonRecord):
    """``<prefix>/historycursor``: how far the leading controller's history recorder got.

    Every put and delete of ``models/`` with a revision <= ``revision`` has its history
    entry (or is covered by a gap entry). ``keep`` is the retention the recorder applies
    (the newest N entries per model); the CLI reads it to prune in its own writes.
    """

    revision: NonNegativeInt
    updated_at: dt.datetime
    keep: PositiveInt | None = None
    last_gap: HistoryGap | None = None
