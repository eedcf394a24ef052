"""The fleet under test, every part a real process: a 3-member etcd cluster, per host one
simulator and one agent, two controllers; and how to ask a simulator what it serves."""

from __future__ import annotations

import pathlib
import re
import signal
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.chaos.settings import Settings

VERSIONS = (1, 2, 3, 4)  # the versions an "any" writer picks from
FORWARD_VERSIONS = 64  # version directories per model for a "forward" writer


class Fleet:
    """The processes and their handles: etcd cluster, simulators, agents, controllers."""

    def __init__(self, settings: Settings, root: pathlib.Path) -> None:
        from tfleet.etcd_local import LocalEtcdCluster, free_port
        from tfleet.keyspace import Keyspace
        from tfleet.procs import Daemon
        from tfleet.sim.fixtures import make_model
        from tfleet.store import EtcdSettings, EtcdStore

        self.settings = settings
        self.root = root
        self.logs = root / "logs"
        self.models_dir = root / "models"
        self.keyspace = Keyspace()
        self.hosts = [f"h{i + 1}" for i in range(settings.hosts)]
        self.models = [f"m{i + 1}" for i in range(settings.models)]
        self.versions = tuple(range(1, FORWARD_VERSIONS + 1)) if settings.writer_mode == "forward" else VERSIONS
        for model in self.models:
            make_model(self.models_dir, model, self.versions, memory_mb=64)
        self.cluster = LocalEtcdCluster(root / "etcd", 3, name="chaos")
        self.endpoints = ",".join(self.cluster.client_urls)
        ttl, timeout = settings.lease_ttl, settings.etcd_timeout
        self.rest: dict[str, str] = {}
        self.sims: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}
        for host in self.hosts:
            grpc, rest = free_port(), free_port()
            self.rest[host] = f"127.0.0.1:{rest}"
            self.sims[host] = Daemon(
                f"tfs-{host}",
                [
                    "tfs-sim",
                    "--grpc-port",
                    str(grpc),
                    "--rest-port",
                    str(rest),
                    "--file-system-poll-wait-seconds",
                    "0.2",
                    "--load-retry-interval-seconds",
                    "0.5",
                    "--max-load-retries",
                    "2",
                ],
                self.logs / f"tfs-{host}.log",
            )
            self.agents[host] = Daemon(
                f"agent-{host}",
                [
                    "agent",
                    "--host",
                    host,
                    "--etcd",
                    self.endpoints,
                    "--tfs-grpc",
                    f"127.0.0.1:{grpc}",
                    "--tfs-rest",
                    f"127.0.0.1:{rest}",
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    "0",  # ephemeral: a port picked ahead could be taken by the time the daemon starts
                    "--lease-ttl",
                    str(ttl),
                    "--etcd-timeout",
                    f"{timeout:g}",
                    "--reload-timeout",
                    f"{settings.reload_timeout:g}",
                    "--status-timeout",
                    f"{min(2.0, ttl / 3):g}",
                    "--resync-interval",
                    "5",
                    "--state-dir",
                    str(root / "state" / host),
                    "--memory-mb",
                    "4096",
                    "--log-level",
                    "info",
                ],
                self.logs / f"agent-{host}.log",
            )
        self.controllers = {
            cid: Daemon(
                f"controller-{cid}",
                [
                    "controller",
                    "--id",
                    cid,
                    "--etcd",
                    self.endpoints,
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    "0",  # ephemeral: a port picked ahead could be taken by the time the daemon starts
                    "--lease-ttl",
                    str(ttl),
                    "--etcd-timeout",
                    f"{timeout:g}",
                    "--resync-interval",
                    "5",
                    "--log-level",
                    "info",
                ],
                self.logs / f"controller-{cid}.log",
            )
            for cid in ("c1", "c2")
        }
        self._store_settings = EtcdSettings(endpoints=self.cluster.client_urls, call_timeout=2.0)
        self._store_class = EtcdStore
        self.store: Any = None

    def new_store(self) -> Any:
        return self._store_class(self._store_settings)

    def daemons(self) -> list[Any]:
        return [*self.sims.values(), *self.agents.values(), *self.controllers.values()]

    def start(self) -> None:
        self.cluster.start(timeout=60)
        self.store = self.new_store()
        for daemon in self.sims.values():
            daemon.start()
        for host in self.hosts:
            wait_until(lambda h=host: sim_state(self.rest[h]) is not None, 60, f"simulator of {host} to answer")
        for daemon in [*self.agents.values(), *self.controllers.values()]:
            daemon.start()

    def stop(self) -> None:
        for daemon in [*self.controllers.values(), *self.agents.values(), *self.sims.values()]:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
            daemon.stop(grace=10)
        if self.store is not None:
            self.store.close()
        for member in self.cluster.members:
            member.resume()
        self.cluster.stop()

    def dead(self) -> list[str]:
        return [d.name for d in self.daemons() if d.process is not None and not d.running]

    def leader_controller(self) -> str | None:
        from tfleet import schema
        from tfleet.schema import LeaderRecord

        try:
            kv = self.store.get(self.keyspace.leader())
            return schema.parse(LeaderRecord, kv.value, kv.key).id if kv else None
        except Exception:  # noqa: BLE001 (etcd down or a bad value: no leader known)
            return None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll predicate (exceptions count as "not yet") until truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


_STATE_LINE = re.compile(r"^tensorflow_serving_model_version_state\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sim_state(rest: str, timeout: float = 1.5) -> dict[str, frozenset[int]] | None:
    """{model: AVAILABLE versions} as the simulator itself reports it, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{rest}/monitoring/prometheus/metrics", timeout=timeout) as response:
            text = response.read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    available: dict[str, set[int]] = defaultdict(set)
    for line in text.splitlines():
        match = _STATE_LINE.match(line)
        if not match or float(match["value"]) != 1.0:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("state") == "AVAILABLE":
            available[labels["model_name"]].add(int(labels["model_version"]))
    return {model: frozenset(versions) for model, versions in available.items()}
