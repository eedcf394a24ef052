"""EtcdStore: what tfleet asks etcd (reads in bounded pages, writes, transactions, leases,
compaction, watches), in plain values; where each call goes is _MemberClients' job.

See the package docstring for the API, its limits and the retry rules.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyetcd.exceptions as etcd_exc
import pyetcd.utils
from pyetcd import etcdrpc

from tfleet.store.convert import (
    _key_bytes,
    _key_text,
    _key_value,
    _txn_request,
    _txn_subject,
)
from tfleet.store.errors import _is_response_too_large, _translate
from tfleet.store.members import _close_quietly, _MemberClients
from tfleet.store.settings import (
    _FIRST_PAGE_SIZE,
    _LIST_RESTARTS,
    _MAX_RECEIVE_BYTES,
    _PAGE_TARGET_BYTES,
    _RAFT_WRAPPER_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WATCH_KEEPALIVE,
    Backoff,
    EtcdSettings,
)
from tfleet.store.types import (
    Compare,
    Delete,
    KeyValue,
    LeaseLost,
    Page,
    Put,
    RevisionCompacted,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TxnResult,
    ValueTooLarge,
    WatchEvent,
    _check_key,
)
from tfleet.store.watch import PrefixWatch, _Compacted

_log = logging.getLogger("tfleet.store")


class EtcdStore(_MemberClients):
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
        for name, value in (("page_size", page_size), ("page_bytes", page_bytes), ("max_receive_bytes", max_receive_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, not {value!r}")
        super().__init__(settings, watch_keepalive=watch_keepalive, max_receive_bytes=max_receive_bytes, clock=clock)
        self._watch_backoff = watch_backoff or Backoff()
        self._rng = rng or random.Random()
        self._page_size = page_size
        self._page_bytes = page_bytes
        self._watches: list[PrefixWatch] = []

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
        at = revision
        cap = limit
        limit = min(limit, _FIRST_PAGE_SIZE)
        while True:
            what = f"list {prefix!r} from {_key_text(start)!r}" + (f" at revision {at}" if at else "")
            page, sent = self._range_page(what, limit, at, key=start, range_end=range_end, keys_only=keys_only)
            if sent < limit:
                cap = sent  # a response of limit keys was too large: no later page asks for more
            at = page.revision
            yield page
            if not page.more:
                return
            start = _key_bytes(page.items[-1].key) + b"\0"
            size = sum(len(kv.key) + len(kv.value) for kv in page.items)
            limit = max(1, min(cap, self._page_bytes * len(page.items) // max(size, 1)))

    def list_page(self, prefix: str, start_after: str | None = None, limit: int = 100, revision: int | None = None) -> Page:
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
        page, _ = self._range_page(f"list {prefix!r} from {_key_text(start)!r}", limit, revision, key=start, range_end=range_end)
        return page

    def list_range(self, start: str, end: str, *, limit: int, descending: bool = False, revision: int | None = None) -> Page:
        """At most limit keys of [start, end), in key order or reversed: ONE range request
        (e.g. the newest entries of a model's history). Fewer keys come back (with more=True)
        when limit keys would make too large a response."""
        _check_key(start, "start")
        _check_key(end, "end")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive whole number, not {limit!r}")
        order = etcdrpc.RangeRequest.DESCEND if descending else etcdrpc.RangeRequest.ASCEND
        page, _ = self._range_page(
            f"range {start!r}..{end!r} limit {limit}",
            limit,
            revision,
            key=_key_bytes(start),
            range_end=_key_bytes(end),
            sort_order=order,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        return page

    def _range_page(self, what: str, limit: int, revision: int | None, **request: Any) -> tuple[Page, int]:
        """One Range request (the fields of etcd's RangeRequest in request) of at most limit
        keys at revision (None: now), and the limit that was sent at last.

        The one place a read shrinks: when gRPC refuses a response as too large (many big
        values), the same request is sent again for a quarter as many keys, down to one.
        """
        while True:
            message = etcdrpc.RangeRequest(limit=limit, revision=revision or 0, **request)
            try:
                response = self._call(what, self._unary("kvstub", "Range", message), idempotent=True)
            except StoreError as exc:
                if limit > 1 and _is_response_too_large(exc.__cause__ or exc):
                    limit = max(1, limit // 4)
                    continue
                raise
            items = tuple(_key_value(kv) for kv in response.kvs)
            return Page(revision or int(response.header.revision), items, bool(response.more) and bool(items)), limit

    def last_key(self, prefix: str) -> KeyValue | None:
        """The greatest key under prefix with its value (None when the prefix is empty).

        The response is one key, but its cost grows with the prefix: etcd (3.5 and 3.6,
        server/etcdserver/apply.go Range) serves any sort order other than NONE by reading
        the whole range, values included, then sorting and truncating; its index has no
        descending scan, so no request gives the last key in O(log n). Measured on this
        machine (etcd 3.5.1, 200-byte values): 1.8 ms at 1,000 keys, 12 ms at 10,000,
        950 ms at 100,000 (the first key, unsorted, limit 1: 0.6 / 1.1 / 8.6 ms). Use it
        only on prefixes kept small (pruned history, not a fleet section); no daemon calls
        it in a pass.
        """
        _check_key(prefix, "prefix")
        request = etcdrpc.RangeRequest(
            key=_key_bytes(prefix),
            range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix)),
            limit=1,
            sort_order=etcdrpc.RangeRequest.DESCEND,
            sort_target=etcdrpc.RangeRequest.KEY,
        )
        response = self._call(f"last key of {prefix!r}", self._unary("kvstub", "Range", request), idempotent=True)
        return _key_value(response.kvs[0]) if response.kvs else None

    def count_prefix(self, prefix: str, revision: int | None = None) -> int:
        """How many keys are under prefix (at revision, or now), without transferring them."""
        _check_key(prefix, "prefix")
        request = etcdrpc.RangeRequest(
            key=_key_bytes(prefix),
            range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix)),
            count_only=True,
            revision=revision or 0,
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
        request = etcdrpc.DeleteRangeRequest(key=_key_bytes(prefix), range_end=pyetcd.utils.prefix_range_end(_key_bytes(prefix)))
        response = self._call(f"delete prefix {prefix!r}", self._unary("kvstub", "DeleteRange", request), idempotent=False)
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
        request = _txn_request(compares, success, failure)
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
        response = self._call(f"grant lease ttl={ttl}s", self._unary("leasestub", "LeaseGrant", request), idempotent=True)
        if response.error:
            raise StoreError(f"etcd grant lease ttl={ttl}s failed ({self._endpoints}): {response.error}")
        return int(response.ID)

    def refresh_lease(self, lease_id: int) -> int:
        """Renew the lease once; returns its remaining TTL. Raises LeaseLost when it is gone."""
        what = f"refresh lease {lease_id:x}"
        ttl = self._keepalive([lease_id], what).get(lease_id)
        if ttl is None:
            raise StoreUnavailable(f"etcd {what} failed ({self._endpoints}): no keepalive response")
        if ttl == 0:
            raise LeaseLost(f"etcd {what} failed ({self._endpoints}): the lease expired or was revoked")
        return ttl

    def refresh_leases(self, lease_ids: Sequence[int]) -> dict[int, int]:
        """Renew many leases on one keepalive stream (as etcd's clientv3 renews all of a
        client's leases); returns each lease's remaining TTL, 0 for one that is gone. One
        process holding many leases (bench/standin.py: 1,000 hosts) would otherwise open a
        stream per lease per renewal: ~1 ms of its CPU and ~0.4 ms of etcd's each, a third
        of a core at 1,000 leases renewed every TTL/3 (measured with 900 leases)."""
        ids = list(dict.fromkeys(int(lease) for lease in lease_ids))
        if not ids:
            return {}
        what = f"refresh {len(ids)} leases"
        ttls = self._keepalive(ids, what)
        if len(ttls) < len(ids):
            raise StoreUnavailable(f"etcd {what} failed ({self._endpoints}): {len(ids) - len(ttls)} keepalive responses missing")
        return ttls

    def _keepalive(self, ids: Sequence[int], what: str) -> dict[int, int]:
        """One keepalive stream that renews each of ids (distinct) once: lease -> remaining
        TTL (0: gone), for the responses that came before the stream ended."""

        def keepalive(client: Any, timeout: float) -> dict[int, int]:
            requests = (etcdrpc.LeaseKeepAliveRequest(ID=lease) for lease in ids)
            call = client.leasestub.LeaseKeepAlive(requests, timeout, credentials=client.call_credentials, metadata=client.metadata)
            ttls: dict[int, int] = {}
            try:
                for response in call:
                    ttls[int(response.ID)] = max(0, int(response.TTL))
                    if len(ttls) == len(ids):
                        break
            finally:
                call.cancel()
            return ttls

        result: dict[int, int] = self._call(what, keepalive, idempotent=True)
        return result

    def revoke_lease(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys. Idempotent: an unknown lease is not an error."""
        request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(f"revoke lease {lease_id:x}", self._unary("leasestub", "LeaseRevoke", request), idempotent=True)
        except LeaseLost:
            return

    # -- maintenance ------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Drop history before revision. Idempotent: an older compaction is not an error."""
        request = etcdrpc.CompactionRequest(revision=revision, physical=False)
        try:
            self._call(f"compact at revision {revision}", self._unary("kvstub", "Compact", request), idempotent=True)
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
        resume_at_compaction: bool = False,
    ) -> PrefixWatch:
        """Start a supervised watch of prefix from start_revision (usually snapshot.revision + 1).

        list_prefix: what re-reads the prefix after a compaction (default: list_prefix, every
        key under it); the fleet cache passes its paged read of only the sections it keeps.
        resume_at_compaction: after a compaction, on_reset gets the prefix as of the
        compaction revision and every event after it follows, so that only the compacted
        revisions are lost (the history recorder's "gap" then names exactly those). The
        default re-reads at the current revision, which is all a cache needs.
        """
        _check_key(prefix, "prefix")
        if isinstance(start_revision, bool) or not isinstance(start_revision, int) or start_revision < 1:
            raise ValueError(f"start_revision must be >= 1 (use list_prefix(...).revision + 1), not {start_revision!r}")
        watch = PrefixWatch(
            prefix=prefix,
            start_revision=start_revision,
            open_stream=self._open_watch_stream,
            list_prefix=list_prefix or self.list_prefix,
            list_at=(lambda p, r: self.list_prefix(p, revision=r)) if resume_at_compaction else None,
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
