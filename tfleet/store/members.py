"""The members of the etcd cluster: one pyetcd client each, which member a call goes to,
and how one call fails over between them (see the package docstring, "Members and failover").

_MemberPicker is pure bookkeeping (clock injected); _MemberClients holds the clients and
runs one call within its budget, and is the base of EtcdStore.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pyetcd
import pyetcd.exceptions as etcd_exc
import pyetcd.utils

from tfleet.store.convert import _key_bytes
from tfleet.store.errors import (
    _CLIENT_ERRORS,
    _code,
    _describe,
    _is_member_fault,
    _is_transient,
    _needs_new_token,
    _never_sent,
    _translate,
)
from tfleet.store.settings import (
    _DEFAULT_PORT,
    _MAX_PING_TIMEOUT,
    _MAX_RECEIVE_BYTES,
    _MEMBER_QUARANTINE_SECONDS,
    _RECONNECT_BACKOFF_OPTIONS,
    _REQUIRE_LEADER,
    EtcdSettings,
)
from tfleet.store.types import StoreError, StoreUnavailable
from tfleet.store.watch import _Compacted
from tfleet.store.watch_stream import WatchCanceled, WatchStream

_log = logging.getLogger("tfleet.store")

T = TypeVar("T")


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


def _build_client(settings: EtcdSettings, url: str, *, timeout: float, keepalive: float | None = None, max_receive_bytes: int = _MAX_RECEIVE_BYTES) -> Any:
    """A pyetcd client of ONE member; with user/password this logs in (a network call).

    Failover between members is ours (_MemberPicker), so pyetcd never marks this
    endpoint failed for long (time_retry=0) and never switches endpoints by itself.
    """
    secure = settings.secure
    creds = _channel_credentials(settings) if secure else None
    host, port = _endpoint_host_port(url)
    endpoint = pyetcd.Endpoint(host, port, secure=secure, creds=creds, time_retry=0, opts=_channel_options(keepalive, max_receive_bytes))
    try:
        client = pyetcd.MultiEndpointEtcd3Client(endpoints=[endpoint], timeout=timeout, user=settings.user, password=settings.password, failover=False)
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

    def __init__(self, count: int, *, quarantine: float = _MEMBER_QUARANTINE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
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
            failed = sorted((i for i in rotation if self._quarantined(i, now)), key=lambda i: self._failed_at[i] or 0.0)
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


class _AttemptFailed(Exception):
    """One attempt on one member failed with error (internal to EtcdStore._call)."""

    def __init__(self, error: BaseException, step: str, *, sent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.step = step
        self.sent = sent


class _MemberClients:
    """One lazily built client per member, and the failover of one call between them.

    The base of EtcdStore: what is left to EtcdStore is what to ask etcd, not where.
    Holds the state both share (settings, the clients, the watch streams per member, the
    closed flag) under one lock.
    """

    def __init__(self, settings: EtcdSettings, *, watch_keepalive: float, max_receive_bytes: int, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._watch_keepalive = float(watch_keepalive)
        self._endpoints = ",".join(settings.endpoints)
        self._max_receive_bytes = max_receive_bytes
        self._attempt_timeout = float(settings.attempt_timeout or settings.call_timeout)
        self._picker = _MemberPicker(len(settings.endpoints), clock=clock)
        self._lock = threading.Lock()
        self._clients: list[Any] = [None] * len(settings.endpoints)
        self._streams: dict[int, set[Callable[[], None]]] = {}
        self._closed = False

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
        client = _build_client(self.settings, self.settings.endpoints[index], timeout=timeout, max_receive_bytes=self._max_receive_bytes)
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
        _log.info("etcd member %s failed (%s); %d watch stream(s) move", self.settings.endpoints[index], _describe(exc), len(streams))
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
                raise _AttemptFailed(exc, what if client is not None else f"{what} (login)", sent=client is not None) from exc
            self._picker.succeeded(index)
            return result
        raise AssertionError("unreachable")

    def _failure_message(self, what: str, failures: list[str]) -> str:
        tried = "the only member" if len(self.settings.endpoints) == 1 else f"{len(failures)} member(s)"
        return f"etcd {what} failed on {tried} ({'; '.join(failures)})"

    @staticmethod
    def _unary(stub: str, method: str, request: Any) -> Callable[[Any, float], Any]:
        def send(client: Any, timeout: float) -> Any:
            return getattr(getattr(client, stub), method)(request, timeout, credentials=client.call_credentials, metadata=client.metadata)

        return send

    def _open_watch_stream(self, prefix: str, start_revision: int, deliver: Callable[[object], None]) -> Callable[[], None]:
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
            client = _build_client(
                self.settings, url, timeout=self._attempt_timeout, keepalive=self._watch_keepalive, max_receive_bytes=self._max_receive_bytes
            )
        except _CLIENT_ERRORS as exc:
            if _is_member_fault(exc):
                self._picker.failed(index)
            raise _translate(exc, f"{what} (login)", url) from exc
        closed = threading.Event()

        stream: WatchStream | None = None

        def close() -> None:
            closed.set()
            with self._lock:
                self._streams.get(index, set()).discard(close)
            if stream is not None:
                stream.close()
            _close_quietly(client)

        def relay(item: object) -> None:
            if isinstance(item, BaseException) and not closed.is_set() and _is_member_fault(item):
                self._picker.failed(index)
            deliver(item)

        key = _key_bytes(prefix)
        try:
            stream = WatchStream(
                client.channel,
                key=key,
                range_end=pyetcd.utils.prefix_range_end(key),
                start_revision=start_revision,
                deliver=relay,
                metadata=client.metadata,
                credentials=client.call_credentials,
            ).open(self._attempt_timeout)
        except etcd_exc.RevisionCompactedError as exc:
            _close_quietly(client)
            raise _Compacted(exc.compacted_revision) from exc
        except (*_CLIENT_ERRORS, WatchCanceled) as exc:
            _close_quietly(client)
            if _is_member_fault(exc):
                self._picker.failed(index)
            raise _translate(exc, what, url) from exc
        with self._lock:
            self._streams.setdefault(index, set()).add(close)
        return close
