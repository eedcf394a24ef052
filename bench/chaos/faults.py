"""Fault injection: one method per fault kind (schedule.FAULT_KINDS), each injecting, holding
and recovering its fault; a fault that cannot be injected is reported and the soak goes on."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.chaos.fleet import Fleet, sim_state, wait_until
from bench.chaos.invariants import FaultRecord
from bench.chaos.schedule import HOST_FAULTS, JUNK_MODEL, Fault
from bench.chaos.workload import Writer


class Injector:
    """Runs one fault: inject, hold, recover; returns its record (host set for host faults)."""

    def __init__(self, fleet: Fleet, writer: Writer, stop: threading.Event, log: Callable[[str], None]) -> None:
        self.fleet, self.writer, self.stop, self.log = fleet, writer, stop, log

    def hold(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def run(self, fault: Fault) -> FaultRecord:
        host = self.fleet.hosts[fault.target % len(self.fleet.hosts)] if fault.kind in HOST_FAULTS else None
        record = FaultRecord(fault.kind, host, time.time())
        try:
            record.detail = getattr(self, fault.kind)(fault, host)
        except Exception as exc:  # noqa: BLE001 (a fault that cannot be injected or recovered is reported, the soak goes on)
            record.error = f"{type(exc).__name__}: {exc}"
        record.end = time.time()
        return record

    def etcd_kill_leader(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        index = cluster.leader(timeout=30)
        cluster.kill(index)
        self.hold(fault.hold)
        cluster.start_member(index, timeout=60)
        return f"killed member {index} (leader), {fault.hold:g} s down"

    def etcd_freeze_member(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        in_use = self.writer.store.current_endpoint
        index = next((i for i, url in enumerate(cluster.client_urls) if url in in_use), 0)
        cluster.pause(index)
        try:
            self.hold(fault.hold)
        finally:
            cluster.resume(index)
        return f"froze member {index} (in use) for {fault.hold:g} s"

    def etcd_rolling_restart(self, fault: Fault, host: None) -> str:
        cluster = self.fleet.cluster
        for index in range(len(cluster.members)):
            cluster.restart(index, timeout=60)
            self.hold(fault.hold)
        return f"restarted members one by one, {fault.hold:g} s apart"

    def tfs_restart(self, fault: Fault, host: str) -> str:
        sim = self.fleet.sims[host]
        sim.kill()
        self.hold(fault.hold)
        sim.start()
        wait_until(lambda: sim_state(self.fleet.rest[host]) is not None, 60, f"the restarted simulator of {host}")
        return f"restarted the simulator of {host} empty after {fault.hold:g} s"

    def tfs_hang(self, fault: Fault, host: str) -> str:
        sim = self.fleet.sims[host]
        sim.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            sim.signal(signal.SIGCONT)
        return f"froze the simulator of {host} for {fault.hold:g} s"

    def tfs_slow_reload(self, fault: Fault, host: None) -> str:
        from tfleet.sim.fixtures import write_version

        model = self.fleet.models[fault.target % len(self.fleet.models)]
        for version in self.fleet.versions:
            write_version(self.fleet.models_dir / model, version, load_seconds=fault.load_seconds, memory_mb=64)
        try:
            outcomes = [self.writer.change(model, "replicas"), self.writer.change(model, "version")]
            self.hold(fault.hold)
        finally:
            for version in self.fleet.versions:
                write_version(self.fleet.models_dir / model, version, memory_mb=64)
        return f"{model} loads in {fault.load_seconds:g} s for {fault.hold:g} s; moved it (writes: {', '.join(outcomes)})"

    def _controller(self) -> tuple[str, Any]:
        cid = self.fleet.leader_controller() or "c1"
        return cid, self.fleet.controllers.get(cid, self.fleet.controllers["c1"])

    def controller_kill(self, fault: Fault, host: None) -> str:
        cid, daemon = self._controller()
        daemon.kill()
        self.hold(fault.hold)
        daemon.start()
        return f"killed controller {cid}, restarted after {fault.hold:g} s"

    def controller_freeze(self, fault: Fault, host: None) -> str:
        cid, daemon = self._controller()
        daemon.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            daemon.signal(signal.SIGCONT)
        return f"froze controller {cid} for {fault.hold:g} s"

    def agent_freeze(self, fault: Fault, host: str) -> str:
        agent = self.fleet.agents[host]
        agent.signal(signal.SIGSTOP)
        try:
            self.hold(fault.hold)
        finally:
            agent.signal(signal.SIGCONT)
        return f"froze the agent of {host} for {fault.hold:g} s"

    GARBAGE = (b"\xff\xfe\x00 not utf-8", b"{not json", b"[1, 2, 3]", b'{"base_path": 5, "replicas": "two"}', b"null", b'{"cordoned": "yes"}')

    def bad_values(self, fault: Fault, host: None) -> str:
        ks, store = self.fleet.keyspace, self.writer.store
        rng = random.Random(fault.target)
        victim = self.fleet.hosts[fault.target % len(self.fleet.hosts)]
        junk_intent = rng.choice([*self.GARBAGE, json.dumps({"base_path": "/nonexistent/chaos-junk", "replicas": 2}).encode()])
        keys = {
            ks.model(JUNK_MODEL): junk_intent,
            ks.hostctl(victim): rng.choice(self.GARBAGE),
            ks.assignment(victim, JUNK_MODEL): rng.choice(self.GARBAGE),
        }
        written = []
        try:
            for key, value in keys.items():
                try:
                    store.put(key, value)
                    written.append(key)
                except Exception:  # noqa: BLE001 (etcd may be recovering from the previous fault)
                    pass
            self.hold(fault.hold)
        finally:
            for key in keys:
                wait_until(lambda k=key: store.delete(k) or True, 30, f"delete {key}")
        return f"garbage in {', '.join(written)} for {fault.hold:g} s"
