"""The history recorder's thread (controller/history.py) never dies: whatever a read raises is
counted, logged and retried with backoff, and stop() ends the thread at once.

A store that fails every read stands in for etcd here; the recorder against a real etcd is
tests/integration/test_history.py.
"""

from __future__ import annotations

import time

from tests.helpers import wait_until
from tfleet.controller.history import HistoryRecorder
from tfleet.controller.metrics import ControllerMetrics
from tfleet.keyspace import Keyspace
from tfleet.store import Backoff

KS = Keyspace()


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))

    warning = info


class _Leading:
    is_leader = True

    def fence(self) -> list:
        return []


class _BrokenStore:
    """Every read fails with something no one planned for."""

    def list_prefix(self, prefix: str):
        raise RuntimeError("disk on fire")


def test_the_recorder_thread_survives_any_exception_counts_and_backs_off() -> None:
    metrics, log = ControllerMetrics(), _Log()
    recorder = HistoryRecorder(
        store=_BrokenStore(),
        keyspace=KS,
        registry=None,
        election=_Leading(),
        metrics=metrics,
        log=log,
        keep=10,
        idle_wait=0.01,
        backoff=Backoff(initial=0.01, cap=0.02),
    )
    recorder.start()
    try:
        wait_until(lambda: metrics.history_errors._value.get() >= 3, 10, message="errors were not counted")
        assert recorder.alive
        assert any(fields.get("result") == "error" and "disk on fire" in str(fields.get("error")) for _, fields in log.events)
    finally:
        recorder.stop()
    started = time.monotonic()
    wait_until(lambda: not recorder.alive, 5, message="the recorder did not stop")
    assert time.monotonic() - started < 5
