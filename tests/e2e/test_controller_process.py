"""`tfleet controller` as real processes: leader death, and a paused leader that wakes up."""

from __future__ import annotations

import json
import signal
import time

from tests.helpers import wait_until
from tests.integration.agent_harness import Fleet, start_agent
from tfleet import schema
from tfleet.etcd_local import free_port
from tfleet.procs import Daemon
from tfleet.schema import LeaderRecord
from tfleet.sim.fixtures import make_model

TTL = 4


def controller(tmp_path, etcd_url: str, prefix: str, cid: str, ttl: int = TTL) -> Daemon:
    args = [
        "controller",
        "--id",
        cid,
        "--etcd",
        etcd_url,
        "--prefix",
        prefix.rstrip("/"),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(free_port()),
        "--lease-ttl",
        str(ttl),
        "--etcd-timeout",
        "0.5",
        "--resync-interval",
        "1",
    ]
    return Daemon(cid, args, tmp_path / f"{cid}.log")


def leader_id(fleet: Fleet) -> str | None:
    kv = fleet.store.get(fleet.keyspace.leader())
    return schema.parse(LeaderRecord, kv.value, kv.key).id if kv else None


def test_leader_sigkill_standby_leads_within_ttl(tmp_path, etcd_server, store, prefix) -> None:
    fleet = Fleet(store, prefix)
    c1 = controller(tmp_path, etcd_server.client_url, prefix, "c1").start()
    try:
        wait_until(lambda: leader_id(fleet) == "c1", 20, message="c1 leads")
        c2 = controller(tmp_path, etcd_server.client_url, prefix, "c2").start()
        try:
            time.sleep(1.0)  # let c2 settle into standby (it must not steal leadership)
            assert leader_id(fleet) == "c1"
            c1.kill()
            killed = time.monotonic()
            wait_until(lambda: leader_id(fleet) == "c2", TTL + 3, message="c2 leads after c1 died")
            assert time.monotonic() - killed <= TTL + 3
        finally:
            c2.stop()
    finally:
        c1.stop()


def test_paused_leader_writes_nothing_after_its_lease(tmp_path, etcd_server, store, prefix, sim) -> None:
    fleet = Fleet(store, prefix)
    models = tmp_path / "models"
    make_model(models, "m", [1])
    make_model(models, "n", [1])
    agent = start_agent(
        host="h1", etcd_url=etcd_server.client_url, prefix=prefix, tfs_grpc=sim.grpc_address, tfs_rest=sim.rest_address, state_dir=tmp_path / "s"
    )
    c1 = controller(tmp_path, etcd_server.client_url, prefix, "c1").start()
    c2 = None
    try:
        wait_until(lambda: leader_id(fleet) == "c1", 20, message="c1 leads")
        fleet.store.put(fleet.keyspace.model("m"), json.dumps({"base_path": str(models / "m"), "replicas": 1}).encode())
        fleet.wait_available("h1", "m", {1}, timeout=30)

        c1.signal(signal.SIGSTOP)  # paused: it keeps believing it leads, and keeps its state
        # c2's long TTL keeps its leadership valid while it is paused below, so any write
        # in the observation window could only come from c1
        c2 = controller(tmp_path, etcd_server.client_url, prefix, "c2", ttl=30).start()
        wait_until(lambda: leader_id(fleet) == "c2", TTL + 10, message="c2 leads while c1 is paused")
        c2.signal(signal.SIGSTOP)  # now nobody may write: c2 is paused, c1's lease is gone

        # an operator change that a leader would act on
        fleet.store.put(fleet.keyspace.model("n"), json.dumps({"base_path": str(models / "n"), "replicas": 1}).encode())
        start = fleet.store.list_prefix(fleet.keyspace.assignments_prefix()).revision + 1
        events: list = []
        watch = fleet.store.watch_prefix(fleet.keyspace.assignments_prefix(), start, on_events=events.extend, on_reset=lambda s: None)
        try:
            c1.signal(signal.SIGCONT)
            # c1 wakes with a stale view: it must notice it no longer leads and write nothing
            wait_until(lambda: '"event": "leadership_lost"' in c1.log_path.read_text(), 15, message="c1 noticed it lost leadership")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # observe the write history for a while
                assert not events, f"the deposed leader wrote: {[e.key for e in events]}"
                time.sleep(0.1)
        finally:
            watch.cancel()
        c2.signal(signal.SIGCONT)
        fleet.wait_available("h1", "n", {1}, timeout=30)  # the legitimate leader acts
    finally:
        if c2 is not None:
            c2.signal(signal.SIGCONT)
            c2.stop()
        c1.signal(signal.SIGCONT)
        c1.stop()
        agent.stop()
