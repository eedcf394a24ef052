"""`tfleet agent`: run the per-host agent in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from typing import Any

import click
from pydantic import ValidationError

from tfleet import logs
from tfleet.cli.options import DaemonCommand, etcd_options, etcd_settings, parse_labels, settings_error


@click.command("agent", cls=DaemonCommand, context_settings={"show_default": True})
@click.option("--host", required=True, envvar="TFLEET_HOST", show_envvar=True, help="This serving host's name in the fleet.")
@etcd_options
@click.option("--tfs-grpc", required=True, envvar="TFLEET_TFS_GRPC", show_envvar=True, help="TF Serving gRPC address, HOST:PORT.")
@click.option("--tfs-rest", required=True, envvar="TFLEET_TFS_REST", show_envvar=True, help="TF Serving REST address, HOST:PORT.")
@click.option("--http-port", required=True, type=int, envvar="TFLEET_HTTP_PORT", show_envvar=True, help="Port of /metrics, /healthz, /readyz.")
@click.option("--http-host", default="0.0.0.0", envvar="TFLEET_HTTP_HOST", show_envvar=True, help="Address the ops endpoint binds.")
@click.option(
    "--advertise-host", envvar="TFLEET_ADVERTISE_HOST", show_envvar=True, help="Address others use to reach this host [default: the --tfs-grpc host]."
)
@click.option("--prefix", default="/tfleet", envvar="TFLEET_PREFIX", show_envvar=True, help="etcd key prefix of this fleet.")
@click.option("--lease-ttl", default=10, type=int, envvar="TFLEET_LEASE_TTL", show_envvar=True, help="Lease TTL, seconds: a dead host vanishes after this.")
@click.option("--memory-mb", type=int, envvar="TFLEET_MEMORY_MB", show_envvar=True, help="Memory the host offers to models [default: the machine's total].")
@click.option(
    "--label", "labels", multiple=True, envvar="TFLEET_LABELS", show_envvar=True, help="Host label KEY=VALUE (repeatable; space-separated in the variable)."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar="TFLEET_STATE_DIR",
    show_envvar=True,
    help="Where the last applied model list is kept [default: $XDG_STATE_HOME/tfleet].",
)
@click.option(
    "--resync-interval", default=30.0, type=float, envvar="TFLEET_RESYNC_INTERVAL", show_envvar=True, help="Seconds between full resyncs (the safety net)."
)
@click.option(
    "--status-sweep-interval",
    default=300.0,
    type=float,
    envvar="TFLEET_STATUS_SWEEP_INTERVAL",
    show_envvar=True,
    help="Seconds between asking TF Serving about every model (full passes in between probe one).",
)
@click.option(
    "--coalesce-window",
    default=0.02,
    type=float,
    envvar="TFLEET_COALESCE_WINDOW",
    show_envvar=True,
    help="Seconds to gather a burst of changes into one reload.",
)
@click.option(
    "--reload-timeout",
    default=8.0,
    type=float,
    envvar="TFLEET_RELOAD_TIMEOUT",
    show_envvar=True,
    help="Deadline of a reload call, seconds (TF Serving keeps loading after it).",
)
@click.option("--status-timeout", default=2.0, type=float, envvar="TFLEET_STATUS_TIMEOUT", show_envvar=True, help="Deadline of a GetModelStatus call, seconds.")
@click.option(
    "--poll-interval", default=0.25, type=float, envvar="TFLEET_POLL_INTERVAL", show_envvar=True, help="Seconds between looks at a model that is still loading."
)
@click.option(
    "--tfs-probe-interval",
    default=3.0,
    type=float,
    envvar="TFLEET_TFS_PROBE_INTERVAL",
    show_envvar=True,
    help="Seconds between probes of TF Serving (finds a restart or a hang).",
)
@click.option(
    "--tfs-unresponsive-after",
    default=3,
    type=int,
    envvar="TFLEET_TFS_UNRESPONSIVE_AFTER",
    show_envvar=True,
    help="Probes in a row past their deadline before TF Serving counts as hung.",
)
@click.option("--log-level", default="info", type=click.Choice(logs.LEVELS), envvar="TFLEET_LOG_LEVEL", show_envvar=True)
def agent(**options: Any) -> None:
    """Keep this host's TF Serving in line with its assignments in etcd."""
    from tfleet.agent.app import Agent
    from tfleet.agent.settings import AgentSettings

    log_level = options.pop("log_level")
    etcd = etcd_settings(options, use_context=False)
    options["labels"] = parse_labels(options.pop("labels"))
    values = {key: value for key, value in options.items() if value is not None}
    try:
        settings = AgentSettings(etcd=etcd, **values)
    except ValidationError as exc:
        raise settings_error(exc) from None
    logs.configure(log_level)
    try:
        app = Agent(settings)
    except OSError as exc:
        raise click.ClickException(f"cannot start the agent: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    signal.signal(signal.SIGINT, lambda *_: app.stop())
    app.run()
