"""The etcd adapter: the only package of tfleet that imports the etcd client (pyetcd).

Everything above this module speaks in plain values (KeyValue, Snapshot, Page, WatchEvent,
Put, Delete, Compare) and catches only StoreError and its subclasses, so that the etcd
client can be replaced or patched here alone.

Layout (each module one job; import from tfleet.store, not from the modules):
* types.py     the plain values and StoreError and its subclasses (pure);
* settings.py  EtcdSettings (endpoints, TLS, password), the adapter's limits (pure); it re-exports
               Backoff (tfleet/backoff.py, the code base's one) for the watch's reconnections;
* errors.py    what a client error means: member fault, never sent, -> which StoreError;
* convert.py   plain values <-> etcd protocol messages;
* members.py   one client per member, _MemberPicker, one call's failover (EtcdStore's base);
* client.py    EtcdStore: reads in bounded pages, writes, txns, leases, compaction, watches;
* watch.py     PrefixWatch, the supervised watch thread.

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
* list_range(start, end, limit=N, descending=False, revision=None) -> Page: one bounded
  window of [start, end) in key order or reversed (e.g. the newest history entries).
* last_key(prefix) -> KeyValue | None: the greatest key of a prefix (one key in the
  response, but etcd reads and sorts the whole prefix for it, as for any descending range:
  12 ms at 10,000 keys, 950 ms at 100,000; use it, and list_range(descending=True), on
  pruned prefixes only).
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

from tfleet.store.client import EtcdStore
from tfleet.store.errors import _is_member_fault, _never_sent, _translate
from tfleet.store.members import _MemberPicker
from tfleet.store.settings import (
    DEFAULT_MAX_REQUEST_BYTES,
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
    QuotaExceeded,
    RevisionCompacted,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TxnResult,
    ValueTooLarge,
    WatchEvent,
)
from tfleet.store.watch import PrefixWatch

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_WATCH_KEEPALIVE",
    "Backoff",
    "Compare",
    "Delete",
    "EtcdSettings",
    "EtcdStore",
    "KeyValue",
    "LeaseLost",
    "Page",
    "PrefixWatch",
    "Put",
    "QuotaExceeded",
    "RevisionCompacted",
    "Snapshot",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
    "ValueTooLarge",
    "WatchEvent",
    # private, for the unit tests of the classification and the picker
    "_MemberPicker",
    "_is_member_fault",
    "_never_sent",
    "_translate",
]
