"""The pure parts of controller/election/ (term.py): timing rules and the local deadline of a term.

Nothing here talks to etcd; the behaviour against a real etcd is in
tests/integration/test_election.py.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import structlog

from tests.helpers import FakeClock
from tfleet.controller.election import (
    Election,
    ElectionTiming,
    NotLeader,
    Term,
    record_bytes,
)
from tfleet.keyspace import Keyspace
from tfleet.schema import LeaderRecord
from tfleet.store import EtcdSettings, EtcdStore, Put


def test_defaults_renew_every_third_of_the_ttl_and_give_up_a_fifth_early() -> None:
    timing = ElectionTiming()
    assert timing.ttl == 10
    assert timing.renew_interval == pytest.approx(10 / 3)
    assert timing.renew_jitter == pytest.approx(10 / 30)
    assert timing.margin == pytest.approx(2.0)


@pytest.mark.parametrize("ttl", [3, 4, 10, 30, 60])
def test_default_margin_survives_one_failed_renewal_even_with_full_jitter(ttl: int) -> None:
    timing = ElectionTiming(ttl)
    # renewal 1 (at renew_interval) fails; renewal 2 must still be sent before the deadline
    second_attempt = 2 * timing.renew_interval + timing.renew_jitter
    assert second_attempt < timing.deadline(0.0)
    # and the leader stops acting before etcd can let anybody else win
    assert timing.deadline(0.0) < ttl


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ttl": 2}, ">= 3"),
        ({"ttl": 3.5}, "whole number"),
        ({"ttl": True}, "whole number"),
        ({"ttl": 9, "margin": 3.0}, "below TTL/3"),
        ({"ttl": 9, "margin": 0}, "above 0"),
        ({"ttl": 9, "margin": -1.0}, "above 0"),
        ({"ttl": 6, "call_timeout": 2.0}, "shorter than the leader renew interval"),
    ],
)
def test_inconsistent_timings_are_refused_at_start_up(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ElectionTiming(**kwargs)


def test_deadline_counts_from_the_send_time_and_never_trusts_a_longer_grant() -> None:
    timing = ElectionTiming(9, margin=1.0)
    assert timing.deadline(100.0) == pytest.approx(108.0)
    assert timing.deadline(100.0, granted_ttl=9) == pytest.approx(108.0)
    assert timing.deadline(100.0, granted_ttl=30) == pytest.approx(108.0)  # etcd rounded up
    assert timing.deadline(100.0, granted_ttl=5) == pytest.approx(104.0)  # believe a shorter one


def test_term_is_held_strictly_before_its_deadline_with_an_injected_clock() -> None:
    clock = FakeClock(50.0)
    timing = ElectionTiming(10)
    term = Term(fence=7, lease_id=0xABC, deadline=timing.deadline(clock()))
    assert term.held(clock())
    clock.now = 50.0 + 10 - 2.0 - 1e-6
    assert term.held(clock())
    clock.now = 58.0
    assert not term.held(clock())


def test_term_deadline_only_moves_forward() -> None:
    term = Term(fence=7, lease_id=1, deadline=20.0)
    term.extend(25.0)
    assert term.deadline == 25.0
    term.extend(22.0)  # a late answer to an older refresh
    assert term.deadline == 25.0


def test_record_bytes_accepts_records_and_raw_bytes() -> None:
    since = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    raw = record_bytes(LeaderRecord(id="c1", since=since, version="0.1.0", dashboard_address="10.0.0.1:8080"))
    assert json.loads(raw) == {
        "id": "c1",
        "since": "2024-05-01T12:00:00Z",
        "version": "0.1.0",
        "dashboard_address": "10.0.0.1:8080",
    }
    assert record_bytes(b"{}") == b"{}"
    with pytest.raises(TypeError, match="LeaderRecord or bytes"):
        record_bytes("c1")  # type: ignore[arg-type]


def _election(call_timeout: float, ttl: int) -> Election:
    # A store that is never called: nothing below reaches the network.
    store = EtcdStore(EtcdSettings(("http://127.0.0.1:9",), call_timeout=call_timeout))
    return Election(store, Keyspace("/unit"), "c1", ttl, lambda: b"{}", structlog.get_logger())


def test_election_checks_the_ttl_against_the_store_call_timeout() -> None:
    with pytest.raises(ValueError, match="call timeout"):
        _election(call_timeout=2.0, ttl=4)
    assert _election(call_timeout=1.0, ttl=4).timing.renew_interval == pytest.approx(4 / 3)


def test_a_new_election_is_not_leader_and_refuses_to_write_without_asking_etcd() -> None:
    election = _election(call_timeout=1.0, ttl=4)
    assert not election.is_leader and election.fence_revision is None
    with pytest.raises(NotLeader) as caught:
        election.fenced_txn([Put("/unit/x", b"1")])
    assert caught.value.reason == "standby"
    with pytest.raises(NotLeader):
        election.fence()
    assert election.key == "/unit/leader"
