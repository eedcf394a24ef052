"""Supervision of the local fleet's daemons: pid files for the drills, and what to do when one
dies: report it and, by default, leave it down (so the drills show the fleet healing);
`--restart` brings it back, at most once per daemon every few seconds."""

from __future__ import annotations

import pathlib

import click

from tfleet.procs import Daemon

_RESTART_EVERY = 5.0  # --restart: at most one restart per daemon in this many seconds


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
