"""Faults a real tensorflow_model_server shows and a control plane must survive.

A test switches them on in-process (``SimServer.faults``); a process can be hung for real
with SIGSTOP as well. What each fault looks like from the client, and why it is shaped so:

* **freeze** (a hung server: stopped by SIGSTOP, deadlocked, swapping): every RPC and REST
  request is accepted and then never answered while frozen, so a client sees its deadline
  pass (DEADLINE_EXCEEDED), exactly as with a SIGSTOPped process whose listening socket
  still accepts connections. Thawing lets the held requests continue, as SIGCONT does.
* **slow reload**: every HandleReloadConfigRequest waits ``reload_delay`` seconds holding
  the server-wide reload lock before it is applied (a busy server, a slow file system).
* **restart empty** is ``SimServer.restart()``: a new process on the same ports, which, like
  the real server started with an empty ``--model_config_file``, knows no model and no label.

Stopping the server releases every held request, so a test never leaves threads behind.
"""

from __future__ import annotations

import threading


class Faults:
    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._released = threading.Event()
        self._delay_lock = threading.Lock()
        self._reload_delay = 0.0

    # -- freeze ------------------------------------------------------------------------------
    def freeze(self) -> None:
        """From now on hold every request until thaw() (or the server stops)."""
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    @property
    def frozen(self) -> bool:
        return not self._open.is_set()

    def checkpoint(self) -> None:
        """Called at the start of every request: blocks while the server is frozen."""
        while not self._open.wait(0.5):
            if self._released.is_set():
                return

    # -- slow reload -------------------------------------------------------------------------
    @property
    def reload_delay(self) -> float:
        with self._delay_lock:
            return self._reload_delay

    def set_reload_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"reload delay must be >= 0, not {seconds}")
        with self._delay_lock:
            self._reload_delay = seconds

    def delay_reload(self) -> None:
        """Called inside the reload lock: wait reload_delay unless the server stops meanwhile."""
        delay = self.reload_delay
        if delay > 0:
            self._released.wait(delay)

    # -- shutdown ----------------------------------------------------------------------------
    def release(self) -> None:
        """The server stops: let every held request go (it then fails as at shutdown)."""
        self._released.set()
        self._open.set()
