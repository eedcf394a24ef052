"""controller/txn_pipeline.py: a pass's transactions, a few in flight, all landed before it ends."""

from __future__ import annotations

import threading

import pytest

from tfleet.controller.txn_pipeline import TxnPipeline


class Etcd:
    """Transactions that wait until the test lets them commit (as etcd's fsync makes them wait)."""

    def __init__(self, fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.lock = threading.Lock()
        self.sent: list[int] = []
        self.landed: list[int] = []
        self.gate = threading.Event()
        self.fail = fail

    def send(self, batch):
        with self.lock:
            self.sent.append(batch[0])
        assert self.gate.wait(30)
        with self.lock:
            self.landed.append(batch[0])
        if batch[0] in self.fail:
            raise RuntimeError(f"txn {batch[0]} failed")
        return True


def _wait(predicate) -> None:
    done = threading.Event()
    for _ in range(3000):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in 30 s")


def test_two_transactions_are_in_flight_and_the_third_waits_for_the_first() -> None:
    etcd = Etcd()
    pipeline = TxnPipeline(etcd.send, depth=2)
    pipeline.submit([1])
    pipeline.submit([2])  # returns at once: two in flight
    _wait(lambda: etcd.sent == [1, 2] or etcd.sent == [2, 1])
    third = threading.Thread(target=pipeline.submit, args=([3],))
    third.start()
    third.join(0.2)
    assert third.is_alive(), "a third transaction must wait while two are in flight"
    etcd.gate.set()
    third.join(30)
    pipeline.drain()
    assert sorted(etcd.landed) == [1, 2, 3]


def _first_of_two_fails() -> tuple[Etcd, TxnPipeline[int]]:
    """Two transactions sent, the first of which fails once both may commit."""
    etcd = Etcd(fail={1})
    pipeline = TxnPipeline(etcd.send, depth=2)
    pipeline.submit([1])
    pipeline.submit([2])
    etcd.gate.set()
    return etcd, pipeline


def test_drain_waits_for_all_and_raises_the_first_failure_after_the_others_landed() -> None:
    etcd, pipeline = _first_of_two_fails()
    with pytest.raises(RuntimeError, match="txn 1 failed"):
        pipeline.drain()
    assert sorted(etcd.landed) == [1, 2]
    pipeline.drain()  # nothing left in flight: a failure is raised once


def test_a_failure_met_by_submit_is_raised_there_once_the_others_landed() -> None:
    etcd, pipeline = _first_of_two_fails()
    with pytest.raises(RuntimeError, match="txn 1 failed"):
        pipeline.submit([3])
    assert sorted(etcd.landed) == [1, 2], "the batch after a failure is not sent"


def test_depth_one_sends_in_the_callers_thread() -> None:
    seen: list[str] = []
    pipeline = TxnPipeline(lambda batch: seen.append(threading.current_thread().name), depth=1)
    pipeline.submit([1])
    pipeline.drain()
    assert seen == [threading.current_thread().name]
    with pytest.raises(ValueError):
        TxnPipeline(lambda batch: None, depth=0)


def test_waited_counts_the_time_the_caller_waited_for_transactions() -> None:
    """What a pass's log line reports as etcd_wait_s: time blocked for a free slot or in
    drain, not the time transactions spent in flight while the caller went on."""
    etcd = Etcd()
    ticks = iter(range(1000))
    pipeline = TxnPipeline(etcd.send, depth=2, clock=lambda: float(next(ticks)))
    pipeline.submit([1])
    pipeline.submit([2])  # (no wait: no clock read)
    assert pipeline.waited == 0.0
    etcd.gate.set()
    pipeline.submit([3])  # waits for the first: one reading before, one after
    assert pipeline.waited == 1.0
    pipeline.drain()
    assert pipeline.waited == 2.0
    serial = TxnPipeline(lambda batch: None, depth=1, clock=lambda: float(next(ticks)))
    serial.submit([1])
    assert serial.waited == 1.0


def test_each_transaction_is_observed_with_its_own_time_failed_ones_too() -> None:
    """tfleet_controller_write_txn_duration_seconds: one observation per transaction, from
    its send to its answer, in whichever thread sent it; a failed transaction is observed
    too (an operator comparing with etcd's handling time needs the slow failures most)."""
    seen: list[float] = []
    now = [0.0]

    def send(batch):  # each transaction takes batch[0] seconds of the fake clock
        now[0] += batch[0]
        if batch[0] == 2:
            raise RuntimeError("txn 2 failed")

    serial = TxnPipeline(send, depth=1, clock=lambda: now[0], observe=seen.append)
    serial.submit([1])
    serial.submit([3])
    with pytest.raises(RuntimeError, match="txn 2 failed"):
        serial.submit([2])
    assert seen == [1.0, 3.0, 2.0]
    assert serial.waited == 6.0  # (the caller waited for all three: depth 1)
    seen.clear()
    pooled = TxnPipeline(lambda batch: None, depth=2, observe=seen.append)
    for n in range(5):
        pooled.submit([n])
    pooled.drain()
    assert len(seen) == 5
    failing = TxnPipeline(send, depth=2, clock=lambda: now[0], observe=seen.append)
    failing.submit([2])
    with pytest.raises(RuntimeError, match="txn 2 failed"):
        failing.drain()
    assert len(seen) == 6
