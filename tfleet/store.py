"""The etcd adapter: the only module of tfleet that imports the etcd client (pyetcd).

Everything above this module speaks in plain values (KeyValue, Snapshot, Page, WatchEvent,
Put, Delete, Compare) and catches only StoreError and its subclasses, so that the etcd
client can be replaced or patched here alone.

API (EtcdStore)
---------------
* get(key) -> KeyValue | None
* list_prefix(prefix, revision=None) -> Snapshot: every key of the prefix at ONE revision,
  read in bounded pages (never one huge response). With revision=R several prefixes can be
  read at the same revision (raises RevisionCompacted when R is gone); without it a
  compaction in the middle of the read starts it over at a new revision.
* iter_pages(prefix, page_size=None, revision=None, keys_only=False, start_after=None)
  -> Iterator[Page]: the same read one bounded page at a time, all pages at the first
  page's revision (for callers that fold pages instead of holding all of them).
* list_page(prefix, start_after=None, limit=100, revision=None) -> Page: one page, e.g.
  for a CLI listing 100,000 models a screen at a time (next call: start_after=page.last_key).
* last_key(prefix) -> KeyValue | None: the greatest key of a prefix (one key in the
  response; etcd itself still scans the prefix in memory, so use it on pruned prefixes).
* count_prefix(prefix, revision=None) -> int: how many keys, without reading them.
* put / delete / delete_prefix / txn; grant_lease / refresh_lease / revoke_lease;
  compact; watch_prefix -> PrefixWatch.

Limits: no response exceeds a few MiB (pages shrink until they fit), no request exceeds
EtcdSettings.max_request_bytes (refused before sending with ValueTooLarge naming the keys);
etcd's "database space exceeded" alarm is QuotaExceeded, with what to do.

Members and failover
--------------------
pyetcd's own multi-endpoint client does not fail over on a deadline (a frozen member keeps
getting every call), refuses a "failed" endpoint for 300 s, and caches its stubs on the
endpoint it used first. So this module keeps one single-endpoint pyetcd client per member
and picks the member itself (_MemberPicker): calls go to the first listed member until it
fails (deadline, unavailable, "no leader"), then to the next; a failed member is skipped for
a few seconds, and tried again only when every other one failed too. Every call carries
etcd's "hasleader" metadata, so a member cut off from the quorum refuses at once (and
cancels its watch streams) instead of answering stale or hanging: a partitioned member is
failed over like a frozen one.

Retries, within one budget of EtcdSettings.call_timeout per call, each attempt bounded by
EtcdSettings.attempt_timeout (half the budget when there are several members):
* idempotent calls (reads, lease grant/refresh/revoke, compaction) retry at once on the
  next member;
* writes (put, delete, txn) retry only when the request certainly never reached etcd
  (connection refused, member without leader). A write that timed out may still apply
  (even later, e.g. when a frozen member is resumed): it raises StoreUnavailable and the
  next call goes to another member. Conditional txns are the caller's to retry after
  re-reading; that is why callers write with compare-and-swap.

The unary calls go through etcd's gRPC stubs (pyetcd.etcdrpc) with explicit deadlines and
options pyetcd lacks (pagination, pinned revisions, sort, count). pyetcd still builds the
channels, logs in, and runs watch streams.

Other traps of pyetcd and gRPC, measured against a real etcd 3.5:

* gRPC channels back off exponentially (up to 120 s) between reconnection attempts, so
  after a long outage a client could stay unusable long after etcd returned (measured:
  12 s after a 30 s outage). We cap the reconnect backoff at 2 s.
* pyetcd never logs in again when a password token expires (or etcd restarts and forgets
  its tokens): on an "invalid auth token" error we rebuild that member's client, which
  logs in, once, and retry the call.
* A pyetcd watch dies on any connection error, and pyetcd's Watcher.close() only
  half-closes the request stream (etcd keeps sending events: measured). PrefixWatch gives
  each stream its own client, so restart() and cancel() end it by closing its channel,
  and resumes from the last delivered revision + 1, on a healthy member. When a unary call
  finds a member failed, the watch streams on that member are closed too, so they move.
* A watch on a connection that went silent (partition, frozen etcd) never errors by
  itself; watch channels send HTTP/2 keepalive pings so that it fails within ~15 s.
  pyetcd also drops server-side cancellations other than compaction without telling the
  callback, which is why owners get restart() for a watch that looks stuck.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import grpc
import pyetcd
import pyetcd.exceptions as etcd_exc
import pyetcd.utils
from pyetcd import etcdrpc
from pyetcd import events as etcd_events

_log = logging.getLogger(__name__)

T = TypeVar("T")

_DEFAULT_PORT = 2379
_MIB = 1024 * 1024
# etcd's --max-request-bytes default; requests above it are refused by etcd.
DEFAULT_MAX_REQUEST_BYTES = 3 * _MIB // 2
# etcd wraps a request in an InternalRaftRequest (a header of a few dozen bytes) before it
# compares the size with --max-request-bytes; leave that much room.
_RAFT_WRAPPER_BYTES = 64
# A member that failed is skipped for this long, unless every other member failed too.
# Long enough that a frozen member does not cost an attempt deadline on every call.
_MEMBER_QUARANTINE_SECONDS = 5.0
# Safety net only: pages are sized to stay far below it (gRPC's default is 4 MiB).
_MAX_RECEIVE_BYTES = 16 * _MIB
# Pagination: at most this many keys per page, and pages sized to about this many bytes
# once the average size of a key-value is known.
DEFAULT_PAGE_SIZE = 1000
_PAGE_TARGET_BYTES = 2 * _MIB
# The first page of a read is this small, as nothing is known yet about value sizes: even
# at etcd's largest values (1.5 MiB) it stays under the receive limit; later pages grow.
_FIRST_PAGE_SIZE = 10
# list_prefix starts over at a new revision at most this often when compaction overtakes it.
_LIST_RESTARTS = 3
# etcd's metadata asking a member to refuse (and end streams) while it has no leader.
_REQUIRE_LEADER = ("hasleader", "true")
# gRPC reconnect backoff: the default grows to 120 s, which outlives most etcd outages.
_RECONNECT_BACKOFF_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
# Seconds between HTTP/2 pings on a watch channel, so that a watch on a silently dead
# connection (partition, frozen etcd) fails after keepalive + ping timeout (~15 s) instead
# of hanging forever. etcd answers pings more frequent than --grpc-keepalive-min-time
# (default 5 s) with GOAWAY, hence 10 s.
DEFAULT_WATCH_KEEPALIVE = 10.0
_MAX_PING_TIMEOUT = 5.0
_MAX_DETAIL_CHARS = 300


# ---------------------------------------------------------------------------------------
# Values


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


_QUOTA_ADVICE = (
    "etcd reached its space quota (--quota-backend-bytes) and raised the NOSPACE alarm; it "
    "refuses writes until an operator compacts old revisions (etcdctl compact), defragments "
    "every member (etcdctl defrag --cluster), disarms the alarm (etcdctl alarm disarm), or "
    "raises --quota-backend-bytes"
)


# ---------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd. Validated on construction, so a bad flag fails at startup.

    TLS client certificates (ca_cert, cert, key) are the primary way to authenticate;
    user/password is supported over https only, because the token would otherwise cross
    the network in clear (and gRPC refuses call credentials on plaintext channels).
    """

    endpoints: tuple[str, ...]
    call_timeout: float = 2.0
    # Deadline of one attempt on one member; None: the whole call_timeout with one member,
    # half of it with several (so that a frozen member leaves time for another one).
    attempt_timeout: float | None = None
    # etcd's --max-request-bytes: larger writes are refused before they are sent.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", _normalize_endpoints(self.endpoints))
        _check_timeout(self.call_timeout)
        if self.attempt_timeout is None:
            default = self.call_timeout if len(self.endpoints) == 1 else self.call_timeout / 2
            object.__setattr__(self, "attempt_timeout", default)
        _check_timeout(self.attempt_timeout, "attempt_timeout")
        if self.attempt_timeout > self.call_timeout:  # type: ignore[operator]
            raise ValueError(
                f"attempt_timeout ({self.attempt_timeout:g} s) must not exceed call_timeout "
                f"({self.call_timeout:g} s): one attempt cannot outlast the whole call"
            )
        size = self.max_request_bytes
        if isinstance(size, bool) or not isinstance(size, int) or not (1024 <= size <= 2**31 - 1):
            raise ValueError(
                f"max_request_bytes must be a whole number of bytes in 1024..2147483647 "
                f"(etcd's --max-request-bytes, default {DEFAULT_MAX_REQUEST_BYTES}), not {size!r}"
            )
        self._check_tls()
        self._check_password()

    @classmethod
    def parse_endpoints(cls, text: str) -> tuple[str, ...]:
        """Parse "URL[,URL...]" (as given on a command line) into normalized URLs."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("no etcd endpoint given; expected 'http://HOST:PORT[,http://HOST:PORT...]'")
        return _normalize_endpoints(tuple(part.strip() for part in text.split(",")))

    @property
    def secure(self) -> bool:
        return self.endpoints[0].startswith("https://")

    def _check_tls(self) -> None:
        for name in ("ca_cert", "cert", "key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty file path, not {value!r}")
        if (self.cert is None) != (self.key is None):
            raise ValueError("client certificate needs both cert and key (got only one)")
        if not self.secure and (self.ca_cert or self.cert):
            raise ValueError(
                "TLS files (ca_cert/cert/key) given but the endpoints use http://; "
                "write them as https://HOST:PORT"
            )

    def _check_password(self) -> None:
        if (self.user is None) != (self.password is None):
            raise ValueError("password authentication needs both user and password (got only one)")
        if self.user is None:
            return
        if not self.user or not self.password:
            raise ValueError("user and password must not be empty")
        if not self.secure:
            raise ValueError(
                "password authentication requires https:// endpoints (the token would "
                "travel in clear); use TLS, preferably with client certificates"
            )


def _check_timeout(value: object, name: str = "call_timeout") -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")


def _normalize_endpoints(endpoints: object) -> tuple[str, ...]:
    if isinstance(endpoints, str):
        raise ValueError(
            "endpoints must be a tuple of URLs, not a string; "
            "use EtcdSettings.parse_endpoints('URL[,URL...]')"
        )
    if not isinstance(endpoints, Iterable):
        raise ValueError(f"endpoints must be a tuple of URLs, not {endpoints!r}")
    urls = tuple(_normalize_endpoint(item) for item in endpoints)
    if not urls:
        raise ValueError("at least one etcd endpoint is required")
    duplicates = sorted({url for url in urls if urls.count(url) > 1})
    if duplicates:
        raise ValueError(f"etcd endpoint listed twice: {', '.join(duplicates)}")
    if len({url.split("://")[0] for url in urls}) > 1:
        raise ValueError(f"etcd endpoints mix http:// and https://: {', '.join(urls)}")
    return urls


def _normalize_endpoint(text: object) -> str:
    """ "host:port", "http://host:port" or "https://host:port" -> "scheme://host:port"."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty etcd endpoint ({text!r}); expected e.g. http://127.0.0.1:2379")
    raw = text.strip()
    url = raw if "://" in raw else f"http://{raw}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"etcd endpoint {raw!r}: scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"etcd endpoint {raw!r}: expected only scheme://host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"etcd endpoint {raw!r}: port must be a number in 1-65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"etcd endpoint {raw!r}: no host")
    if port == 0:
        raise ValueError(f"etcd endpoint {raw!r}: port must be a number in 1-65535")
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}:{port or _DEFAULT_PORT}"


