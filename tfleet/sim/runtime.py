"""The simulator's two background threads: the manage-state loop and the file-system poller.

Kept apart from the state machine (manager.py, source.py) so that unit tests drive those by
calling step() and poll() themselves, with no thread and no waiting.
"""

from __future__ import annotations

import threading

from tfleet.sim.manager import ModelManager
from tfleet.sim.source import FileSystemSource


class ManagerLoop:
    """Calls manager.step() while it acts; otherwise sleeps until woken (or `idle` seconds)."""

    def __init__(self, manager: ModelManager, idle: float = 0.1) -> None:
        self._manager, self._idle = manager, idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-manage-state", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        wake = self._manager.wake
        while not self._stop.is_set():
            wake.clear()
            if not self._manager.step():
                wake.wait(self._idle)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._manager.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class Poller:
    """Polls the file-system source every `interval` seconds (0: once, like the real flag)."""

    def __init__(self, source: FileSystemSource, interval: float) -> None:
        self._source, self._interval = source, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-fs-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._source.poll()
            if self._interval <= 0 or self._stop.wait(self._interval):
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
