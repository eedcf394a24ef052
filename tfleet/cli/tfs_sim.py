"""`tfleet tfs-sim`: run the TF Serving simulator as a process until SIGTERM or SIGINT.

Flags mirror tensorflow_model_server's own (--file_system_poll_wait_seconds and so on, with
dashes); each also reads a TFLEET_SIM_* environment variable. Logs are JSON lines on stderr
(tfleet.logs), one per reload outcome and one per version outcome.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from tfleet.cli.options import DaemonCommand


@click.command("tfs-sim", cls=DaemonCommand, context_settings={"show_default": True})
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=8500,
    envvar="TFLEET_SIM_GRPC_PORT",
    show_envvar=True,
    help="gRPC port (ModelService, PredictionService); 0 picks a free one.",
)
@click.option(
    "--rest-port",
    type=click.IntRange(0, 65535),
    default=8501,
    envvar="TFLEET_SIM_REST_PORT",
    show_envvar=True,
    help="REST port (status, metadata, predict, Prometheus metrics); 0 picks a free one.",
)
@click.option("--host", default="127.0.0.1", envvar="TFLEET_SIM_HOST", show_envvar=True, help="Address both ports bind to.")
@click.option(
    "--file-system-poll-wait-seconds",
    type=click.FloatRange(min=0),
    default=1.0,
    envvar="TFLEET_SIM_FILE_SYSTEM_POLL_WAIT_SECONDS",
    show_envvar=True,
    help="How often every base_path is rescanned for version directories. 0 scans once, at start, like the real flag: models added later then never load.",
)
@click.option(
    "--load-retry-interval-seconds",
    type=click.FloatRange(min=0),
    default=60.0,
    envvar="TFLEET_SIM_LOAD_RETRY_INTERVAL_SECONDS",
    show_envvar=True,
    help="Wait between two attempts to load a failing version.",
)
@click.option(
    "--max-load-retries",
    type=click.IntRange(min=0),
    default=5,
    envvar="TFLEET_SIM_MAX_LOAD_RETRIES",
    show_envvar=True,
    help="Retries after a failed load attempt before the version is left in END.",
)
@click.option(
    "--num-load-threads",
    type=click.IntRange(min=0),
    default=0,
    envvar="TFLEET_SIM_NUM_LOAD_THREADS",
    show_envvar=True,
    help="Parallel loads; 0 loads one version at a time, like the real server's default.",
)
@click.option(
    "--allow-version-labels-for-unavailable-models",
    is_flag=True,
    default=False,
    envvar="TFLEET_SIM_ALLOW_VERSION_LABELS_FOR_UNAVAILABLE_MODELS",
    show_envvar=True,
    help="Let a new label point at a version that is not AVAILABLE yet.",
)
def tfs_sim(
    grpc_port: int,
    rest_port: int,
    host: str,
    file_system_poll_wait_seconds: float,
    load_retry_interval_seconds: float,
    max_load_retries: int,
    num_load_threads: int,
    allow_version_labels_for_unavailable_models: bool,
) -> None:
    """Run a TensorFlow Serving simulator (gRPC model management + prediction, REST, metrics)."""
    from tfleet.logs import configure
    from tfleet.sim.server import SimServer

    configure("info")
    server = SimServer(
        grpc_port=grpc_port,
        rest_port=rest_port,
        poll_wait_seconds=file_system_poll_wait_seconds,
        load_retry_interval=load_retry_interval_seconds,
        max_load_retries=max_load_retries,
        allow_labels_for_unavailable=allow_version_labels_for_unavailable_models,
        host=host,
        num_load_threads=num_load_threads,
    )
    try:
        server.start()
    except OSError as err:
        raise click.ClickException(str(err)) from err

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop.wait(0.5):
        pass
    server.stop(grace=1.0)
