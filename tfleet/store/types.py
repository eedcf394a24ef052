"""Plain values the rest of tfleet speaks with the store, and the errors it raises.

No etcd client type crosses the store's boundary: callers see these frozen values and
catch only StoreError and its subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def _check_key(key: object, what: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string, not {key!r}")


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd stores it; lease is 0 when the key has none."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of a prefix: every item as of the same revision.

    Decisions are made from one snapshot (not from several reads taken at different
    times), so that a loop cycle never mixes two states of the cluster.
    """

    revision: int
    items: tuple[KeyValue, ...]
    _by_key: dict[str, KeyValue] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(sorted(self.items, key=lambda kv: kv.key))
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "_by_key", {kv.key: kv for kv in items})

    def get(self, key: str) -> KeyValue | None:
        return self._by_key.get(key)

    def keys(self) -> tuple[str, ...]:
        return tuple(kv.key for kv in self.items)


@dataclass(frozen=True)
class Page:
    """One bounded page of a prefix read; revision is the revision every page is read at.

    more is true when keys follow last_key (pass it as start_after for the next page).
    """

    revision: int
    items: tuple[KeyValue, ...]
    more: bool

    @property
    def last_key(self) -> str | None:
        return self.items[-1].key if self.items else None


@dataclass(frozen=True)
class WatchEvent:
    """A change under a watched prefix; value is b"" for deletes."""

    kind: Literal["put", "delete"]
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None

    def __post_init__(self) -> None:
        _check_key(self.key, "Put.key")
        if not isinstance(self.value, bytes):
            raise TypeError(f"Put.value for {self.key!r} must be bytes, not {type(self.value).__name__}")
        if self.lease is not None and (isinstance(self.lease, bool) or not isinstance(self.lease, int)):
            raise TypeError(f"Put.lease for {self.key!r} must be a lease id (int) or None, not {self.lease!r}")


@dataclass(frozen=True)
class Delete:
    """Delete one key, or every key starting with `key` when prefix is true, or every key in
    [key, end) when end is given (a bounded range: e.g. the oldest history entries)."""

    key: str
    prefix: bool = False
    end: str | None = None

    def __post_init__(self) -> None:
        _check_key(self.key, "Delete.key")
        if self.end is not None:
            _check_key(self.end, "Delete.end")
            if self.prefix:
                raise ValueError(f"Delete of {self.key!r}: give prefix or end, not both")


_COMPARE_TARGETS = ("mod", "create", "version", "value")
_COMPARE_OPS = ("==", "!=", "<", ">")


@dataclass(frozen=True)
class Compare:
    """A transaction guard, e.g. Compare(key, "mod", "==", 42) or Compare(key, "version", "==", 0).

    "mod"/"create"/"version" compare revisions or the version count (ints); "value"
    compares the stored bytes. A missing key has create == mod == version == 0.
    """

    key: str
    target: Literal["mod", "create", "version", "value"]
    op: Literal["==", "!=", "<", ">"]
    value: int | bytes

    def __post_init__(self) -> None:
        _check_key(self.key, "Compare.key")
        if self.target not in _COMPARE_TARGETS:
            raise ValueError(f"Compare.target must be one of {_COMPARE_TARGETS}, not {self.target!r}")
        if self.op not in _COMPARE_OPS:
            raise ValueError(f"Compare.op must be one of {_COMPARE_OPS}, not {self.op!r}")
        wants_bytes = self.target == "value"
        if wants_bytes and not isinstance(self.value, bytes):
            raise TypeError(f"Compare on the value of {self.key!r} needs bytes, not {self.value!r}")
        if not wants_bytes and (isinstance(self.value, bool) or not isinstance(self.value, int)):
            raise TypeError(f"Compare on {self.target} of {self.key!r} needs an int, not {self.value!r}")


@dataclass(frozen=True)
class TxnResult:
    """Whether the compares held, and the store revision after the transaction."""

    succeeded: bool
    revision: int


# ---------------------------------------------------------------------------------------
# Errors


class StoreError(Exception):
    """A store operation failed; the message names the operation, key and endpoints."""


class StoreUnavailable(StoreError):
    """etcd could not be reached in time: retrying later may succeed."""


class LeaseLost(StoreError):
    """The lease expired or was revoked; keys attached to it are gone."""


class ValueTooLarge(StoreError):
    """A write was larger than etcd accepts (--max-request-bytes); it was not applied."""


class QuotaExceeded(StoreError):
    """etcd is out of space (its NOSPACE alarm is raised): it refuses writes until cleaned up."""


class RevisionCompacted(StoreError):
    """A read pinned to a revision that etcd has compacted away: read again at a new one."""
