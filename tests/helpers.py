"""Helpers shared by every test suite.

Tests wait for conditions, never for fixed times: the CI machine has two shared cores, so
any fixed sleep is either too long everywhere or too short somewhere.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc

if TYPE_CHECKING:
    from tfleet.schema import RouteTable

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.02,
    message: str = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
    raise_on_timeout: bool = True,
) -> T:
    """Poll predicate until it returns something truthy, and return that value.

    Exceptions of the types in `ignore` count as "not yet" (e.g. StoreUnavailable while
    etcd restarts); the last one is quoted in the timeout message. On timeout this raises
    AssertionError(message), or returns the last falsy value if raise_on_timeout is false.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    result: T | None = None
    while True:
        try:
            result = predicate()
            last_error = None
            if result:
                return result
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not raise_on_timeout:
        return result  # type: ignore[return-value]
    detail = f"; last error: {last_error!r}" if last_error is not None else ""
    raise AssertionError(f"{message} (not true after {timeout:g}s{detail})")


class FakeClock:
    """A clock (seconds, like time.monotonic) that moves only when the test moves ``now``.

    Pass it where the code under test takes ``clock=``; set or add to ``now`` to let time pass.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingLog:
    """A structlog-like logger that records ``(level, event, fields)`` in ``lines``: pass it
    where the code under test takes ``log=``. Any level method works; ``bind`` returns a
    logger that records into the same list with its context added to every line's fields."""

    def __init__(self, lines: list[tuple[str, str, dict[str, object]]] | None = None, context: dict[str, object] | None = None) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = lines if lines is not None else []
        self.context = dict(context or {})

    def bind(self, **context: object) -> RecordingLog:
        return RecordingLog(self.lines, {**self.context, **context})

    def __getattr__(self, level: str) -> Callable[..., None]:
        if level.startswith("_"):
            raise AttributeError(level)
        return lambda event, **fields: self.lines.append((level, event, {**self.context, **fields}))

    def events(self, level: str | None = None) -> list[str]:
        """The events logged (at level), in order."""
        return [event for lvl, event, _ in self.lines if level is None or lvl == level]


class FakeRpcError(grpc.RpcError):
    """What a gRPC stub raises for a failed call: a status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


ROUTES_AT = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.timezone.utc)


def route_endpoint(host: str, ip: str, grpc: int = 8500, rest: int = 8501) -> dict:
    """One endpoint of a route table, as stored: gRPC and REST address of ``host`` at ``ip``."""
    address = f"[{ip}]" if ":" in ip else ip
    return {"host": host, "grpc_address": f"{address}:{grpc}", "rest_address": f"{address}:{rest}"}


def route_table(model: str, endpoints: list[dict], versions: dict | None = None, labels: dict | None = None) -> RouteTable:
    """A route table as the controller writes it (updated_at fixed at ROUTES_AT)."""
    from tfleet.schema import RouteTable

    return RouteTable(model=model, versions=versions or {}, labels=labels or {}, endpoints=endpoints, updated_at=ROUTES_AT)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_cert: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path


# A new P-256 key, unencrypted, for `openssl req`.
_NEW_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def nginx_binary() -> str | None:
    """Where nginx is installed (Debian puts it in /usr/sbin, often not on a user's PATH), or None."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed_cert(directory: pathlib.Path, name: str, subject: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req",
        "-new",
        *_NEW_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.crt",
        "-extfile",
        f"{name}.ext",
        cwd=directory,
    )


def make_tls_files(directory: pathlib.Path, client_common_name: str = "tfleet-test-client") -> TlsFiles:
    """Generate TLS material with the openssl CLI (EC keys: fast even on a busy machine).

    The server certificate also allows client authentication because etcd dials itself
    with it (its HTTP gateway) when client certificates are required.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        *_NEW_EC_KEY,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tfleet-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    _signed_cert(directory, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _signed_cert(directory, "client", f"/CN={client_common_name}", "extendedKeyUsage=clientAuth\n")
    return TlsFiles(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


def with_kept_hosts(fresh, kept_from, keyspace):
    """A one-shot read (``fresh``, no memory) given the host records ``kept_from`` (a snapshot
    kept current from the cache) holds for host keys that now hold an invalid value: the
    controller keeps a host's last valid record while its key exists (controller/snapshot.py
    _host_filers). Everything else must still be equal; this patches only those hosts."""
    from tfleet.keyspace import InvalidName

    prefix = keyspace.hosts_prefix()
    for key in list(fresh.bad_values):
        if not key.startswith(prefix):
            continue
        try:
            name = keyspace.name_after(key, prefix)
        except InvalidName:
            continue
        if name in kept_from.hosts:
            fresh.hosts[name] = kept_from.hosts[name]
            fresh.bad_values[key] = kept_from.bad_values[key]
            fresh.problem_keys[key] = kept_from.problem_keys[key]
    return fresh
