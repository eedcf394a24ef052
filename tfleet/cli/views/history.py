"""`tfleet history`: one line per recorded change of an intent, and who made it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfleet.cli.views.text import json_text
from tfleet.jsondiff import diff_values
from tfleet.schema import HistoryEntry


def changes_text(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, limit: int | None = None) -> str:
    changes = diff_values(old, new)
    parts = [f"{c.path}: {json_text(c.old)} -> {json_text(c.new)}" for c in changes]
    if limit is not None and len(parts) > limit:
        parts = parts[:limit] + [f"(+{len(changes) - limit} more)"]
    return "; ".join(parts)


def history_summary(entry: HistoryEntry) -> str:
    if entry.action == "gap":
        span = f"revisions {entry.revisions.first}..{entry.revisions.last}" if entry.revisions else "some revisions"
        now = (
            "no intent now" if entry.new is None else (changes_text(entry.previous, entry.new, limit=3) or "no change") if entry.previous else "intent as found"
        )
        return f"gap: {span} not recorded (etcd compacted them); {now}"
    if entry.note:
        return entry.note
    if entry.action == "delete":
        return "intent deleted"
    if entry.previous is None:
        return "intent created" if entry.action == "create" else "intent restored"
    return changes_text(entry.previous, entry.new, limit=3) or "no change"


def who(entry: HistoryEntry) -> str:
    if entry.author:
        return f"{entry.author} via {entry.source}"
    return "etcdctl" if entry.source == "etcd" else "unnamed"
