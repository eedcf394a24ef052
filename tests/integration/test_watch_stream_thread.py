"""The watch stream's own thread (tfleet/store/watch_stream.py) on a scripted gRPC call: it
ends with whatever ended it, never silently, and etcd's refusals reach ``open``. (No etcd:
the calls are fakes of our own; here because the stream starts a thread.)"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pyetcd import exceptions as etcd_exc

from tfleet.store.pb import etcd_watch_pb2 as pb
from tfleet.store.watch_stream import WATCH_METHOD, WatchStream


class _Call:
    """A Watch call that answers `responses`, then raises `error` (None: the stream ends)."""

    def __init__(self, responses: list[Any], error: BaseException | None) -> None:
        self._responses, self._error = responses, error
        self.cancelled = False

    def __iter__(self) -> Iterator[Any]:
        yield from self._responses
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        self.cancelled = True


class _Channel:
    def __init__(self, call: _Call) -> None:
        self._call = call

    def stream_stream(self, method: str, **serializers: Any) -> Callable[..., _Call]:
        assert method == WATCH_METHOD
        return lambda requests, **kwargs: self._call


def _stream(responses: list[Any], error: BaseException | None) -> tuple[WatchStream, queue.SimpleQueue]:
    delivered: queue.SimpleQueue = queue.SimpleQueue()
    stream = WatchStream(_Channel(_Call(responses, error)), key=b"/k/", range_end=b"/k0", start_revision=1, deliver=delivered.put)  # type: ignore[arg-type]
    return stream, delivered


def _response(**fields: Any) -> Any:
    return pb.WatchResponse(**fields)


def test_a_reader_that_meets_the_unexpected_ends_the_stream_with_it_never_silently() -> None:
    """Whatever goes wrong in the stream's thread reaches the watch, which then resumes
    elsewhere; a thread that died quietly would leave the watch waiting for ever."""
    created = _response(created=True)
    one_event = _response(events=[pb.Event(kv=pb.KeyValue(key=b"/k/a", value=b"v", mod_revision=2))])
    stream, delivered = _stream([created, one_event], ValueError("a surprise"))
    stream.open(timeout=5)
    first = delivered.get(timeout=5)
    assert [e.mod_revision for e in first] == [2]
    assert isinstance(delivered.get(timeout=5), ValueError)


def test_a_watch_etcd_refuses_for_compaction_is_refused_at_open() -> None:
    stream, _ = _stream([_response(created=True, compact_revision=7, canceled=True)], None)
    with pytest.raises(etcd_exc.RevisionCompactedError):
        stream.open(timeout=5)
