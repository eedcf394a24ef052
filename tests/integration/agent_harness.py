"""Run real agents in-process against real etcd and the TF Serving simulator.

An in-process agent gives tests its metrics and lets them stop it; the process-level
behaviours (SIGKILL, SIGTERM, restart) are covered by tests/e2e with `tfleet agent`.
"""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from tests.helpers import wait_until
from tfleet import schema
from tfleet.agent.app import Agent
from tfleet.agent.settings import AgentSettings
from tfleet.keyspace import Keyspace
from tfleet.schema import ModelStatus
from tfleet.sim.server import SimServer
from tfleet.store import EtcdSettings, EtcdStore

# Short but safe timings for tests on 2 busy cores: renew every 4/3 s with 0.5 s call deadlines.
TEST_TIMINGS = {
    "lease_ttl": 4,
    "resync_interval": 1.0,
    "poll_interval": 0.05,
    "reload_timeout": 3.0,
    "status_timeout": 1.0,
    "coalesce_window": 0.02,
}


def endpoints_of(etcd_url: str | tuple[str, ...]) -> tuple[str, ...]:
    """One URL, or a cluster's member URLs (LocalEtcdCluster.client_urls)."""
    return (etcd_url,) if isinstance(etcd_url, str) else tuple(etcd_url)


class Running(Protocol):
    """A daemon run in a thread of the test (RunningAgent, RunningController)."""

    @property
    def thread(self) -> threading.Thread: ...

    def stop(self) -> None: ...


def stop_running(*daemons: Running) -> None:
    """A fixture's teardown: stop, in the order given, every daemon whose thread still runs."""
    for daemon in daemons:
        if daemon.thread.is_alive():
            daemon.stop()


@dataclass
class RunningAgent:
    agent: Agent
    thread: threading.Thread

    @property
    def metrics(self):
        return self.agent.metrics

    def stop(self, timeout: float = 10.0) -> None:
        self.agent.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "agent did not stop in time"

    def counter(self, name: str, **labels: str) -> float:
        value = self.agent.metrics.registry.get_sample_value(name, labels or None)
        return value or 0.0


class Fleet:
    """Helpers over one keyspace prefix: put assignments, read and wait for status."""

    def __init__(self, store: EtcdStore, prefix: str) -> None:
        self.store = store
        self.keyspace = Keyspace(prefix.rstrip("/"))

    def assign(self, host: str, model: str, value: dict | str | bytes) -> int:
        raw = value if isinstance(value, bytes) else (value if isinstance(value, str) else json.dumps(value)).encode()
        return self.store.put(self.keyspace.assignment(host, model), raw)

    def unassign(self, host: str, model: str) -> None:
        self.store.delete(self.keyspace.assignment(host, model))

    def status(self, host: str, model: str) -> ModelStatus | None:
        kv = self.store.get(self.keyspace.status(host, model))
        return schema.parse(ModelStatus, kv.value, kv.key) if kv else None

    def wait_status(self, host: str, model: str, predicate: Callable[[ModelStatus], bool], timeout: float = 20.0, what: str = "") -> ModelStatus:
        seen: list[ModelStatus | None] = [None]

        def check() -> bool:
            seen[0] = self.status(host, model)
            return seen[0] is not None and predicate(seen[0])

        wait_until(check, timeout, message=f"status of {host}/{model} {what}; last seen: {seen[0]}")
        assert seen[0] is not None
        return seen[0]

    def wait_available(self, host: str, model: str, versions: set[int], revision: int | None = None, timeout: float = 20.0) -> ModelStatus:
        def ok(status: ModelStatus) -> bool:
            states = {int(v): r.state for v, r in status.versions.items()}
            return (
                (revision is None or status.assignment_revision == revision)
                and status.error is None
                and set(states) == versions
                and all(s == "AVAILABLE" for s in states.values())
            )

        return self.wait_status(host, model, ok, timeout, what=f"to show versions {sorted(versions)} AVAILABLE")


def start_agent(
    *,
    host: str,
    etcd_url: str | tuple[str, ...],
    prefix: str,
    tfs_grpc: str,
    tfs_rest: str,
    state_dir: pathlib.Path,
    call_timeout: float = 0.5,
    tfs: object | None = None,
    **overrides,
) -> RunningAgent:
    """etcd_url: one URL, or a tuple of a cluster's member URLs; tfs: the agent's TF Serving
    client (default: a real one for tfs_grpc)."""
    etcd = EtcdSettings(endpoints=endpoints_of(etcd_url), call_timeout=call_timeout)
    settings = AgentSettings(
        host=host,
        etcd=etcd,
        tfs_grpc=tfs_grpc,
        tfs_rest=tfs_rest,
        http_host="127.0.0.1",
        http_port=0,
        prefix=prefix.rstrip("/"),
        state_dir=state_dir,
        **{"memory_mb": 1024, **TEST_TIMINGS, **overrides},
    )
    agent = Agent(settings, tfs=tfs)
    thread = threading.Thread(target=agent.run, name=f"agent-{host}", daemon=True)
    thread.start()
    return RunningAgent(agent, thread)


def started_agents(tmp_path: pathlib.Path, etcd_url: str, prefix: str, sim: SimServer, **defaults: object) -> Iterator[Callable[..., RunningAgent]]:
    """Body of an ``agents`` fixture: ``start(host="h1", server=None, **overrides)`` runs an
    agent for the simulator ``server`` (default: sim), its state in tmp_path/state-<host>,
    with the settings ``defaults`` then ``overrides``; every agent started is stopped when
    the fixture ends."""
    started: list[RunningAgent] = []

    def start(host: str = "h1", server: SimServer | None = None, **overrides: object) -> RunningAgent:
        served = server or sim
        running = start_agent(
            host=host,
            etcd_url=etcd_url,
            prefix=prefix,
            tfs_grpc=served.grpc_address,
            tfs_rest=served.rest_address,
            state_dir=tmp_path / f"state-{host}",
            **{**defaults, **overrides},
        )
        started.append(running)
        return running

    yield start
    stop_running(*started)