def _check_key(key: object, what: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what} must be a non-empty string, not {key!r}")


# ---------------------------------------------------------------------------------------
# Backoff


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff between watch reconnection attempts.

    Jitter keeps a fleet of agents that lost etcd together from reconnecting in lockstep;
    the cap bounds how long a watch stays down after etcd returns.
    """

    initial: float = 0.2
    cap: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap):
            raise ValueError(f"backoff needs 0 < initial <= cap, got {self.initial}, {self.cap}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt` (1-based): in [base/2, base]."""
        base = min(self.cap, self.initial * 2 ** min(max(attempt, 1) - 1, 32))
        return base / 2 + rng.uniform(0, base / 2)


# ---------------------------------------------------------------------------------------
# Error translation


def _rpc_error_of(exc: BaseException) -> grpc.RpcError | None:
    """The gRPC error behind exc: pyetcd raises its own types from inside `except RpcError`."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, grpc.RpcError) and hasattr(candidate, "code"):
            return candidate
    return None


def _describe(exc: BaseException) -> str:
    rpc = _rpc_error_of(exc)
    if rpc is not None:
        text = f"{rpc.code().name.lower()}: {rpc.details()}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _MAX_DETAIL_CHARS else text[:_MAX_DETAIL_CHARS] + "..."


def _needs_new_token(exc: BaseException) -> bool:
    rpc = _rpc_error_of(exc)
    if rpc is None:
        return False
    details = (rpc.details() or "").lower()
    return (
        rpc.code() == grpc.StatusCode.UNAUTHENTICATED
        or "invalid auth token" in details
        or "auth store is old" in details
    )


def _is_lease_not_found(exc: BaseException) -> bool:
    rpc = _rpc_error_of(exc)
    return rpc is not None and "lease not found" in (rpc.details() or "")


_UNAVAILABLE_TYPES = (
    etcd_exc.ConnectionFailedError,
    etcd_exc.ConnectionTimeoutError,
    etcd_exc.NoServerAvailableError,
    etcd_exc.WatchTimedOut,
    etcd_exc.InternalServerError,
)
_UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
    }
)
# Codes that say "this member cannot serve now": the next call goes to another member.
_MEMBER_FAULT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# What pyetcd and gRPC raise; ValueError is pyetcd's "Trying to use a failed node".
_CLIENT_ERRORS = (etcd_exc.Etcd3Exception, grpc.RpcError, ValueError)


def _details(exc: BaseException) -> str:
    rpc = _rpc_error_of(exc)
    return (rpc.details() or "") if rpc is not None else ""


def _code(exc: BaseException) -> grpc.StatusCode | None:
    rpc = _rpc_error_of(exc)
    return rpc.code() if rpc is not None else None


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return True
    if isinstance(exc, ValueError) and "failed node" in str(exc):
        return True
    details = _details(exc)
    if any(marker in details for marker in _SLOW_MEMBER_DETAILS):
        return True
    return isinstance(exc, grpc.RpcError) and _code(exc) in _UNAVAILABLE_CODES


# etcd's own words for "I could not do it in time" (e.g. a linearizable read during an
# election answers UNKNOWN "context deadline exceeded"): as much a member fault as our deadline.
_SLOW_MEMBER_DETAILS = ("too many requests", "context deadline exceeded", "request timed out", "leader changed")


def _is_transient(exc: BaseException) -> bool:
    """etcd answered but cannot serve for a moment (an election, overload): worth asking again."""
    details = _details(exc)
    return "no leader" in details or any(marker in details for marker in _SLOW_MEMBER_DETAILS)


def _is_member_fault(exc: BaseException) -> bool:
    """The member is frozen, down, partitioned, electing or overloaded: try another one."""
    if isinstance(exc, etcd_exc.WatchTimedOut | etcd_exc.ConnectionFailedError | etcd_exc.ConnectionTimeoutError):
        return True
    details = _details(exc)
    return _code(exc) in _MEMBER_FAULT_CODES or any(marker in details for marker in _SLOW_MEMBER_DETAILS)


def _never_sent(exc: BaseException) -> bool:
    """True when the request certainly did not reach etcd's apply path, so a write may be retried.

    Connection failures (the channel had no connection to send on) and etcd's "no leader"
    refusal (given by its interceptor before the request is handled) qualify; a deadline
    does not: a frozen member may apply the request when it is resumed.
    """
    if _code(exc) != grpc.StatusCode.UNAVAILABLE:
        return False
    details = _details(exc).lower()
    return any(
        marker in details
        for marker in ("failed to connect", "connection refused", "no leader", "connections to all backends failing")
    )


def _is_too_large(exc: BaseException) -> bool:
    details = _details(exc).lower()
    return "request is too large" in details or (
        _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details
    )


def _is_response_too_large(exc: BaseException) -> bool:
    return _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in _details(exc).lower()


def _is_quota_exceeded(exc: BaseException) -> bool:
    return "database space exceeded" in _details(exc)


def _is_compacted(exc: BaseException) -> bool:
    return "required revision has been compacted" in _details(exc)


def _translate(exc: BaseException, what: str, endpoints: str, *, write: bool = False) -> StoreError:
    """One StoreError for any client error, naming the operation, key and endpoints."""
    message = f"etcd {what} failed ({endpoints}): {_describe(exc)}"
    if _is_quota_exceeded(exc):
        return QuotaExceeded(f"{message}; {_QUOTA_ADVICE}")
    if write and _is_too_large(exc):
        return ValueTooLarge(f"{message}; etcd refused the request as too large (--max-request-bytes)")
    if _is_compacted(exc):
        return RevisionCompacted(message)
    if _is_unavailable(exc):
        return StoreUnavailable(message)
    if _is_lease_not_found(exc):
        return LeaseLost(message)
    return StoreError(message)


# ---------------------------------------------------------------------------------------
# Client construction


def _endpoint_host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return (f"[{host}]" if ":" in host else host), int(parts.port or _DEFAULT_PORT)


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise StoreError(f"cannot read etcd {what} {path!r}: {exc.strerror or exc}") from exc


def _channel_credentials(settings: EtcdSettings) -> grpc.ChannelCredentials:
    """TLS credentials, read from disk at each client build so rotated files are picked up."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_cert, "CA certificate"),
        private_key=_read(settings.key, "client key"),
        certificate_chain=_read(settings.cert, "client certificate"),
    )


