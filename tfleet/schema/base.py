"""The two kinds of document in etcd, as base classes, and the clock of their timestamps.

* written by people (assignments, intents, host controls, schedules): unknown fields are
  *rejected*, because a typo such as ``"model_version_polcy"`` silently ignored would serve
  the wrong thing;
* written by tfleet daemons (host records, status, history, routes): unknown fields are
  *ignored*, so that an older reader keeps working while a newer writer adds fields.

Both are frozen: a parsed document is a value, shared by caches and passes without copying.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class OperatorDocument(BaseModel):
    """A document written by people: unknown fields are rejected (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonRecord(BaseModel):
    """A record written by a tfleet daemon: unknown fields are ignored (newer writers add fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def utc_now() -> dt.datetime:
    """Now, timezone-aware in UTC: what every timestamp in a document is written from."""
    return dt.datetime.now(dt.timezone.utc)
