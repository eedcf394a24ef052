"""The simulator's state machine driven by hand: a manager on a fake clock and a fake sleep,
stepped by drive() until it settles. Shared by tests/unit/test_sim_manager.py (decisions) and
tests/integration/test_sim_reload_labels.py (reloads, which need a thread to wait in).
"""

from __future__ import annotations

import threading

import pytest

from tfleet.sim.core import SimCore
from tfleet.sim.manager import ModelManager
from tfleet.sim.source import FileSystemSource
from tfleet.tfs.client import to_model_server_config
from tfleet.tfs.pb import model_management_pb2
from tfleet.tfs.types import ModelConfigSpec, VersionState


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return not interrupt.is_set()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def events() -> list[tuple[str, int, VersionState]]:
    return []


@pytest.fixture
def manager(fake_time: FakeTime, events: list) -> ModelManager:
    return ModelManager(
        max_load_retries=2,
        load_retry_interval=60.0,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        on_event=lambda model, version, state, status: events.append((model, version, state)),
    )


def drive(manager: ModelManager) -> None:
    for _ in range(1000):
        if not manager.step():
            return
    raise AssertionError("the manager never settled")


def states(manager: ModelManager, model: str) -> dict[int, str]:
    return {v: e.state.value for v, e in manager.version_states(model).items()}


@pytest.fixture
def core_parts(manager: ModelManager) -> tuple[SimCore, FileSystemSource, ModelManager]:
    source = FileSystemSource(manager.set_aspired)
    return SimCore(manager, source), source, manager


def reload_request(*specs: ModelConfigSpec) -> model_management_pb2.ReloadConfigRequest:
    return model_management_pb2.ReloadConfigRequest(config=to_model_server_config(list(specs)))