def _channel_options(keepalive: float | None, max_receive_bytes: int = _MAX_RECEIVE_BYTES) -> list[tuple[str, int]]:
    """gRPC channel options; keepalive (seconds) only for the channels of watch streams.

    grpc 1.85 ends a connection whose ping is not answered only after
    grpc.http2.ping_timeout_ms (default 60 s), whatever grpc.keepalive_timeout_ms says,
    so both are set.
    """
    options = [*_RECONNECT_BACKOFF_OPTIONS, ("grpc.max_receive_message_length", max_receive_bytes)]
    if keepalive is not None:
        ping_timeout_ms = int(min(_MAX_PING_TIMEOUT, keepalive / 2) * 1000)
        options += [
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", ping_timeout_ms),
            ("grpc.http2.ping_timeout_ms", ping_timeout_ms),
        ]
    return options


def _build_client(settings: EtcdSettings, url: str, *, timeout: float, keepalive: float | None = None,
                  max_receive_bytes: int = _MAX_RECEIVE_BYTES) -> Any:
    """A pyetcd client of ONE member; with user/password this logs in (a network call).

    Failover between members is ours (_MemberPicker), so pyetcd never marks this
    endpoint failed for long (time_retry=0) and never switches endpoints by itself.
    """
    secure = settings.secure
    creds = _channel_credentials(settings) if secure else None
    host, port = _endpoint_host_port(url)
    endpoint = pyetcd.Endpoint(host, port, secure=secure, creds=creds, time_retry=0, opts=_channel_options(keepalive, max_receive_bytes))
    try:
        client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=[endpoint], timeout=timeout, user=settings.user, password=settings.password, failover=False
        )
    except BaseException:
        endpoint.close()
        raise
    client.metadata = (*(client.metadata or ()), _REQUIRE_LEADER)
    return client


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # closing is best effort: the channel may already be gone
        _log.debug("closing an etcd client failed", exc_info=True)


