"""`tfleet controller`: run a controller (leader or standby) until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from typing import Any

import click
from pydantic import ValidationError

from tfleet import logs
from tfleet.cli.options import DaemonCommand, etcd_options, etcd_settings, settings_error


@click.command("controller", cls=DaemonCommand, context_settings={"show_default": True})
@click.option("--id", "id", required=True, envvar="TFLEET_CONTROLLER_ID", show_envvar=True, help="This controller's name (unique per controller).")
@etcd_options
@click.option("--http-port", required=True, type=int, envvar="TFLEET_HTTP_PORT", show_envvar=True, help="Port of /metrics, /healthz, /readyz.")
@click.option("--http-host", default="0.0.0.0", envvar="TFLEET_HTTP_HOST", show_envvar=True)
@click.option("--prefix", default="/tfleet", envvar="TFLEET_PREFIX", show_envvar=True, help="etcd key prefix of this fleet.")
@click.option(
    "--lease-ttl", default=10, type=int, envvar="TFLEET_LEASE_TTL", show_envvar=True, help="Leadership lease TTL, seconds: a standby takes over within it."
)
@click.option("--resync-interval", default=10.0, type=float, envvar="TFLEET_RESYNC_INTERVAL", show_envvar=True, help="Seconds between full passes.")
@click.option("--coalesce-window", default=0.1, type=float, envvar="TFLEET_COALESCE_WINDOW", show_envvar=True)
@click.option(
    "--dashboard-port",
    type=int,
    envvar="TFLEET_DASHBOARD_PORT",
    show_envvar=True,
    help="Port of the read-only web dashboard (0: any free port)  [default: no dashboard]",
)
@click.option(
    "--dashboard-host",
    default="127.0.0.1",
    envvar="TFLEET_DASHBOARD_HOST",
    show_envvar=True,
    show_default=True,
    help="Address the dashboard listens on. It has no login: expose it (e.g. 0.0.0.0) only behind an authenticating proxy or on a trusted network.",
)
@click.option(
    "--tfs-unresponsive-grace",
    default=60.0,
    type=float,
    envvar="TFLEET_TFS_UNRESPONSIVE_GRACE",
    show_envvar=True,
    help="Seconds a host's TF Serving may not answer before its replicas are placed elsewhere.",
)
@click.option(
    "--full-plan-interval",
    default=60.0,
    type=float,
    envvar="TFLEET_FULL_PLAN_INTERVAL",
    show_envvar=True,
    show_default=True,
    help="Seconds in which the leader plans every model and host again, a bounded slice per pass (the net under incremental planning; 10-3600).",
)
@click.option(
    "--full-plan-rate",
    default=250.0,
    type=float,
    envvar="TFLEET_FULL_PLAN_RATE",
    show_envvar=True,
    show_default=True,
    help="At most this many models a second for that net: a larger fleet's cycle (the hosts' too) takes longer than --full-plan-interval (1-100000).",
)
@click.option(
    "--history-keep",
    default=100,
    type=int,
    envvar="TFLEET_HISTORY_KEEP",
    show_envvar=True,
    help="History entries kept per model (the newest); older ones are pruned as new ones are written.",
)
@click.option("--log-level", default="info", type=click.Choice(logs.LEVELS), envvar="TFLEET_LOG_LEVEL", show_envvar=True)
def controller(**options: Any) -> None:
    """Turn model intents into per-host assignments; one controller leads, the others stand by."""
    from tfleet.controller.app import Controller
    from tfleet.controller.heap import fix_mmap_threshold, limit_arenas
    from tfleet.controller.settings import ControllerSettings

    log_level = options.pop("log_level")
    etcd = etcd_settings(options, use_context=False)
    try:
        settings = ControllerSettings(etcd=etcd, **{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise settings_error(exc) from None
    logs.configure(log_level)
    limit_arenas()  # before the first thread (gRPC's, the watch's): controller/heap.py
    fix_mmap_threshold()
    app = Controller(settings)
    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    signal.signal(signal.SIGINT, lambda *_: app.stop())
    app.run()
