"""Leader election and fenced writes against a real etcd (never a mock).

Every candidate has its own EtcdStore (its own client and channel), as separate controller
processes would. A "paused" leader is modelled by a candidate whose renew() nobody calls,
whose watch never started and whose clock is frozen: exactly the state of a process that
checked "am I leader?" and was then stopped (GC, SIGSTOP, VM migration) until after its
lease expired. Such a process must not be able to write, and the history recorded by a
watch shows that it did not.

Timings: TTL 3 s (renew every 1 s, local deadline 2.4 s after the last renewal), etcd calls
time out after 0.8 s; waits use generous deadlines, never fixed sleeps.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import structlog

from tests.helpers import FakeClock, wait_until
from tfleet.controller.election import LOST_DEADLINE, LOST_FENCE, LOST_LEASE, Election, NotLeader
from tfleet.etcd_local import LocalEtcd
from tfleet.keyspace import Keyspace
from tfleet.schema import LeaderRecord, utc_now
from tfleet.store import (
    Compare,
    EtcdSettings,
    EtcdStore,
    Put,
    Snapshot,
    StoreError,
    WatchEvent,
)

TTL = 3
CALL_TIMEOUT = 0.8  # below the renew interval (TTL/3), as the election requires
WAIT = 15.0


@dataclass
class Candidate:
    name: str
    election: Election
    store: EtcdStore
    elected: list[int] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class Ticker:
    """The owner's scheduler: renew() every TTL/3 with jitter; records anything that escapes."""

    def __init__(self, election: Election) -> None:
        self.election = election
        self.escaped: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ticker:{election.candidate_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval, jitter = self.election.timing.renew_interval, self.election.timing.renew_jitter
        while not self._stop.wait(interval + random.uniform(-jitter, jitter)):
            try:
                self.election.renew()
            except BaseException as exc:  # renew() must never raise
                self.escaped.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class History:
    """Every change under the test prefix, in revision order (etcd's own record of writes)."""

    def __init__(self, store: EtcdStore, prefix: str) -> None:
        self.events: list[WatchEvent] = []
        self._lock = threading.Lock()
        start = store.list_prefix(prefix).revision + 1
        self.watch = store.watch_prefix(prefix, start, self._on_events, self._on_reset)

    def _on_events(self, events: list[WatchEvent]) -> None:
        with self._lock:
            self.events.extend(events)

    def _on_reset(self, snapshot: Snapshot) -> None:
        raise AssertionError(f"history compacted away at revision {snapshot.revision}")

    def snapshot(self) -> list[WatchEvent]:
        with self._lock:
            return list(self.events)

    def saw(self, key: str, value: bytes) -> bool:
        return any(e.key == key and e.value == value for e in self.snapshot())


@pytest.fixture
def candidates(prefix: str) -> Iterator[Callable[..., Candidate]]:
    """make(name, etcd_url, clock=...) -> a Candidate; every one resigns at teardown."""
    made: list[Candidate] = []
    keyspace = Keyspace(prefix.rstrip("/"))

    def make(name: str, url: str, clock: Callable[[], float] = time.monotonic) -> Candidate:
        store = EtcdStore(EtcdSettings((url,), call_timeout=CALL_TIMEOUT))
        elected: list[int] = []
        lost: list[str] = []
        election = Election(
            store,
            keyspace,
            name,
            TTL,
            lambda: LeaderRecord(id=name, since=utc_now(), version="test"),
            structlog.get_logger("test_election"),
            clock=clock,
            on_elected=lambda: elected.append(election.fence_revision),
            on_lost=lambda: lost.append(election.last_lost_reason),
        )
        candidate = Candidate(name, election, store, elected, lost)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        candidate.election.resign()
        candidate.store.close()


def report(name: str, seconds: float) -> None:
    print(f"MEASURED {name}: {seconds:.3f} s")


def test_two_candidates_exactly_one_wins(candidates, etcd_server: LocalEtcd) -> None:
    a = candidates("ctl-a", etcd_server.client_url)
    b = candidates("ctl-b", etcd_server.client_url)
    for _ in range(3):
        barrier = threading.Barrier(2)
        results: dict[str, bool] = {}

        def run(candidate: Candidate, barrier: threading.Barrier, results: dict[str, bool]) -> None:
            barrier.wait()
            results[candidate.name] = candidate.election.campaign()

        threads = [threading.Thread(target=run, args=(c, barrier, results)) for c in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert sorted(results.values()) == [False, True], results
        winner, loser = (a, b) if results["ctl-a"] else (b, a)
        assert winner.election.is_leader and not loser.election.is_leader
        assert not loser.election.campaign()  # the key exists: no second winner
        record = loser.election.leader()
        assert record is not None and record.id == winner.name
        kv = winner.store.get(winner.election.key)
        assert kv is not None and kv.create_revision == winner.election.fence_revision
        assert kv.lease == winner.election.lease_id
        winner.election.resign()
        assert winner.election.leader() is None
        # start the next round with two fresh candidates on the same key
        a = candidates("ctl-a", etcd_server.client_url)
        b = candidates("ctl-b", etcd_server.client_url)


def test_fenced_write_for_the_leader_not_for_a_standby(candidates, etcd_server, store, prefix) -> None:
    a = candidates("ctl-a", etcd_server.client_url)
    b = candidates("ctl-b", etcd_server.client_url)
    assert a.election.campaign() and not b.election.campaign()
    target = f"{prefix}models/m1"

    assert a.election.fenced_txn([Put(target, b"v1")])
    assert store.get(target).value == b"v1"
    # the caller's own precondition fails, the fence holds: False, leadership kept
    assert not a.election.fenced_txn([Put(target, b"v2")], extra_compares=[Compare(target, "version", "==", 0)])
    assert a.election.is_leader and a.lost == []
    assert a.election.fenced_txn([Put(target, b"v2")], extra_compares=[Compare(target, "value", "==", b"v1")])
    assert store.get(target).value == b"v2"

    with pytest.raises(NotLeader) as caught:
        b.election.fenced_txn([Put(target, b"from-b")])
    assert caught.value.reason == "standby"
    assert store.get(target).value == b"v2"
    assert a.election.fence() == [Compare(a.election.key, "create", "==", a.election.fence_revision)]


def test_paused_leader_is_fenced_out_after_a_standby_takes_over(candidates, etcd_server, store, prefix) -> None:
    history = History(store, prefix)
    frozen = FakeClock(time.monotonic())
    a = candidates("ctl-a", etcd_server.client_url, clock=frozen)
    b = candidates("ctl-b", etcd_server.client_url)
    target = f"{prefix}models/m1"
    leader_key = a.election.key

    granted_at = time.monotonic()
    assert a.election.campaign()
    old_fence = a.election.fence_revision
    assert a.election.fenced_txn([Put(target, b"A-1")])
    # b is a running standby: watch plus the periodic safety net; a is paused from now on
    b.election.start()
    ticker = Ticker(b.election)
    try:
        wait_until(lambda: b.election.is_leader, TTL + 5, message="standby took over after the lease expired")
        takeover = time.monotonic() - granted_at
        report("takeover after the leader stopped renewing (lease expiry, TTL 3 s)", takeover)
        assert TTL - 0.5 <= takeover <= TTL + 2.0
        assert b.election.fence_revision != old_fence
        assert b.election.fenced_txn([Put(target, b"B-1")])

        # a wakes up believing it still leads (its check passed before the pause) ...
        assert a.election.is_leader
        # ... and its write, however it is guarded, fails inside etcd
        with pytest.raises(NotLeader) as caught:
            a.election.fenced_txn([Put(target, b"A-2"), Put(f"{prefix}models/m2", b"A-2")], extra_compares=[Compare(target, "mod", ">", 0)])
        assert caught.value.reason == LOST_FENCE
        assert not a.election.is_leader and a.lost == [LOST_FENCE]
        with pytest.raises(NotLeader):  # and it no longer even tries
            a.election.fenced_txn([Put(target, b"A-3")])
        assert a.lost == [LOST_FENCE]  # on_lost fired once
        assert b.election.is_leader and b.lost == []

        # etcd's history: nothing of a's landed after b's election
        assert b.election.fenced_txn([Put(f"{prefix}sentinel", b"end")])
        wait_until(lambda: history.saw(f"{prefix}sentinel", b"end"), WAIT, message="history caught up")
    finally:
        ticker.stop()
    assert ticker.escaped == []
    events = history.snapshot()
    assert not any(e.value.startswith(b"A-2") or e.value == b"A-3" for e in events)
    assert [e.value for e in events if e.key == target] == [b"A-1", b"B-1"]
    assert store.get(target).value == b"B-1" and store.get(f"{prefix}models/m2") is None
    leader_events = [(e.kind, e.mod_revision) for e in events if e.key == leader_key]
    assert leader_events[:3] == [
        ("put", old_fence),
        ("delete", leader_events[1][1]),
        ("put", b.election.fence_revision),
    ]
    b_elected_at = b.election.fence_revision
    assert all(e.value.startswith(b"B") or e.key == leader_key or e.key.endswith("sentinel") for e in events if e.mod_revision >= b_elected_at)


def test_renew_after_lease_loss_ends_leadership_once(candidates, etcd_server, store) -> None:
    a = candidates("ctl-a", etcd_server.client_url, clock=FakeClock(time.monotonic()))
    assert a.election.campaign()
    first_fence = a.election.fence_revision
    store.revoke_lease(a.election.lease_id)  # what etcd does when the lease expires
    assert store.get(a.election.key) is None
    assert a.election.is_leader  # not known yet: nothing told it

    a.election.renew()
    assert not a.election.is_leader and a.lost == [LOST_LEASE]
    a.election.renew()  # a standby again: campaigns, and wins a new term with a new fence
    assert a.election.is_leader and a.election.fence_revision != first_fence
    assert a.lost == [LOST_LEASE] and a.elected == [first_fence, a.election.fence_revision]
    assert (a.election.elections_won, a.election.leadership_lost) == (2, 1)


def test_local_deadline_stops_the_leader_at_once_and_renew_releases_the_key(candidates, etcd_server) -> None:
    clock = FakeClock(time.monotonic())
    a = candidates("ctl-a", etcd_server.client_url, clock=clock)
    b = candidates("ctl-b", etcd_server.client_url)
    assert a.election.campaign()
    b.election.start()
    clock.now += TTL - a.election.timing.margin - 0.01
    assert a.election.is_leader
    clock.now += 0.02  # past the deadline: no etcd call is needed to stop acting
    assert not a.election.is_leader and a.lost == [LOST_DEADLINE]
    with pytest.raises(NotLeader):
        a.election.fenced_txn([Put(f"{a.election.key}-x", b"1")])
    assert a.election.leader().id == "ctl-a"  # etcd still holds a's key on a live lease
    started = time.monotonic()
    a.election.renew()  # revokes the stale lease: the key goes now, not after the TTL
    wait_until(lambda: b.election.is_leader, WAIT, message="b took over after a released its lease")
    report("takeover after a leader gave up on its local deadline (lease revoked)", time.monotonic() - started)
    assert a.lost == [LOST_DEADLINE] and not a.election.is_leader


def test_resign_hands_over_to_a_watching_standby_within_a_second(candidates, etcd_server) -> None:
    a = candidates("ctl-a", etcd_server.client_url)
    b = candidates("ctl-b", etcd_server.client_url)
    a.election.start()
    b.election.start()
    assert a.election.is_leader and not b.election.is_leader
    started = time.monotonic()
    a.election.resign()
    assert not a.election.is_leader
    wait_until(lambda: b.election.is_leader, WAIT, message="b took over after a resigned")
    handover = time.monotonic() - started
    report("takeover after resign (watch-driven)", handover)
    assert handover < 1.5
    assert b.election.leader().id == "ctl-b"
    assert a.lost == []  # resigning is not losing
    a.election.renew()  # after resign: nothing, not even a campaign
    assert not a.election.campaign() and not a.election.is_leader


# A controller process: leads, renews every TTL/3, until killed.
_LEADER_PROCESS = """
import sys, time, structlog
from tfleet.controller.election import Election
from tfleet.keyspace import Keyspace
from tfleet.store import EtcdSettings, EtcdStore
structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
store = EtcdStore(EtcdSettings((sys.argv[1],), call_timeout=float(sys.argv[3])))
record = b'{"id": "ctl-proc", "since": "2024-01-01T00:00:00Z", "version": "test"}'
election = Election(store, Keyspace(sys.argv[2]), "ctl-proc", int(sys.argv[4]), lambda: record,
                    structlog.get_logger())
election.start()
while True:
    time.sleep(election.timing.renew_interval)
    election.renew()
"""


def test_sigkilled_leader_process_is_replaced_within_the_ttl(candidates, etcd_server, prefix) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _LEADER_PROCESS, etcd_server.client_url, prefix.rstrip("/"), str(CALL_TIMEOUT), str(TTL)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b = candidates("ctl-b", etcd_server.client_url)
    ticker: Ticker | None = None
    try:
        wait_until(lambda: _leader_id(b) == "ctl-proc", 30, interval=0.1, ignore=(StoreError,), message="the controller process leads")
        b.election.start()
        ticker = Ticker(b.election)
        assert not b.election.is_leader
        time.sleep(TTL / 3 + 0.2)  # the process renews at least once more, as a live leader does
        process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        process.wait(10)
        wait_until(lambda: b.election.is_leader, TTL + 5, message="b took over from the killed process")
        takeover = time.monotonic() - killed_at
        report("takeover after SIGKILL of the leader process (TTL 3 s)", takeover)
        assert takeover <= TTL + 2.0
        assert _leader_id(b) == "ctl-b"
    finally:
        if ticker is not None:
            ticker.stop()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert ticker.escaped == []


def _leader_id(candidate: Candidate) -> str | None:
    record = candidate.election.leader()
    return None if record is None else record.id


class LeaderSampler:
    """Samples every candidate's is_leader; records instants where two claimed to lead."""

    def __init__(self, elections: list[Election]) -> None:
        self.elections = elections
        self.double: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            before = time.monotonic()
            leaders = sum(e.is_leader for e in self.elections)
            if leaders > 1 and time.monotonic() - before < 0.1:  # one instant, not a preempted read
                self.double.append(before)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _one_leader(candidates_: list[Candidate]) -> Candidate | None:
    leaders = [c for c in candidates_ if c.election.is_leader]
    if len(leaders) != 1:
        return None
    record = leaders[0].election.leader()
    if record is None or record.id != leaders[0].name:
        return None
    return leaders[0]


def test_etcd_restart_and_outage_end_or_keep_leadership_cleanly(candidates, etcd_factory, prefix) -> None:
    server = etcd_factory()
    group = [candidates("ctl-a", server.client_url), candidates("ctl-b", server.client_url)]
    for c in group:
        c.election.start()
    tickers = [Ticker(c.election) for c in group]
    sampler = LeaderSampler([c.election for c in group])
    target = f"{prefix}models/m1"
    try:
        first = wait_until(lambda: _one_leader(group), WAIT, ignore=(StoreError,))

        # a quick restart: the leader keeps its term or loses it; either way cleanly
        server.restart()
        leader = wait_until(lambda: _one_leader(group), WAIT, ignore=(StoreError,), message="one leader after restart")
        wait_until(lambda: leader.election.fenced_txn([Put(target, b"after-restart")]), WAIT, ignore=(StoreError,), message="the leader writes again")
        print(f"restart: leader before {first.name}, after {leader.name}, lost {[c.lost for c in group]}")

        # an outage longer than the local deadline: the leader stops acting without etcd
        server.stop()
        down_at = time.monotonic()
        wait_until(lambda: not any(c.election.is_leader for c in group), WAIT, message="leadership ended in the outage")
        report("leader stopped acting after etcd went away", time.monotonic() - down_at)
        assert leader.lost[-1] == LOST_DEADLINE
        server.start()
        back_at = time.monotonic()
        again = wait_until(lambda: _one_leader(group), WAIT, ignore=(StoreError,), message="a leader after the outage")
        report("a leader again after etcd returned", time.monotonic() - back_at)
        wait_until(lambda: again.election.fenced_txn([Put(target, b"after-outage")]), WAIT, ignore=(StoreError,), message="the new leader writes")
    finally:
        sampler.stop()
        for ticker in tickers:
            ticker.stop()
    leading = {c.name: c.election.is_leader for c in group}
    for c in group:
        c.election.resign()  # while etcd still runs (the fixture would do it after etcd stopped)
    assert [t.escaped for t in tickers] == [[], []]
    assert sampler.double == []
    for c in group:
        # every term ended exactly once, except the one still running
        assert len(c.lost) == len(c.elected) - leading[c.name], (c.name, c.elected, c.lost)
