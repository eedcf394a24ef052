"""The etcd adapter: the only module of tfleet that imports the etcd client (pyetcd).

Everything above this module speaks in plain values (KeyValue, Snapshot, WatchEvent, Put,
Delete, Compare) and catches only StoreError and its subclasses, so that the etcd client
can be replaced or patched here alone.

pyetcd (etcd-sdk-python) is small and leaves the hard parts to its user. This adapter
works around the traps measured against a real etcd 3.5:

* With default settings pyetcd marks its only endpoint "failed" after one error and then
  refuses every call for 300 s, even when etcd is back. We build a
  MultiEndpointEtcd3Client with failover and a short per-endpoint retry time instead.
* gRPC channels back off exponentially (up to 120 s) between reconnection attempts, so
  after a long outage a client could stay unusable long after etcd returned (measured:
  12 s after a 30 s outage). We cap the reconnect backoff at 2 s.
* pyetcd never logs in again when a password token expires (or etcd restarts and forgets
  its tokens): on an "invalid auth token" error we rebuild the client, which logs in,
  once, and retry the call.
* pyetcd's transaction() drops the response header, so TxnResult.revision would be
  unknowable; we send TxnRequest ourselves through the client's stub.
* A pyetcd watch dies on any connection error, and pyetcd's Watcher.close() only
  half-closes the request stream (etcd keeps sending events: measured). PrefixWatch gives
  each stream its own client, so restart() and cancel() end it by closing its channel,
  and resumes from the last delivered revision + 1.
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
from collections.abc import Callable, Iterable, Sequence
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
# pyetcd refuses to use an endpoint for this long after an error; short, so a restarted
# etcd is used again at once, yet long enough to fail over to another endpoint.
_ENDPOINT_RETRY_SECONDS = 0.5
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
    """Delete one key, or every key starting with `key` when prefix is true."""

    key: str
    prefix: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key, "Delete.key")


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
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoints", _normalize_endpoints(self.endpoints))
        _check_timeout(self.call_timeout)
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


def _check_timeout(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"call_timeout must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"call_timeout must be a positive, finite number of seconds, not {value!r}")


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
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    }
)
# What pyetcd and gRPC raise; ValueError is pyetcd's "Trying to use a failed node".
_CLIENT_ERRORS = (etcd_exc.Etcd3Exception, grpc.RpcError, ValueError)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return True
    if isinstance(exc, ValueError) and "failed node" in str(exc):
        return True
    rpc = _rpc_error_of(exc)
    return isinstance(exc, grpc.RpcError) and rpc is not None and rpc.code() in _UNAVAILABLE_CODES


def _translate(exc: BaseException, what: str, endpoints: str) -> StoreError:
    """One StoreError for any client error, naming the operation, key and endpoints."""
    message = f"etcd {what} failed ({endpoints}): {_describe(exc)}"
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


def _channel_options(keepalive: float | None) -> list[tuple[str, int]]:
    """gRPC channel options; keepalive (seconds) only for the channels of watch streams.

    grpc 1.85 ends a connection whose ping is not answered only after
    grpc.http2.ping_timeout_ms (default 60 s), whatever grpc.keepalive_timeout_ms says,
    so both are set.
    """
    options = list(_RECONNECT_BACKOFF_OPTIONS)
    if keepalive is not None:
        ping_timeout_ms = int(min(_MAX_PING_TIMEOUT, keepalive / 2) * 1000)
        options += [
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", ping_timeout_ms),
            ("grpc.http2.ping_timeout_ms", ping_timeout_ms),
        ]
    return options


def _build_client(settings: EtcdSettings, *, keepalive: float | None = None) -> Any:
    """A pyetcd client; with user/password this logs in (a network call)."""
    secure = settings.secure
    creds = _channel_credentials(settings) if secure else None
    options = _channel_options(keepalive)
    endpoints = []
    for url in settings.endpoints:
        host, port = _endpoint_host_port(url)
        endpoints.append(
            pyetcd.Endpoint(
                host, port, secure=secure, creds=creds,
                time_retry=_ENDPOINT_RETRY_SECONDS, opts=options,
            )
        )
    try:
        return pyetcd.MultiEndpointEtcd3Client(
            endpoints=endpoints,
            timeout=settings.call_timeout,
            user=settings.user,
            password=settings.password,
            failover=True,
        )
    except BaseException:
        for endpoint in endpoints:
            endpoint.close()
        raise


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # closing is best effort: the channel may already be gone
        _log.debug("closing an etcd client failed", exc_info=True)


def _mark_endpoint_failed(client: Any, exc: BaseException) -> None:
    """For calls made on a raw stub: let pyetcd fail over, as its own methods do."""
    if isinstance(exc, grpc.RpcError) and _is_unavailable(exc):
        try:
            client.endpoint_in_use.fail()
        except Exception:
            _log.debug("marking an etcd endpoint failed did not work", exc_info=True)


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


def _snapshot(response: Any) -> Snapshot:
    return Snapshot(int(response.header.revision), tuple(_key_value(kv) for kv in response.kvs))


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
        return etcdrpc.RequestOp(request_delete_range=delete)
    raise TypeError(f"transaction operations must be Put or Delete, not {op!r}")


def _txn_subject(compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> str:
    keys = sorted({c.key for c in compares} | {op.key for op in ops})
    shown = ", ".join(repr(k) for k in keys[:4])
    return f"txn on {shown}" + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


# ---------------------------------------------------------------------------------------
# The store


class EtcdStore:
    """etcd through one long-lived client; safe to share between threads.

    The client is built on first use, so a daemon can start while etcd is down and a
    failed login does not break the constructor. Every method raises only StoreError
    subclasses; none retries a write on its own (a write that timed out may or may not
    have been applied, which only the caller can judge).
    """

    def __init__(
        self,
        settings: EtcdSettings,
        *,
        watch_backoff: Backoff | None = None,
        watch_keepalive: float = DEFAULT_WATCH_KEEPALIVE,
        rng: random.Random | None = None,
    ) -> None:
        """watch_backoff, watch_keepalive (seconds between pings) and rng are for tests and tuning."""
        if not (isinstance(watch_keepalive, int | float) and 0 < watch_keepalive < math.inf):
            raise ValueError(f"watch_keepalive must be a positive number of seconds, not {watch_keepalive!r}")
        self.settings = settings
        self._watch_keepalive = float(watch_keepalive)
        self._endpoints = ",".join(settings.endpoints)
        self._watch_backoff = watch_backoff or Backoff()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False
        self._watches: list[PrefixWatch] = []

    def __repr__(self) -> str:
        return f"EtcdStore({self._endpoints})"

    # -- plumbing ---------------------------------------------------------------------

    def _current_client(self, what: str) -> Any:
        with self._lock:
            if self._closed:
                raise StoreError(f"etcd {what} failed ({self._endpoints}): the store is closed")
            if self._client is None:
                self._client = self._new_client(what)
            return self._client

    def _new_client(self, what: str, *, keepalive: float | None = None) -> Any:
        try:
            return _build_client(self.settings, keepalive=keepalive)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, f"{what} (login)", self._endpoints) from exc

    def _discard_client(self, client: Any) -> None:
        """Drop a client whose token went stale; the next call logs in again."""
        with self._lock:
            if self._client is client:
                self._client = None
        _close_quietly(client)

    def _call(self, what: str, action: Callable[[Any], T]) -> T:
        """Run action(client), logging in again once if etcd forgot our token."""
        for attempt in (1, 2):
            client = self._current_client(what)
            try:
                return action(client)
            except _CLIENT_ERRORS as exc:
                if attempt == 1 and self.settings.user and _needs_new_token(exc):
                    _log.info("etcd auth token rejected; logging in again (%s)", what)
                    self._discard_client(client)
                    continue
                _mark_endpoint_failed(client, exc)
                raise _translate(exc, what, self._endpoints) from exc
        raise AssertionError("unreachable")

    # -- key/value --------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        _check_key(key, "key")
        response = self._call(f"get {key!r}", lambda c: c.get_response(_key_bytes(key)))
        return _key_value(response.kvs[0]) if response.kvs else None

    def list_prefix(self, prefix: str) -> Snapshot:
        _check_key(prefix, "prefix")
        response = self._call(f"list {prefix!r}", lambda c: c.get_prefix_response(_key_bytes(prefix)))
        return _snapshot(response)

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Write key; returns the revision of the write."""
        Put(key, value, lease)  # validates
        what = f"put {key!r}" + (f" with lease {lease:x}" if lease else "")
        response = self._call(what, lambda c: c.put(_key_bytes(key), value, lease=lease or 0))
        return int(response.header.revision)

    def delete(self, key: str) -> bool:
        """Delete one key; False when it did not exist."""
        _check_key(key, "key")
        response = self._call(
            f"delete {key!r}", lambda c: c.delete(_key_bytes(key), return_response=True)
        )
        return int(response.deleted) > 0

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under prefix; returns how many were deleted."""
        _check_key(prefix, "prefix")
        response = self._call(f"delete prefix {prefix!r}", lambda c: c.delete_prefix(_key_bytes(prefix)))
        return int(response.deleted)

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        """Atomically: if every compare holds, apply success, else apply failure."""
        request = etcdrpc.TxnRequest(
            compare=[_compare_message(c) for c in compares],
            success=[_op_message(op) for op in success],
            failure=[_op_message(op) for op in failure],
        )
        what = _txn_subject(compares, [*success, *failure])

        def send(client: Any) -> Any:
            return client.kvstub.Txn(
                request, client.timeout,
                credentials=client.call_credentials, metadata=client.metadata,
            )

        response = self._call(what, send)
        return TxnResult(bool(response.succeeded), int(response.header.revision))

    # -- leases -----------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        """A new lease of ttl seconds (etcd rounds very short TTLs up, to ~2 s by default)."""
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ValueError(f"lease TTL must be a whole number of seconds >= 1, not {ttl!r}")
        lease = self._call(f"grant lease ttl={ttl}s", lambda c: c.lease(ttl))
        return int(lease.id)

    def refresh_lease(self, lease_id: int) -> int:
        """Renew the lease once; returns its remaining TTL. Raises LeaseLost when it is gone."""
        what = f"refresh lease {lease_id:x}"
        responses = self._call(what, lambda c: list(c.refresh_lease(lease_id)))
        if not responses:
            raise StoreUnavailable(f"etcd {what} failed ({self._endpoints}): no keepalive response")
        ttl = int(responses[0].TTL)
        if ttl <= 0:
            raise LeaseLost(f"etcd {what} failed ({self._endpoints}): the lease expired or was revoked")
        return ttl

    def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys. Idempotent: an unknown lease is not an error."""
        try:
            self._call(f"revoke lease {lease_id:x}", lambda c: c.revoke_lease(lease_id))
        except LeaseLost:
            return

    # -- maintenance ------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Drop history before revision. Idempotent: an older compaction is not an error."""
        try:
            self._call(f"compact at revision {revision}", lambda c: c.compact(revision))
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

        list_prefix: what re-reads the prefix after a compaction (default: one range read of
        all of it); the fleet cache passes its paged read of only the sections it keeps.
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
        """Open one watch stream on its own client; returns the function that closes it.

        Raises _Compacted when start_revision was compacted away, StoreError otherwise.
        """
        what = f"watch {prefix!r} from revision {start_revision}"
        client = self._new_client(what, keepalive=self._watch_keepalive)
        try:
            client.add_watch_prefix_callback(_key_bytes(prefix), deliver, start_revision=start_revision)
        except etcd_exc.RevisionCompactedError as exc:
            _close_quietly(client)
            raise _Compacted(exc.compacted_revision) from exc
        except _CLIENT_ERRORS as exc:
            _close_quietly(client)
            raise _translate(exc, what, self._endpoints) from exc
        return lambda: _close_quietly(client)

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
        """Cancel this store's watches and close the client; later calls raise StoreError."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.cancel()
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
