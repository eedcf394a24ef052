"""The host's lease (agent/heartbeat.py) when etcd says the lease is gone: one path, whether the
renewal or a rewrite of the host record finds out, registers again on a new lease. And only
etcd says so: renewals failing for longer than the TTL (an etcd leader election on a busy
machine) keep the lease, which the new etcd leader has extended."""

from __future__ import annotations

import pytest

from tests.helpers import FakeClock, RecordingLog
from tfleet.agent.heartbeat import HostLease
from tfleet.agent.metrics import AgentMetrics
from tfleet.store import LeaseLost, StoreUnavailable

KEY = "/t/hosts/h1"
TTL = 6


class LeaseStore:
    """etcd's lease calls and puts, in memory; ``expire`` plays etcd dropping a lease."""

    def __init__(self) -> None:
        self.alive: set[int] = set()
        self.keys: dict[str, tuple[bytes, int | None]] = {}
        self.revision = 0
        self.grants = 0
        self.down = False  # grants fail
        self.electing = False  # renewals fail

    def grant_lease(self, ttl: int) -> int:
        if self.down:
            raise StoreUnavailable("etcd grant lease failed (fake): unreachable")
        self.grants += 1
        lease_id = 0x100 + self.grants
        self.alive.add(lease_id)
        return lease_id

    def refresh_lease(self, lease_id: int) -> int:
        if self.electing:
            raise StoreUnavailable(f"etcd refresh lease {lease_id:x} failed (fake): no leader")
        if lease_id not in self.alive:
            raise LeaseLost(f"etcd refresh lease {lease_id:x} failed (fake): the lease expired or was revoked")
        return 6

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        if lease is not None and lease not in self.alive:
            raise LeaseLost(f"etcd put {key!r} failed (fake): requested lease not found")
        self.revision += 1
        self.keys[key] = (value, lease)
        return self.revision

    def expire(self) -> None:
        self.keys = {k: (v, lease) for k, (v, lease) in self.keys.items() if lease not in self.alive}
        self.alive.clear()


@pytest.fixture
def world() -> tuple[LeaseStore, HostLease, RecordingLog, AgentMetrics, list[int]]:
    store, log, metrics, told = LeaseStore(), RecordingLog(), AgentMetrics(), []
    lease = HostLease(store, KEY, record=lambda: b'{"host": "h1"}', ttl=TTL, metrics=metrics, log=log, on_new_lease=told.append, clock=FakeClock())
    lease.renew()
    assert lease.lease_id is not None and store.keys[KEY][1] == lease.lease_id
    return store, lease, log, metrics, told


@pytest.mark.parametrize("call", ["renew", "rewrite"])
def test_a_lost_lease_is_replaced_by_a_new_one_at_once(world, call) -> None:
    store, lease, log, _, told = world
    first = lease.lease_id
    store.expire()
    getattr(lease, call)()
    assert lease.lease_id not in (None, first)
    assert store.keys[KEY] == (b'{"host": "h1"}', lease.lease_id)  # the record is back, on the new lease
    assert told == [first, lease.lease_id]  # the owner rewrites its status keys on it
    assert [(level, event, fields["lease"]) for level, event, fields in log.lines if event == "lease_lost"] == [("warning", "lease_lost", first)]


def test_registering_again_while_etcd_is_unreachable_is_retried_at_the_next_renewal(world) -> None:
    store, lease, log, metrics, told = world
    store.expire()
    store.down = True
    lease.renew()
    assert lease.lease_id is None and KEY not in store.keys
    assert metrics.registry.get_sample_value("tfleet_agent_lease_renew_failures_total") == 1.0
    assert "register_failed" in log.events("info")
    store.down = False
    lease.renew()
    assert lease.lease_id is not None and store.keys[KEY][1] == lease.lease_id and len(told) == 2


def _renew_while_down(store: LeaseStore, lease: HostLease, clock: FakeClock, seconds: float) -> None:
    """etcd answers nothing (electing a leader) for `seconds`; the agent renews every TTL/3."""
    store.electing = True
    for _ in range(round(seconds / (TTL / 3))):
        clock.now += TTL / 3
        lease.renew()
    store.electing = False


def test_renewals_failing_for_longer_than_the_ttl_keep_the_lease_until_etcd_answers(world) -> None:
    """A frozen etcd leader on a loaded machine: no renewal gets through for more than the
    TTL, yet the new etcd leader extended the lease (by TTL + an election timeout when it took
    over). The agent must not grant a new lease: it renews the same one when etcd is back."""
    store, lease, log, metrics, told = world
    first, clock = lease.lease_id, lease._clock
    assert isinstance(clock, FakeClock)
    _renew_while_down(store, lease, clock, TTL + TTL / 3)
    assert lease.lease_id == first
    assert not lease.registered_recently()  # /readyz says so meanwhile
    assert log.events("warning") == ["lease_unconfirmed"]  # once, not at every failed renewal
    clock.now += TTL / 3
    lease.renew()
    assert lease.lease_id == first and store.grants == 1 and told == [first]
    assert lease.registered_recently() and "lease_confirmed" in log.events("info")
    assert metrics.registry.get_sample_value("tfleet_agent_lease_grants_total") == 1.0
    assert metrics.registry.get_sample_value("tfleet_agent_lease_renew_failures_total") == 4.0


def test_a_lease_etcd_did_expire_meanwhile_is_replaced_at_the_first_answer(world) -> None:
    store, lease, log, _, told = world
    first, clock = lease.lease_id, lease._clock
    assert isinstance(clock, FakeClock)
    _renew_while_down(store, lease, clock, 3 * TTL)
    store.expire()
    lease.renew()  # the first call etcd answers says "gone": a new lease within that call
    assert lease.lease_id not in (None, first) and store.keys[KEY][1] == lease.lease_id
    assert told == [first, lease.lease_id] and lease.registered_recently()
