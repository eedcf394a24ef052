"""controller/collector.py: what survived a pass is frozen; everything is collected once per
interval, and each collection's pause is counted per generation."""

from __future__ import annotations

import gc
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from tfleet.controller.collector import Collector


class _Gc:
    """The gc module's freeze/unfreeze/collect, recorded."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.calls: list[str] = []
        self.frozen = 0

    def enable(self) -> None:
        self.calls.append("enable")

    def disable(self) -> None:
        self.calls.append("disable")

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen = 1000

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.frozen = 0

    def collect(self) -> int:
        self.calls.append("collect")
        return 7

    def get_freeze_count(self) -> int:
        return self.frozen


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_each_pass_freezes_and_a_full_collection_comes_once_per_interval() -> None:
    now, fake, log = [0.0], _Gc(), _Log()
    collector = Collector(log=log, full_every=3600.0, clock=lambda: now[0], gc=fake)  # type: ignore[arg-type]
    for _ in range(3):
        now[0] += 1000.0
        collector.after_pass()
    assert fake.calls == ["freeze"] * 3 and not log.lines
    now[0] += 600.0  # 3,600 s since the start
    collector.after_pass()
    # everything frozen is handed back and collected before the survivors are frozen again
    assert fake.calls[3:] == ["unfreeze", "collect", "freeze"]
    assert log.lines[0][0] == "gc_full_collection" and log.lines[0][1]["collected"] == 7 and log.lines[0][1]["frozen_before"] == 1000
    now[0] += 3599.0
    collector.after_pass()
    assert fake.calls[6:] == ["freeze"] and collector.full_collections == 1


def test_nothing_is_collected_automatically_during_a_pass_even_one_that_fails() -> None:
    fake = _Gc()
    collector = Collector(log=_Log(), gc=fake)  # type: ignore[arg-type]
    with collector.during_pass():
        assert fake.calls == ["disable"]
    try:
        with collector.during_pass():
            raise RuntimeError("a pass that fails")
    except RuntimeError:
        pass
    assert fake.calls == ["disable", "enable", "freeze"] * 2


def test_stop_gives_the_frozen_objects_back() -> None:
    fake = _Gc()
    collector = Collector(log=_Log(), pauses=Counter("p", "p", ["generation"], registry=CollectorRegistry()), gc=fake)  # type: ignore[arg-type]
    collector.start()
    collector.after_pass()
    collector.stop()
    assert fake.calls == ["freeze", "unfreeze"] and fake.callbacks == []


def test_pauses_are_counted_per_generation_by_the_real_collector() -> None:
    registry = CollectorRegistry()
    pauses = Counter("gc_pause", "p", ["generation"], registry=registry)
    collector = Collector(log=_Log(), pauses=pauses)
    collector.start()
    try:
        gc.collect(1)
    finally:
        collector.stop()
    assert (registry.get_sample_value("gc_pause_total", {"generation": "1"}) or 0.0) > 0.0
    assert collector._on_collection not in gc.callbacks


def test_a_frozen_object_is_still_freed_when_dropped() -> None:
    """What the freeze relies on: reference counting frees a frozen object (no cycle)."""
    import weakref

    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing)
    gc.freeze()
    try:
        del thing
        assert ref() is None
    finally:
        gc.unfreeze()


def test_the_interpreter_is_tuned_for_the_controller_and_put_back() -> None:
    import sys

    from tfleet.controller import app

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    restore = app.tune_interpreter()
    try:
        assert gc.get_threshold() == app.GC_THRESHOLDS
        assert sys.getswitchinterval() == app.GIL_SWITCH_INTERVAL
    finally:
        restore()
    assert gc.get_threshold() == thresholds and sys.getswitchinterval() == interval
