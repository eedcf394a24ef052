"""Fixtures of the simulator tests: a fast-polling `sim` (overriding the suite's, for this
directory only), a TfsClient and a raw gRPC channel to it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tfleet.sim.server import SimServer
from tfleet.tfs.client import TfsClient
from tests.integration.simulator.support import fast_sim


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """Overrides the suite's `sim` (tests/simfixtures.py) with a faster-polling server."""
    server = fast_sim().start()
    yield server
    server.stop(0)


@pytest.fixture
def client(sim: SimServer) -> Iterator[TfsClient]:
    tfs = TfsClient(sim.grpc_address)
    yield tfs
    tfs.close()


@pytest.fixture
def channel(sim: SimServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sim.grpc_address) as ch:
        yield ch
