"""controller/metrics.py's ModelGauge exposes exactly what prometheus_client's Gauge would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tfleet.controller.metrics import ModelGauge


def test_the_same_operations_give_the_same_exposition_as_a_gauge() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    gauges = [ModelGauge("t_phase", "The phase.", ["model", "phase"], ours), Gauge("t_phase", "The phase.", ["model", "phase"], registry=theirs)]
    for gauge in gauges:
        gauge.labels("m1", "stable").set(1)
        gauge.labels("m2", "adding").set(1)
        gauge.labels("m3", "canary").set(3)
        gauge.labels("m4", "stable")  # a label set exists (at 0) once named
        gauge.remove("m2", "adding")
        gauge.labels("m1", "stable").set(2)
    assert generate_latest(ours) == generate_latest(theirs)
    assert ours.get_sample_value("t_phase", {"model": "m1", "phase": "stable"}) == 2
    for gauge in gauges:
        gauge.remove("m2", "adding")  # absent: nothing happens, as with Gauge
    assert generate_latest(ours) == generate_latest(theirs)
    for gauge in gauges:
        gauge.clear()
    assert generate_latest(ours) == generate_latest(theirs)
    with pytest.raises(ValueError):
        gauges[0].labels("only-one")


def test_an_update_removes_then_sets_as_one_call_at_a_time_would() -> None:
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    single = ModelGauge("t_phase", "The phase.", ["model", "phase"], one_by_one)
    bulk = ModelGauge("t_phase", "The phase.", ["model", "phase"], at_once)
    for gauge in (single, bulk):
        gauge.labels("m1", "adding").set(1)
        gauge.labels("m2", "stable").set(1)
    single.remove("m1", "adding")
    single.remove("m9", "stable")  # absent: nothing happens
    single.labels("m1", "stable").set(1)
    single.labels("m2", "stable").set(2)
    bulk.update({("m1", "stable"): 1, ("m2", "stable"): 2}, [("m1", "adding"), ("m9", "stable")])
    assert generate_latest(one_by_one) == generate_latest(at_once)
    with pytest.raises(ValueError):
        bulk.update({("only-one",): 1})
