"""Simulator fixtures shared by the integration and e2e suites (imported by their conftest.py).

The simulator runs with fast timings: the file system is rescanned every 0.2 s, and a failed
load is retried twice 50 ms apart instead of 5 times a minute apart.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import pytest

from tfleet.sim.server import SimServer

FAST = {"poll_wait_seconds": 0.2, "load_retry_interval": 0.05, "max_load_retries": 2}


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimServer]]:
    started: list[SimServer] = []

    def make(**overrides) -> SimServer:
        server = SimServer(**{**FAST, **overrides}).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(0)


@pytest.fixture
def sim(sim_factory: Callable[..., SimServer]) -> SimServer:
    return sim_factory()


@pytest.fixture
def models_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """An empty directory for model versions (tfleet.sim.fixtures.make_model writes into it)."""
    path = tmp_path / "models"
    path.mkdir()
    return path
