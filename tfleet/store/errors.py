"""What an etcd client error means: one classification and translation into StoreError.

Which errors move a call to another member, which writes may be retried because they
certainly never reached etcd, and which StoreError subclass the caller sees.
"""

from __future__ import annotations

import grpc
import pyetcd.exceptions as etcd_exc

from tfleet.store.settings import _MAX_DETAIL_CHARS
from tfleet.store.types import (
    LeaseLost,
    QuotaExceeded,
    RevisionCompacted,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
)

_QUOTA_ADVICE = (
    "etcd reached its space quota (--quota-backend-bytes) and raised the NOSPACE alarm; it "
    "refuses writes until an operator compacts old revisions (etcdctl compact), defragments "
    "every member (etcdctl defrag --cluster), disarms the alarm (etcdctl alarm disarm), or "
    "raises --quota-backend-bytes"
)


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
    return rpc.code() == grpc.StatusCode.UNAUTHENTICATED or "invalid auth token" in details or "auth store is old" in details


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
    return any(marker in details for marker in ("failed to connect", "connection refused", "no leader", "connections to all backends failing"))


def _is_too_large(exc: BaseException) -> bool:
    details = _details(exc).lower()
    return "request is too large" in details or (_code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details)


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
