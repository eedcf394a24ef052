"""Drills on a running local fleet (`tfleet dev ps | kill-host | kill-leader`): found through
its context file or --run-dir, acted on through the pid files its supervisor writes."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal

import click

from tfleet.cli.dev.rundir import DEFAULT_ETCD_PORT, DEFAULT_RUN_DIR


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


@click.command("ps")
@click.pass_context
def dev_ps(ctx: click.Context) -> None:
    """The daemons of the running fleet, their pids and whether they run."""
    root = _fleet_dir(ctx)
    for name, pid in _pids(root).items():
        click.echo(f"{name:<16} {pid:>8}  {'running' if _alive(pid) else 'down'}")


@click.command("kill-host")
@click.argument("host")
@click.pass_context
def dev_kill_host(ctx: click.Context, host: str) -> None:
    """Lose HOST: SIGKILL its agent and its simulated TF Serving. Its host key expires after the
    lease TTL and the controller places its replicas elsewhere."""
    _kill(_fleet_dir(ctx), [f"agent-{host}", f"tfs-{host}"])
    click.echo("watch: tfleet get hosts; tfleet status (its replicas move once its lease expires)")


@click.command("kill-leader")
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
