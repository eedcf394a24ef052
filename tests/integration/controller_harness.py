"""A small fleet in one process: simulators, agents, controllers, over real etcd."""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.helpers import wait_until
from tests.integration.agent_harness import Fleet, RunningAgent, endpoints_of, start_agent, stop_running
from tfleet import schema
from tfleet.controller.app import Controller
from tfleet.controller.settings import ControllerSettings
from tfleet.schema import ModelStatusReport
from tfleet.sim.server import SimServer
from tfleet.store import EtcdSettings


@dataclass
class RunningController:
    controller: Controller
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.controller.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "controller did not stop in time"

    @property
    def is_leader(self) -> bool:
        return self.controller.election.is_leader


def start_controller(controller_id: str, etcd_url: str, prefix: str, lease_ttl: int = 4, **overrides) -> RunningController:
    settings = ControllerSettings(
        id=controller_id,
        etcd=EtcdSettings(endpoints=endpoints_of(etcd_url), call_timeout=overrides.pop("call_timeout", 0.5)),
        http_port=0,
        http_host="127.0.0.1",
        prefix=prefix.rstrip("/"),
        lease_ttl=lease_ttl,
        **{"resync_interval": 1.0, "coalesce_window": 0.05, **overrides},
    )
    controller = Controller(settings)
    thread = threading.Thread(target=controller.run, name=f"controller-{controller_id}", daemon=True)
    thread.start()
    return RunningController(controller, thread)


@dataclass
class ControlledFleet(Fleet):
    """A Fleet with helpers for intents and the controller's model status."""

    agents: dict[str, RunningAgent] = field(default_factory=dict)
    sims: dict[str, SimServer] = field(default_factory=dict)

    def __init__(self, store, prefix):  # dataclass fields are set by hand: Fleet has its own __init__
        super().__init__(store, prefix)
        self.agents = {}
        self.sims = {}

    def declare(self, model: str, intent: dict | str) -> int:
        raw = intent if isinstance(intent, str) else json.dumps(intent)
        return self.store.put(self.keyspace.model(model), raw.encode())

    def model_status(self, model: str) -> ModelStatusReport | None:
        kv = self.store.get(self.keyspace.modelstatus(model))
        return schema.parse(ModelStatusReport, kv.value, kv.key) if kv else None

    def replica_hosts(self, model: str) -> set[str]:
        prefix = self.keyspace.assignments_prefix()
        hosts = set()
        for kv in self.store.list_prefix(prefix).items:
            host, name = self.keyspace.parse_host_model(kv.key, "assignments")
            if name == model:
                hosts.add(host)
        return hosts

    def available_hosts(self, model: str, version: int) -> set[str]:
        hosts = set()
        for host in self.replica_hosts(model):
            status = self.status(host, model)
            if status is not None and status.versions.get(str(version)) is not None and status.versions[str(version)].state == "AVAILABLE":
                hosts.add(host)
        return hosts

    def wait_ready(self, model: str, version: int, replicas: int, timeout: float = 30.0) -> set[str]:
        return wait_until(
            lambda: (hosts := self.available_hosts(model, version)) and len(hosts) >= replicas and hosts,
            timeout,
            message=f"{replicas} replicas of {model} v{version} AVAILABLE (have {self.available_hosts(model, version)})",
        )


def add_host(
    fleet: ControlledFleet,
    name: str,
    sim_factory,
    etcd_url: str,
    prefix: str,
    tmp_path: pathlib.Path,
    labels: dict | None = None,
    memory_mb: int = 1024,
    **agent_overrides,
) -> RunningAgent:
    sim = sim_factory()
    agent = start_agent(
        host=name,
        etcd_url=etcd_url,
        prefix=prefix,
        tfs_grpc=sim.grpc_address,
        tfs_rest=sim.rest_address,
        state_dir=tmp_path / f"state-{name}",
        labels=labels or {},
        memory_mb=memory_mb,
        **agent_overrides,
    )
    fleet.sims[name] = sim
    fleet.agents[name] = agent
    return agent


def running_fleet(
    store, prefix: str, etcd_url: str, sim_factory, tmp_path: pathlib.Path, agent_defaults: dict[str, object] | None = None
) -> Iterator[ControlledFleet]:
    """Body of a ``fleet`` fixture: a ControlledFleet whose ``add(name)`` starts a host (its
    simulator and an agent with the settings agent_defaults, then add's) and
    ``start_controller(cid)`` a controller; everything started is stopped when the fixture
    ends (a simulator a test froze is thawed first, so that its agent stops at once)."""
    fleet = ControlledFleet(store, prefix)
    fleet.etcd_url = etcd_url
    fleet.prefix_text = prefix
    fleet.add = lambda name, **kw: add_host(fleet, name, sim_factory, etcd_url, prefix, tmp_path, **{**(agent_defaults or {}), **kw})
    controllers: list[RunningController] = []
    fleet.start_controller = lambda cid="c1", **kw: controllers.append(start_controller(cid, etcd_url, prefix, **kw)) or controllers[-1]
    yield fleet
    for sim in fleet.sims.values():
        sim.faults.thaw()
    stop_running(*controllers, *fleet.agents.values())
