"""One etcd Watch stream, read straight off etcd's gRPC protocol (a thin client).

The store opens its watches here rather than through the etcd client library's Watcher,
for two reasons measured in docs/operations.md ("A watch that catches up"):

* Size. A watcher that falls behind (resumed after a reconnect, or slowed down long enough
  for etcd to set it aside) is caught up by etcd with up to 1,000 revisions in ONE
  response (etcd's watchBatchMaxRevs). With the controller's transactions of ~100 writes
  that is tens of MiB: more than the client's receive limit, so the stream failed, was
  resumed from the same revision, failed again, and the watch never moved (100,000 events
  in transactions of 100: 0 delivered in 120 s). etcd splits a response into fragments
  no larger than its --max-request-bytes when the watch asks for it (``fragment``, etcd
  3.4+); the client library's protocol files predate that field. This module asks for
  fragments and puts them back together: a revision's events are delivered together,
  never split across two deliveries (a pass never sees half a transaction).
* Cost. The library wraps every event in an object of its own, found through a protobuf
  descriptor lookup, whose fields are then read through ``__getattr__``; here an event
  becomes a WatchEvent in one step.

A stream is one gRPC call on the channel of a client the store built (its TLS, its auth
token, its require-leader metadata) and one thread that reads it. What the thread hands to
``deliver``: a list of WatchEvent (complete revisions, in order), an exception (the stream
failed, was closed, or etcd canceled the watch), or None (etcd ended the stream). No
events are handed over after ``close``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from pyetcd import exceptions as etcd_exc

from tfleet.store.convert import _key_text
from tfleet.store.pb import etcd_watch_pb2 as pb
from tfleet.store.types import WatchEvent

# The method's path on the wire (etcd's service name, not our message package).
WATCH_METHOD = "/etcdserverpb.Watch/Watch"
_DELETE = pb.Event.DELETE


class WatchCanceled(Exception):
    """etcd canceled the watch for a reason other than compaction (e.g. permission denied)."""


def to_events(events: Sequence[Any]) -> list[WatchEvent]:
    """WatchEvents of a response's events (keys decoded as every read of the store decodes them)."""
    converted = []
    for event in events:
        kv = event.kv
        if event.type == _DELETE:
            converted.append(WatchEvent("delete", _key_text(kv.key), b"", kv.mod_revision))
        else:
            converted.append(WatchEvent("put", _key_text(kv.key), kv.value, kv.mod_revision))
    return converted


class Reassembly:
    """Fragments back into whole revisions: the events of a response flagged ``fragment``
    whose revision may go on in the next response are held until it does not."""

    def __init__(self) -> None:
        self._held: list[WatchEvent] = []

    def add(self, events: list[WatchEvent], fragment: bool) -> list[WatchEvent]:
        """The events now complete (every event of each revision in them), in order."""
        if self._held:
            events = self._held + events
            self._held = []
        if not fragment or not events:
            return events
        last = events[-1].mod_revision
        cut = len(events)
        while cut and events[cut - 1].mod_revision == last:
            cut -= 1
        self._held = events[cut:]
        return events[:cut]


class WatchStream:
    """One Watch call of one key range; ``open`` returns once etcd created the watch."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        deliver: Callable[[list[WatchEvent] | BaseException | None], None],
        metadata: Sequence[tuple[str, str]] | None = None,
        credentials: grpc.CallCredentials | None = None,
    ) -> None:
        self._request = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end, start_revision=start_revision, fragment=True))
        self._deliver = deliver
        self._closed = threading.Event()
        self._created = threading.Event()
        self._refusal: BaseException | None = None  # why the watch was not created
        call = channel.stream_stream(WATCH_METHOD, request_serializer=pb.WatchRequest.SerializeToString, response_deserializer=pb.WatchResponse.FromString)
        self._call = call(self._requests(), metadata=metadata, credentials=credentials)
        self._thread = threading.Thread(target=self._read, name=f"etcd-watch:{_key_text(key)}", daemon=True)

    def open(self, timeout: float) -> WatchStream:
        """Start reading; wait up to timeout for etcd to create the watch. Raises
        pyetcd's RevisionCompactedError when start_revision was compacted, WatchTimedOut
        when etcd did not answer in time, the gRPC error when the call failed."""
        self._thread.start()
        if not self._created.wait(timeout):
            self.close()
            raise etcd_exc.WatchTimedOut()
        if self._refusal is not None:
            self.close()
            raise self._refusal
        return self

    def close(self) -> None:
        """End the call; the reader hands no more events to deliver, only the call's end."""
        self._closed.set()
        self._call.cancel()

    def _requests(self) -> Iterator[pb.WatchRequest]:
        yield self._request
        self._closed.wait()  # (the request side stays open until the stream is closed)

    def _read(self) -> None:
        reassembly = Reassembly()
        try:
            for response in self._call:
                if response.compact_revision:
                    self._end(etcd_exc.RevisionCompactedError(response.compact_revision))
                    return
                if response.canceled:
                    self._end(WatchCanceled(f"etcd canceled the watch: {response.cancel_reason or 'no reason given'}"))
                    return
                if response.created and not self._created.is_set():
                    self._created.set()
                if response.events:
                    events = reassembly.add(to_events(response.events), response.fragment)
                    if events and not self._closed.is_set():
                        self._deliver(events)
        except grpc.RpcError as exc:
            self._end(exc)
            return
        except Exception as exc:  # (anything else too: a watch that stops silently would never resume)
            self._end(exc)
            return
        self._end(None)

    def _end(self, outcome: BaseException | None) -> None:
        """The stream is over: refuse the open still waiting, or tell the watch, also when
        the stream was closed (the store closes the streams of a member it gave up on, and
        their watches learn it from this error, as from any other, and go elsewhere)."""
        if not self._created.is_set():
            self._refusal = outcome if outcome is not None else _ended()
            self._created.set()
        else:
            self._deliver(outcome)


def _ended() -> BaseException:
    error: BaseException = etcd_exc.ConnectionFailedError("etcd ended the watch stream before creating the watch")
    return error
