"""The run directory of a local fleet: where it is, its lock, and what a clean stop removes.

One run directory per fleet, locked while the fleet runs: a second `tfleet dev` on another
port gets its own directory (/tmp/tfleet-dev-PORT), and one pointed at a directory in use is
refused before it touches anything. The etcd port is checked free before anything starts.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
import socket
from typing import IO

import click

DEFAULT_RUN_DIR = "/tmp/tfleet-dev"
DEFAULT_ETCD_PORT = 23790
# The parts of a run directory a fleet owns; "logs" survives a clean stop.
_DATA_PARTS = ("etcd", "state", "models", "pids")


def default_run_dir(etcd_port: int) -> str:
    """/tmp/tfleet-dev for the default port, /tmp/tfleet-dev-PORT otherwise: a second fleet
    started as the first one's error message advises never shares the first one's directory."""
    return DEFAULT_RUN_DIR if etcd_port == DEFAULT_ETCD_PORT else f"{DEFAULT_RUN_DIR}-{etcd_port}"


class RunDirBusy(click.ClickException):
    pass


def lock_run_dir(root: pathlib.Path, etcd_url: str) -> IO[str]:
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


def remove_data(root: pathlib.Path) -> None:
    for part in _DATA_PARTS:
        shutil.rmtree(root / part, ignore_errors=True)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
