"""How to reach etcd (EtcdSettings, endpoint parsing, TLS and password checks) and the
limits and timings the adapter works within.

Pure: validated on construction, so that a bad flag fails at startup, not at first call.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

from tfleet.backoff import Backoff as Backoff  # re-exported: the watch's reconnection backoff

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
        attempt = self.attempt_timeout
        if attempt is None:
            attempt = self.call_timeout if len(self.endpoints) == 1 else self.call_timeout / 2
            object.__setattr__(self, "attempt_timeout", attempt)
        _check_timeout(attempt, "attempt_timeout")
        if attempt > self.call_timeout:
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
            raise ValueError("TLS files (ca_cert/cert/key) given but the endpoints use http://; write them as https://HOST:PORT")

    def _check_password(self) -> None:
        if (self.user is None) != (self.password is None):
            raise ValueError("password authentication needs both user and password (got only one)")
        if self.user is None:
            return
        if not self.user or not self.password:
            raise ValueError("user and password must not be empty")
        if not self.secure:
            raise ValueError(
                "password authentication requires https:// endpoints (the token would travel in clear); use TLS, preferably with client certificates"
            )


def _check_timeout(value: object, name: str = "call_timeout") -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")


def _normalize_endpoints(endpoints: object) -> tuple[str, ...]:
    if isinstance(endpoints, str):
        raise ValueError("endpoints must be a tuple of URLs, not a string; use EtcdSettings.parse_endpoints('URL[,URL...]')")
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
