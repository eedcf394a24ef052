"""What a fresh local fleet serves: sample models on disk, hand-made assignments, intents with
alert thresholds, and a canary rollout in progress (seed_fleet), so that `tfleet status`,
`tfleet alerts render`, the dashboard and `tfleet rollout ...` show something real at once."""

from __future__ import annotations

import json
import pathlib
import threading
from dataclasses import dataclass
from typing import Any

import click

from tfleet.procs import wait_for
from tfleet.cli.dev.supervisor import Supervisor


@dataclass(frozen=True)
class HostPorts:
    name: str
    grpc: int
    rest: int
    http: int
    zone: str


SAMPLE_MODELS = {
    # name: (versions, seconds to load each, affine scale, bias)
    "half_plus_two": ((1, 2), 0.2, 0.5, 2.0),
    "doubler": ((1, 2, 3), 0.5, 2.0, 0.0),
    "resnet_lite": ((1, 2), 0.5, 1.0, 1.0),
    "sentiment": ((1, 2), 0.3, 1.0, 0.5),  # its intent moves to version 2 as a canary at start
    "mnist": ((1, 2), 0.3, 3.0, 0.0),  # not served at start: the README's commands declare it
}
CANARY_MODEL = "sentiment"


def write_sample_models(models_dir: pathlib.Path) -> None:
    from tfleet.sim.fixtures import make_model

    for name, (versions, load_seconds, scale, bias) in SAMPLE_MODELS.items():
        make_model(models_dir, name, versions, load_seconds=load_seconds, scale=scale, bias=bias)


def initial_intents(models_dir: pathlib.Path) -> dict[str, dict[str, object]]:
    """Models the controller places (the assignments below are an operator's, by hand)."""
    return {
        "resnet_lite": {
            "base_path": str(models_dir / "resnet_lite"),
            "model_version_policy": {"specific": {"versions": [1]}},
            "version_labels": {"stable": 1},
            "replicas": 2,
            "spread_by": "zone",
            "memory_mb": 512,
            "alerts": {"latency_p99_ms": 250, "error_rate": 0.01, "for": "5m"},
            "description": "sample model placed by the controller",
            "owner": "tfleet-dev",
        },
        CANARY_MODEL: canary_intent(models_dir, 1),
    }


def canary_intent(models_dir: pathlib.Path, version: int) -> dict[str, object]:
    return {
        "base_path": str(models_dir / CANARY_MODEL),
        "model_version_policy": {"specific": {"versions": [version]}},
        "version_labels": {"stable": version},
        "replicas": 2,
        "memory_mb": 256,
        "rollout": {"strategy": "canary", "canary_replicas": 1},
        "alerts": {"error_rate": 0.05, "for": "2m"},
        "description": "sample model with a canary of version 2 (tfleet rollout promote sentiment)",
        "owner": "tfleet-dev",
    }


def initial_assignments(models_dir: pathlib.Path, hosts: list[HostPorts]) -> dict[tuple[str, str], dict[str, object]]:
    first, *rest = hosts
    assignments: dict[tuple[str, str], dict[str, object]] = {
        (first.name, "half_plus_two"): {"base_path": str(models_dir / "half_plus_two")},
    }
    for host in rest[:2]:
        assignments[(host.name, "doubler")] = {
            "base_path": str(models_dir / "doubler"),
            "model_version_policy": {"specific": {"versions": [2, 3]}},
            "version_labels": {"stable": 2, "canary": 3},
        }
    return assignments


def seed_fleet(etcd: Any, models_dir: pathlib.Path, fleet: list[HostPorts], daemons: Supervisor, stop: threading.Event) -> None:
    """Sample assignments and intents; then, once version 1 of the canary model serves, its
    intent moves to version 2 so that a canary runs when the guide is printed."""
    from tfleet.keyspace import Keyspace

    keyspace = Keyspace()
    for (host, model), value in initial_assignments(models_dir, fleet).items():
        etcd.etcdctl("put", keyspace.assignment(host, model), json.dumps(value))
    for model, value in initial_intents(models_dir).items():
        etcd.etcdctl("put", keyspace.model(model), json.dumps(value))
    wait_for(lambda: _all_registered(etcd, keyspace, fleet) or daemons.dead() is not None or stop.is_set(), 60, "every agent to register")
    if dead := daemons.dead():
        raise click.ClickException(f"{dead.name} exited during start; its log:\n{dead.log_tail()}")
    replicas = min(2, len(fleet))
    try:
        wait_for(
            lambda: _ready(etcd, keyspace, CANARY_MODEL, "1", replicas) or daemons.dead() is not None or stop.is_set(), 60, f"{CANARY_MODEL} version 1 to serve"
        )
    except TimeoutError as exc:
        click.echo(f"note: no canary of {CANARY_MODEL} ({exc})", err=True)
        return
    if stop.is_set():
        return
    etcd.etcdctl("put", keyspace.model(CANARY_MODEL), json.dumps(canary_intent(models_dir, 2)))


def _ready(etcd: Any, keyspace: Any, model: str, version: str, replicas: int) -> bool:
    result = etcd.etcdctl("get", "--print-value-only", keyspace.modelstatus(model), check=False)
    try:
        return bool(result.returncode == 0 and json.loads(result.stdout or b"{}").get("ready_replicas", {}).get(version, 0) >= replicas)
    except ValueError:
        return False


def _all_registered(etcd: Any, keyspace: Any, fleet: list[HostPorts]) -> bool:
    result = etcd.etcdctl("get", "--prefix", "--keys-only", keyspace.hosts_prefix(), check=False)
    return result.returncode == 0 and all(keyspace.host(h.name).encode() in result.stdout for h in fleet)
