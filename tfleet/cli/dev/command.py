"""`tfleet dev` itself: start the fleet, supervise it until Ctrl-C (or etcd dies), stop it."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time

import click

from tfleet.procs import Daemon
from tfleet.cli.dev.drills import dev_kill_host, dev_kill_leader, dev_ps
from tfleet.cli.dev.guide import print_guide
from tfleet.cli.dev.rundir import DEFAULT_ETCD_PORT, DEFAULT_RUN_DIR, default_run_dir, lock_run_dir, port_free, remove_data
from tfleet.cli.dev.samples import HostPorts, seed_fleet, write_sample_models
from tfleet.cli.dev.supervisor import Supervisor


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
    lock = lock_run_dir(root, etcd_url)  # before anything in it is touched
    if not port_free(etcd_port):
        lock.close()
        other = etcd_port + 1 if etcd_port < 65535 else etcd_port - 1
        raise click.ClickException(
            f"127.0.0.1:{etcd_port} is in use: is another tfleet dev running? Stop it, or start a second fleet with "
            f"`tfleet dev --etcd-port {other}` (its run directory is then {default_run_dir(other)})"
        )
    remove_data(root)  # a fresh fleet every time; old logs are appended to
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
        write_sample_models(models_dir)
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
        seed_fleet(etcd, models_dir, fleet, fleet_daemons, stop)
        context_note = ""
        try:
            written = write_context(FleetContext(etcd.client_url, "/tfleet", os.getpid(), str(root)))
            context_note = f"the tfleet CLI finds this fleet by itself (context file {written})"
        except OSError as exc:
            context_note = f"could not write the context file {context_path()} ({exc}): pass --etcd {etcd.client_url} to tfleet"
        print_guide(
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
            remove_data(root)
            click.echo(f"etcd data, models and state removed; logs kept in {logs_dir}")
        else:
            click.echo(f"everything kept in {root} (logs in {logs_dir})")
        lock.close()
    return exit_code


dev.add_command(dev_ps)
dev.add_command(dev_kill_host)
dev.add_command(dev_kill_leader)