class _MemberPicker:
    """Which member the next attempt goes to: pure bookkeeping, clock injected.

    Calls stick to one member (the first listed, at start) while it works. A failure
    moves the preference to the next member that has not failed within the quarantine;
    a failed member is tried again only after the quarantine, or when every other one
    failed too (never refuse a call without trying: that was pyetcd's 300 s trap).
    """

    def __init__(self, count: int, *, quarantine: float = _MEMBER_QUARANTINE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._quarantine = quarantine
        self._clock = clock
        self._failed_at: list[float | None] = [None] * count
        self._preferred = 0
        self._lock = threading.Lock()

    @property
    def preferred(self) -> int:
        return self._preferred

    def _quarantined(self, index: int, now: float) -> bool:
        failed_at = self._failed_at[index]
        return failed_at is not None and now - failed_at < self._quarantine

    def order(self) -> list[int]:
        """Members to try, best first: the preferred, the healthy ones, then the failed ones."""
        with self._lock:
            now = self._clock()
            rotation = [(self._preferred + i) % self._count for i in range(self._count)]
            healthy = [i for i in rotation if not self._quarantined(i, now)]
            failed = sorted((i for i in rotation if self._quarantined(i, now)),
                            key=lambda i: self._failed_at[i] or 0.0)
            return healthy + failed

    def failed(self, index: int) -> None:
        with self._lock:
            now = self._clock()
            self._failed_at[index] = now
            if self._preferred != index:
                return
            for step in range(1, self._count):
                candidate = (index + step) % self._count
                if not self._quarantined(candidate, now):
                    self._preferred = candidate
                    return

    def succeeded(self, index: int) -> None:
        with self._lock:
            self._failed_at[index] = None
            self._preferred = index


# ---------------------------------------------------------------------------------------
# Conversions


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=_key_text(kv.key),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=int(kv.lease),
    )


def _watch_event(event: Any) -> WatchEvent:
    kind: Literal["put", "delete"] = "delete" if isinstance(event, etcd_events.DeleteEvent) else "put"
    return WatchEvent(
        kind=kind,
        key=_key_text(event.key),
        value=b"" if kind == "delete" else bytes(event.value),
        mod_revision=int(event.mod_revision),
    )


_RESULTS = {"==": etcdrpc.Compare.EQUAL, "!=": etcdrpc.Compare.NOT_EQUAL,
            "<": etcdrpc.Compare.LESS, ">": etcdrpc.Compare.GREATER}
_TARGETS = {"mod": (etcdrpc.Compare.MOD, "mod_revision"),
            "create": (etcdrpc.Compare.CREATE, "create_revision"),
            "version": (etcdrpc.Compare.VERSION, "version"),
            "value": (etcdrpc.Compare.VALUE, "value")}


def _compare_message(compare: Compare) -> Any:
    target, field_name = _TARGETS[compare.target]
    return etcdrpc.Compare(
        key=_key_bytes(compare.key),
        result=_RESULTS[compare.op],
        target=target,
        **{field_name: compare.value},
    )


def _op_message(op: Put | Delete) -> Any:
    if isinstance(op, Put):
        put = etcdrpc.PutRequest(key=_key_bytes(op.key), value=op.value, lease=op.lease or 0)
        return etcdrpc.RequestOp(request_put=put)
    if isinstance(op, Delete):
        key = _key_bytes(op.key)
        delete = etcdrpc.DeleteRangeRequest(key=key)
        if op.prefix:
            delete.range_end = pyetcd.utils.prefix_range_end(key)
        elif op.end is not None:
            delete.range_end = _key_bytes(op.end)
        return etcdrpc.RequestOp(request_delete_range=delete)
    raise TypeError(f"transaction operations must be Put or Delete, not {op!r}")


