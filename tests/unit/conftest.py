"""tests/unit/ is pure: no thread, no process, no socket, so it runs anywhere in seconds and a
failure here is a logic error, never a slow machine.

Every unit test runs with Thread.start, Popen and socket connect/bind refused; a test that needs
one belongs in tests/integration/ (docs/architecture.md, "Tests"). gRPC dials in its C core,
outside Python's socket module, so a unit test that calls a real store or TF Serving client is
not caught here: use a fake of the store interface instead.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

# nodeid -> why it may still do I/O. Keep this empty: each entry is a test waiting to move.
IMPURE_FOR_NOW: dict[str, str] = {}


def _refuse(what: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"a unit test must not {what}: move it to tests/integration/ (tests/unit/conftest.py)")

    return refused


@pytest.fixture(autouse=True)
def _no_threads_processes_or_sockets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.nodeid in IMPURE_FOR_NOW:
        return
    monkeypatch.setattr(threading.Thread, "start", _refuse("start a thread"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, _refuse(f"{method} a socket"))