def _txn_subject(compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> str:
    keys = sorted({c.key for c in compares} | {op.key for op in ops})
    shown = ", ".join(repr(k) for k in keys[:4])
    return f"txn on {shown}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


# ---------------------------------------------------------------------------------------
# The store


class _AttemptFailed(Exception):
    """One attempt on one member failed with error (internal to EtcdStore._call)."""

    def __init__(self, error: BaseException, step: str, *, sent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.step = step
        self.sent = sent


class EtcdStore:
    """etcd through one long-lived client per member; safe to share between threads.

    Clients are built on first use, so a daemon can start while etcd is down and a failed
    login does not break the constructor. Every method raises only StoreError subclasses.
    Reads and lease calls retry on another member within the call budget; writes do not
    (see the module docstring), except when the request certainly never reached etcd.
    """

    def __init__(
        self,
        settings: EtcdSettings,
        *,
        watch_backoff: Backoff | None = None,
        watch_keepalive: float = DEFAULT_WATCH_KEEPALIVE,
        rng: random.Random | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_bytes: int = _PAGE_TARGET_BYTES,
        max_receive_bytes: int = _MAX_RECEIVE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """watch_backoff, watch_keepalive (seconds between pings), rng, page_size (keys),
        page_bytes (target bytes of a page), max_receive_bytes (gRPC's limit on one
        response) and clock (for the members' quarantine; call deadlines are real time, as
        gRPC's are) are for tests and tuning."""
        if not (isinstance(watch_keepalive, int | float) and 0 < watch_keepalive < math.inf):
            raise ValueError(f"watch_keepalive must be a positive number of seconds, not {watch_keepalive!r}")
        for name, value in (("page_size", page_size), ("page_bytes", page_bytes),
                            ("max_receive_bytes", max_receive_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}")
        self.settings = settings
        self._watch_keepalive = float(watch_keepalive)
        self._endpoints = ",".join(settings.endpoints)
        self._watch_backoff = watch_backoff or Backoff()
        self._rng = rng or random.Random()
        self._page_size = page_size
        self._page_bytes = page_bytes
        self._max_receive_bytes = max_receive_bytes
        self._attempt_timeout = float(settings.attempt_timeout or settings.call_timeout)
        self._picker = _MemberPicker(len(settings.endpoints), clock=clock)
        self._lock = threading.Lock()
        self._clients: list[Any] = [None] * len(settings.endpoints)
        self._streams: dict[int, set[Callable[[], None]]] = {}
        self._closed = False
        self._watches: list[PrefixWatch] = []

    def __repr__(self) -> str:
        return f"EtcdStore({self._endpoints})"

    @property
    def current_endpoint(self) -> str:
        """The member the next call goes to first (for logs, metrics and tests)."""
        return self.settings.endpoints[self._picker.order()[0]]

    # -- plumbing ---------------------------------------------------------------------

    def _client_for(self, index: int, what: str, timeout: float) -> Any:
        with self._lock:
            if self._closed:
                raise StoreError(f"etcd {what} failed ({self._endpoints}): the store is closed")
            client = self._clients[index]
        if client is not None:
            return client
        client = _build_client(self.settings, self.settings.endpoints[index], timeout=timeout,
                               max_receive_bytes=self._max_receive_bytes)
        with self._lock:
            if self._closed or self._clients[index] is not None:
                spare, client = client, self._clients[index]
                _close_quietly(spare)
                if client is None:
                    raise StoreError(f"etcd {what} failed ({self._endpoints}): the store is closed")
                return client
            self._clients[index] = client
            return client

    def _discard_client(self, index: int, client: Any) -> None:
        """Drop a client whose token went stale; the next call logs in again."""
        with self._lock:
            if self._clients[index] is client:
                self._clients[index] = None
        _close_quietly(client)

    def _member_failed(self, index: int, exc: BaseException) -> None:
        """Send the next calls elsewhere, and move the watch streams of that member too."""
        self._picker.failed(index)
        with self._lock:
            streams = list(self._streams.get(index, ()))
        _log.info("etcd member %s failed (%s); %d watch stream(s) move",
                  self.settings.endpoints[index], _describe(exc), len(streams))
        for close in streams:
            close()

    def _call(self, what: str, action: Callable[[Any, float], T], *, idempotent: bool, write: bool = False) -> T:
        """Run action(client, attempt_deadline) on the best member, failing over as allowed.

        The whole call stays within settings.call_timeout; each attempt within
        settings.attempt_timeout. Idempotent calls move on after any member fault, and go
        round again (skipping members that hit a deadline) while the budget lasts when a
        member said it is electing ("no leader"); other calls move on only when the
        request never reached etcd. Members that refuse connections fail the call at once.
        """
        deadline = time.monotonic() + self.settings.call_timeout
        failures: list[str] = []
        slow: set[int] = set()  # members that hit a deadline during this call
        while True:
            electing = False  # did a member answer "no leader" or the like this round?
            candidates = [i for i in self._picker.order() if i not in slow]
            for index in candidates:
                left = deadline - time.monotonic()
                if failures and left < 0.05:
                    break
                url = self.settings.endpoints[index]
                try:
                    return self._attempt(index, what, action, min(self._attempt_timeout, max(left, 0.05)))
                except _AttemptFailed as failed:
                    exc, step = failed.error, failed.step
                    if not _is_member_fault(exc):
                        raise _translate(exc, step, url, write=write) from exc
                    self._member_failed(index, exc)
                    failures.append(f"{url}: {_describe(exc)}")
                    if _code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED or isinstance(exc, etcd_exc.ConnectionTimeoutError):
                        slow.add(index)
                    electing = electing or _is_transient(exc)
                    if failed.sent and not idempotent and not _never_sent(exc):
                        error = _translate(exc, step, url, write=write)
                        raise type(error)(self._failure_message(step, failures)) from exc
            left = deadline - time.monotonic()
            if not electing or left < 0.15:  # (a write that got here was never sent)
                raise StoreUnavailable(self._failure_message(what, failures))
            time.sleep(0.1)  # the members are electing a leader: ask again shortly

    def _attempt(self, index: int, what: str, action: Callable[[Any, float], T], timeout: float) -> T:
        """One attempt on one member (logging in again once if etcd forgot our token)."""
        for relogin in (False, True):
            client = None
            try:
                client = self._client_for(index, what, timeout)
                result = action(client, timeout)
            except _CLIENT_ERRORS as exc:
                if client is not None and self.settings.user and not relogin and _needs_new_token(exc):
                    _log.info("etcd auth token rejected; logging in again (%s)", what)
                    self._discard_client(index, client)
                    continue
                # A login that did not get through sent nothing: any call may go on.
                raise _AttemptFailed(exc, what if client is not None else f"{what} (login)",
                                     sent=client is not None) from exc
            self._picker.succeeded(index)
            return result
        raise AssertionError("unreachable")

    def _failure_message(self, what: str, failures: list[str]) -> str:
        tried = "the only member" if len(self.settings.endpoints) == 1 else f"{len(failures)} member(s)"
        return f"etcd {what} failed on {tried} ({'; '.join(failures)})"

    @staticmethod
    def _unary(stub: str, method: str, request: Any) -> Callable[[Any, float], Any]:
        def send(client: Any, timeout: float) -> Any:
            return getattr(getattr(client, stub), method)(
                request, timeout, credentials=client.call_credentials, metadata=client.metadata
            )

        return send

    def _check_request_size(self, request: Any, keys: Sequence[str], what: str) -> None:
        size = request.ByteSize() + _RAFT_WRAPPER_BYTES
        limit = self.settings.max_request_bytes
        if size > limit:
            shown = ", ".join(repr(k) for k in keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            raise ValueTooLarge(
                f"etcd {what} refused before sending: the request for {shown} is {size} bytes, "
                f"more than etcd accepts ({limit} bytes, --max-request-bytes); store less per key"
            )

    # -- key/value: reads -------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        _check_key(key, "key")
        request = etcdrpc.RangeRequest(key=_key_bytes(key))
        response = self._call(f"get {key!r}", self._unary("kvstub", "Range", request), idempotent=True)
        return _key_value(response.kvs[0]) if response.kvs else None

    def list_prefix(self, prefix: str, revision: int | None = None) -> Snapshot:
        """Every key under prefix, all at one revision, read in bounded pages.

        revision=None reads at the current revision and starts over (at most a few times)
        when a compaction overtakes the read; revision=R reads at R (to read several
        prefixes at the same revision) and raises RevisionCompacted when R is gone.
        """
        for attempt in range(1, _LIST_RESTARTS + 1):
            items: list[KeyValue] = []
            at = revision
            try:
                for page in self.iter_pages(prefix, revision=revision):
                    items.extend(page.items)
                    at = page.revision
            except RevisionCompacted:
                if revision is not None or attempt == _LIST_RESTARTS:
                    raise
                _log.info("list %r overtaken by a compaction; reading again at a new revision", prefix)
                continue
            assert at is not None
            return Snapshot(at, tuple(items))
        raise AssertionError("unreachable")

    def iter_pages(
        self,
        prefix: str,
        page_size: int | None = None,
        revision: int | None = None,
        keys_only: bool = False,
        start_after: str | None = None,
    ) -> Iterator[Page]:
        """The keys under prefix (after start_after), one bounded page at a time, all at one revision.

        The first page fixes the revision (or revision=R does); it holds a few keys, the
        next ones at most page_size keys and about page_bytes bytes (from the sizes seen
        so far), and a page shrinks further when a response is still too large. Raises
        RevisionCompacted when the revision is compacted away in the middle (the caller
        decides whether to start over). keys_only pages carry empty values.
        """
        _check_key(prefix, "prefix")
        if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int) or revision < 1):
            raise ValueError(f"revision must be a positive int or None, not {revision!r}")
        limit = page_size or self._page_size
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"page_size must be a positive whole number, not {page_size!r}")
        range_end = pyetcd.utils.prefix_range_end(_key_bytes(prefix))
        start = _key_bytes(prefix) if start_after is None else _key_bytes(start_after) + b"\0"
        if start_after is not None and not start_after.startswith(prefix):
            raise ValueError(f"start_after {start_after!r} is not under prefix {prefix!r}")
        at = revision or 0
        cap = limit
        limit = min(limit, _FIRST_PAGE_SIZE)
        while True:
            request = etcdrpc.RangeRequest(
                key=start, range_end=range_end, limit=limit, revision=at, keys_only=keys_only
            )
            what = f"list {prefix!r} from {_key_text(start)!r}" + (f" at revision {at}" if at else "")
            try:
                response = self._call(what, self._unary("kvstub", "Range", request), idempotent=True)
            except StoreError as exc:
                if limit > 1 and _is_response_too_large(exc.__cause__ or exc):
                    limit = max(1, limit // 4)
                    cap = limit
                    continue
                raise
            items = tuple(_key_value(kv) for kv in response.kvs)
            if not at:
                at = int(response.header.revision)
            yield Page(at, items, bool(response.more) and bool(items))
            if not response.more or not items:
                return
            start = _key_bytes(items[-1].key) + b"\0"
            size = sum(len(kv.key) + len(kv.value) for kv in items)
            limit = max(1, min(cap, self._page_bytes * len(items) // max(size, 1)))

    def list_page(
        self, prefix: str, start_after: str | None = None, limit: int = 100, revision: int | None = None
    ) -> Page:
        """One page of up to limit keys under prefix after start_after (e.g. a screen of a listing).

        Fewer keys come back (with more=True) when limit keys would make too large a
        response; pass page.last_key as start_after to go on.
        """
        _check_key(prefix, "prefix")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive whole number, not {limit!r}")
        start = _key_bytes(prefix) if start_after is None else _key_bytes(start_after) + b"\0"
        if start_after is not None and not start_after.startswith(prefix):
            raise ValueError(f"start_after {start_after!r} is not under prefix {prefix!r}")
        range_end = pyetcd.utils.prefix_range_end(_key_bytes(prefix))
        while True:
            request = etcdrpc.RangeRequest(key=start, range_end=range_end, limit=limit, revision=revision or 0)
            try:
                response = self._call(f"list {prefix!r} from {_key_text(start)!r}",
                                      self._unary("kvstub", "Range", request), idempotent=True)
            except StoreError as exc:
                if limit > 1 and _is_response_too_large(exc.__cause__ or exc):
                    limit = max(1, limit // 4)
                    continue
                raise
            items = tuple(_key_value(kv) for kv in response.kvs)
            return Page(revision or int(response.header.revision), items, bool(response.more) and bool(items))

    def list_range(
        self, start: str, end: str, *, limit: int, descending: bool = False, revision: int | None = None
    ) -> Page:
        """At most limit keys of [start, end), in key order or reversed: ONE range request
        (e.g. the newest entries of a model's history). Fewer keys come back (with more=True)
        when limit keys would make too large a response."""
        _check_key(start, "start")
        _check_key(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive whole number, not {limit!r}")
        order = etcdrpc.RangeRequest.DESCEND if descending else etcdrpc.RangeRequest.ASCEND
        while True:
            request = etcdrpc.RangeRequest(key=_key_bytes(start), range_end=_key_bytes(end), limit=limit, revision=revision or 0,
                                           sort_order=order, sort_target=etcdrpc.RangeRequest.KEY)
            try:
                response = self._call(f"range {start!r}..{end!r} limit {limit}", self._unary("kvstub", "Range", request),
                                      idempotent=True)
            except StoreError as exc:
                if limit > 1 and _is_response_too_large(exc.__cause__ or exc):
                    limit = max(1, limit // 4)
                    continue
                raise
            items = tuple(_key_value(kv) for kv in response.kvs)
            return Page(revision or int(response.header.revision), items, bool(response.more) and bool(items))

    def last_key(self, prefix: str) -> KeyValue | None:
        """The greatest key under prefix with its value (None when the prefix is empty).

        The response is one key; etcd still sorts the prefix in memory, so keep such
        prefixes bounded (pruned history, not the whole keyspace).
        """
        _check_key(prefix, "prefix")
        request = etcdrpc.RangeRequest(
            key=_key_bytes(prefix), range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix)), limit=1,
            sort_order=etcdrpc.RangeRequest.DESCEND, sort_target=etcdrpc.RangeRequest.KEY,
        )
        response = self._call(f"last key of {prefix!r}", self._unary("kvstub", "Range", request), idempotent=True)
        return _key_value(response.kvs[0]) if response.kvs else None

    def count_prefix(self, prefix: str, revision: int | None = None) -> int:
        """How many keys are under prefix (at revision, or now), without transferring them."""
        _check_key(prefix, "prefix")
        request = etcdrpc.RangeRequest(
            key=_key_bytes(prefix), range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix)),
            count_only=True, revision=revision or 0,
        )
        response = self._call(f"count {prefix!r}", self._unary("kvstub", "Range", request), idempotent=True)
        return int(response.count)

    # -- key/value: writes ------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Write key; returns the revision of the write."""
        Put(key, value, lease)  # validates
        what = f"put {key!r}" + (f" with lease {lease:x}" if lease else "")
        request = etcdrpc.PutRequest(key=_key_bytes(key), value=value, lease=lease or 0)
        self._check_request_size(request, [key], what)
        response = self._call(what, self._unary("kvstub", "Put", request), idempotent=False, write=True)
        return int(response.header.revision)

    def delete(self, key: str) -> bool:
        """Delete one key; False when it did not exist."""
        _check_key(key, "key")
        request = etcdrpc.DeleteRangeRequest(key=_key_bytes(key))
        response = self._call(f"delete {key!r}", self._unary("kvstub", "DeleteRange", request), idempotent=False)
        return int(response.deleted) > 0

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under prefix; returns how many were deleted."""
        _check_key(prefix, "prefix")
        request = etcdrpc.DeleteRangeRequest(
            key=_key_bytes(prefix), range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix))
        )
        response = self._call(
            f"delete prefix {prefix!r}", self._unary("kvstub", "DeleteRange", request), idempotent=False
        )
        return int(response.deleted)

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        """Atomically: if every compare holds, apply success, else apply failure.

        Not retried after a timeout (it may have applied): re-read and decide again.
        """
        request = etcdrpc.TxnRequest(
            compare=[_compare_message(c) for c in compares],
            success=[_op_message(op) for op in success],
            failure=[_op_message(op) for op in failure],
        )
        what = _txn_subject(compares, [*success, *failure])
        big_first = sorted((op for op in [*success, *failure] if isinstance(op, Put)), key=lambda op: -len(op.value))
        self._check_request_size(request, [op.key for op in big_first] or [c.key for c in compares], what)
        response = self._call(what, self._unary("kvstub", "Txn", request), idempotent=False, write=True)
        return TxnResult(bool(response.succeeded), int(response.header.revision))

    # -- leases -----------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        """A new lease of ttl seconds (etcd rounds very short TTLs up, to ~2 s by default).

        Retried on another member after a timeout: a lease granted by a lost attempt has
        no keys and expires by itself after ttl.
        """
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"lease TTL must be a whole number of seconds >= 1, not {ttl!r}")
        request = etcdrpc.LeaseGrantRequest(TTL=ttl, ID=0)
        response = self._call(f"grant lease ttl={ttl}s", self._unary("leasestub", "LeaseGrant", request),
                              idempotent=True)
        if response.error:
            raise StoreError(f"etcd grant lease ttl={ttl}s failed ({self._endpoints}): {response.error}")
        return int(response.ID)

    def refresh_lease(self, lease_id: int) -> int:
        """Renew the lease once; returns its remaining TTL. Raises LeaseLost when it is gone."""
        what = f"refresh lease {lease_id:x}"
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def keepalive(client: Any, timeout: float) -> Any:
            call = client.leasestub.LeaseKeepAlive(
                iter([request]), timeout, credentials=client.call_credentials, metadata=client.metadata
            )
            try:
                for response in call:
                    return response
                return None
            finally:
                call.cancel()

        response = self._call(what, keepalive, idempotent=True)
        if response is None:
            raise StoreUnavailable(f"etcd {what} failed ({self._endpoints}): no keepalive response")
        ttl = int(response.TTL)
        if ttl <= 0:
            raise LeaseLost(f"etcd {what} failed ({self._endpoints}): the lease expired or was revoked")
        return ttl

    def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys. Idempotent: an unknown lease is not an error."""
        request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(f"revoke lease {lease_id:x}", self._unary("leasestub", "LeaseRevoke", request),
                       idempotent=True)
        except LeaseLost:
            return

    # -- maintenance ------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Drop history before revision. Idempotent: an older compaction is not an error."""
        request = etcdrpc.CompactionRequest(revision=revision, physical=False)
        try:
            self._call(f"compact at revision {revision}", self._unary("kvstub", "Compact", request),
                       idempotent=True)
        except StoreError as exc:
            if "has been compacted" not in str(exc):
                raise

    # -- watches ----------------------------------------------------------------------

    def watch_prefix(
        self,
        prefix: str,
        start_revision: int,
        on_events: Callable[[list[WatchEvent]], None],
        on_reset: Callable[[Snapshot], None],
        on_error: Callable[[Exception], None] | None = None,
        list_prefix: Callable[[str], Snapshot] | None = None,
    ) -> PrefixWatch:
        """Start a supervised watch of prefix from start_revision (usually snapshot.revision + 1).

        list_prefix: what re-reads the prefix after a compaction (default: list_prefix, every
        key under it); the fleet cache passes its paged read of only the sections it keeps.
        """
        _check_key(prefix, "prefix")
        if isinstance(start_revision, bool) or not isinstance(start_revision, int) or start_revision < 1:
            raise ValueError(
                f"start_revision must be >= 1 (use list_prefix(...).revision + 1), not {start_revision!r}"
            )
        watch = PrefixWatch(
            prefix=prefix,
            start_revision=start_revision,
            open_stream=self._open_watch_stream,
            list_prefix=list_prefix or self.list_prefix,
            translate_error=self._translate_watch_error,
            on_events=on_events,
            on_reset=on_reset,
            on_error=on_error,
            backoff=self._watch_backoff,
            rng=self._rng,
            join_timeout=2 * self.settings.call_timeout + 2.0,
        )
        with self._lock:
            if self._closed:
                raise StoreError(f"etcd watch {prefix!r} failed ({self._endpoints}): the store is closed")
            self._watches = [w for w in self._watches if w.alive] + [watch]
        watch._start()
        return watch

    def _open_watch_stream(
        self, prefix: str, start_revision: int, deliver: Callable[[object], None]
    ) -> Callable[[], None]:
        """Open one watch stream, on its own client of the best member; returns its closer.

        A stream error that shows a member fault marks the member failed, so that the
        watch reconnects elsewhere. Raises _Compacted when start_revision was compacted
        away, StoreError otherwise.
        """
        what = f"watch {prefix!r} from revision {start_revision}"
        index = self._picker.order()[0]
        url = self.settings.endpoints[index]
        with self._lock:
            if self._closed:
                raise StoreError(f"etcd {what} failed ({self._endpoints}): the store is closed")
        try:
            client = _build_client(self.settings, url, timeout=self._attempt_timeout, keepalive=self._watch_keepalive,
                                   max_receive_bytes=self._max_receive_bytes)
        except _CLIENT_ERRORS as exc:
            if _is_member_fault(exc):
                self._picker.failed(index)
            raise _translate(exc, f"{what} (login)", url) from exc
        closed = threading.Event()

        def close() -> None:
            closed.set()
            with self._lock:
                self._streams.get(index, set()).discard(close)
            _close_quietly(client)

        def relay(item: object) -> None:
            if isinstance(item, BaseException) and not closed.is_set() and _is_member_fault(item):
                self._picker.failed(index)
            deliver(item)

        try:
            client.add_watch_prefix_callback(_key_bytes(prefix), relay, start_revision=start_revision)
        except etcd_exc.RevisionCompactedError as exc:
            _close_quietly(client)
            raise _Compacted(exc.compacted_revision) from exc
        except _CLIENT_ERRORS as exc:
            _close_quietly(client)
            if _is_member_fault(exc):
                self._picker.failed(index)
            raise _translate(exc, what, url) from exc
        with self._lock:
            self._streams.setdefault(index, set()).add(close)
        return close

    def _translate_watch_error(self, prefix: str, revision: int, exc: object) -> BaseException:
        """What the watch thread raises for an error the client handed to the watch callback."""
        what = f"watch {prefix!r} after revision {revision}"
        if isinstance(exc, etcd_exc.RevisionCompactedError):
            return _Compacted(exc.compacted_revision)
        if exc is None:
            return StoreUnavailable(f"etcd {what} failed ({self._endpoints}): the server ended the stream")
        if isinstance(exc, BaseException):
            return _translate(exc, what, self._endpoints)
        return StoreError(f"etcd {what} failed ({self._endpoints}): unexpected {exc!r}")

    def close(self) -> None:
        """Cancel this store's watches and close the clients; later calls raise StoreError."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, [None] * len(self._clients)
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.cancel()
        for client in clients:
            if client is not None:
                _close_quietly(client)

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# Watches


class _Compacted(Exception):
    """The watch's next revision was compacted away: the owner must re-read the prefix."""

    def __init__(self, compacted_revision: int) -> None:
        super().__init__(f"revision compacted (etcd compacted up to {compacted_revision})")
        self.compacted_revision = compacted_revision


_RESTART = object()
_STOP = object()


class PrefixWatch:
    """A watch of one prefix that survives etcd restarts, partitions and compactions.

    One background thread, named "watch:<prefix>", owns the stream and calls the
    callbacks, one at a time. Responses of the etcd client arrive through a queue tagged
    with the stream's generation, so nothing from a dropped stream is ever delivered.
    After a connection error the watch resumes from the last delivered revision + 1, so no
    event is lost or repeated; when that revision was compacted, on_reset gets a fresh
    snapshot and the watch continues after it.
    """

    def __init__(
        self,
        *,
        prefix: str,
        start_revision: int,
        open_stream: Callable[[str, int, Callable[[object], None]], Callable[[], None]],
        list_prefix: Callable[[str], Snapshot],
        translate_error: Callable[[str, int, object], BaseException],
        on_events: Callable[[list[WatchEvent]], None],
        on_reset: Callable[[Snapshot], None],
        on_error: Callable[[Exception], None] | None,
        backoff: Backoff,
        rng: random.Random,
        join_timeout: float,
    ) -> None:
        self.prefix = prefix
        self.revision = start_revision - 1
        self.restarts = 0
        self._open_stream = open_stream
        self._list_prefix = list_prefix
        self._translate_error = translate_error
        self._on_events = on_events
        self._on_reset = on_reset
        self._on_error = on_error
        self._backoff = backoff
        self._rng = rng
        self._join_timeout = join_timeout
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._generation = 0
        self._opened_once = False
        self._needs_reset = False
        self._close_lock = threading.Lock()
        self._close_stream: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch:{prefix}", daemon=True)

    def __repr__(self) -> str:
        return f"PrefixWatch({self.prefix!r}, revision={self.revision}, restarts={self.restarts})"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def restart(self) -> None:
        """Drop the current stream and resume from revision + 1, e.g. when it looks hung."""
        self._inbox.put(_RESTART)

    def cancel(self) -> None:
        """Stop the watch; no callback runs after this returns (unless the join timed out)."""
        self._stopping.set()
        self._inbox.put(_STOP)
        self._close_current_stream()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                _log.warning("watch %r did not stop within %.1fs", self.prefix, self._join_timeout)

    def _start(self) -> None:
        self._thread.start()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._needs_reset:
                    self._reset()
                if self._stream():
                    failures = 0
            except _Compacted as exc:
                _log.info("watch %r: %s; re-reading the prefix", self.prefix, exc)
                self._needs_reset = True
            except Exception as exc:  # supervised: report, back off, carry on
                if self._stopping.is_set():
                    break
                failures += 1
                self._report(exc)
                self._pause(self._backoff.delay(failures, self._rng))
        self._close_current_stream()

    def _stream(self) -> bool:
        """Open one stream and pump it until it fails (raises) or is restarted/stopped.

        Returns True when the stream was opened, so the caller can reset its backoff.
        """
        self._generation += 1
        generation = self._generation

        def deliver(item: object) -> None:
            self._inbox.put((generation, item))

        close = self._open_stream(self.prefix, self.revision + 1, deliver)
        with self._close_lock:
            self._close_stream = close
        if self._stopping.is_set():
            self._close_current_stream()
            return True
        if self._opened_once:
            self.restarts += 1
        self._opened_once = True
        try:
            self._pump(generation)
        finally:
            self._close_current_stream()
        return True

    def _pump(self, generation: int) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP or item is _RESTART:
                return
            assert isinstance(item, tuple)
            item_generation, payload = item
            if item_generation != generation:
                continue  # left over from a dropped stream
            if payload is None or isinstance(payload, BaseException):
                raise self._translate_error(self.prefix, self.revision, payload)
            self._deliver(payload)

    def _deliver(self, response: Any) -> None:
        events = [_watch_event(e) for e in response.events]
        events = [e for e in events if e.mod_revision > self.revision]
        if not events:
            return  # progress notification, or nothing new
        try:
            self._on_events(events)
        except Exception:
            _log.exception("watch %r: on_events raised; events up to revision %d are skipped",
                           self.prefix, events[-1].mod_revision)
        self.revision = max(self.revision, events[-1].mod_revision)

    def _reset(self) -> None:
        snapshot = self._list_prefix(self.prefix)
        try:
            self._on_reset(snapshot)
        except Exception:
            _log.exception("watch %r: on_reset raised", self.prefix)
        self.revision = snapshot.revision
        self._needs_reset = False

    def _report(self, exc: Exception) -> None:
        if not isinstance(exc, StoreError):
            _log.exception("watch %r: unexpected error", self.prefix, exc_info=exc)
            exc = StoreError(f"etcd watch {self.prefix!r} failed: {type(exc).__name__}: {exc}")
        else:
            _log.info("watch %r interrupted: %s", self.prefix, exc)
        if self._on_error is None:
            return
        try:
            self._on_error(exc)
        except Exception:
            _log.exception("watch %r: on_error raised", self.prefix)

    def _pause(self, seconds: float) -> None:
        """Back off, but wake at once for cancel() or restart(); stale stream items are dropped."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                return
            if item is _STOP:
                self._stopping.set()
                return
            if item is _RESTART:
                return

    def _close_current_stream(self) -> None:
        with self._close_lock:
            close, self._close_stream = self._close_stream, None
        if close is not None:
            close()
