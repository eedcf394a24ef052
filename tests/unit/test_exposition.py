"""tfleet/exposition.py: /metrics text byte for byte as prometheus_client writes it, with the
per-model gauge families written by themselves."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tfleet.controller.metrics import ControllerMetrics, ModelGauge
from tfleet.exposition import RenderedGaugeFamily, generate

# label values an operator's model names never hold but a label may: quotes, backslashes,
# newlines, non-ASCII, empty
label_values = st.text(alphabet=st.sampled_from(["a", "Z", "0", "-", ".", '"', "\\", "\n", "é", "☃", " ", "n"]), max_size=6)
values = st.one_of(st.integers(-3, 10**18), st.floats(allow_nan=True), st.sampled_from([0, 1, 2, 1e16, 123456789.0, -0.0]))


class _Family:
    def __init__(self, family):
        self.family = family

    def collect(self):
        yield self.family


@settings(max_examples=200, deadline=None)
@given(
    labelnames=st.sampled_from([("model",), ("model", "phase"), ("phase", "model"), ("b", "a", "c")]),
    rows=st.lists(st.tuples(st.lists(label_values, min_size=3, max_size=3), values), max_size=12),
)
def test_a_rendered_family_writes_what_generate_latest_writes(labelnames, rows) -> None:
    pairs = [(tuple(labels[: len(labelnames)]), value) for labels, value in rows]
    family = RenderedGaugeFamily("tfleet_test_gauge", 'a "doc"\\ with\nlines', labelnames, pairs)
    expected = generate_latest(_Family(RenderedGaugeFamily("tfleet_test_gauge", 'a "doc"\\ with\nlines', labelnames, pairs)))
    assert family.exposition() == expected
    assert generate(_Family(family)) == expected


def test_samples_are_built_when_read_as_a_family_of_samples() -> None:
    family = RenderedGaugeFamily("tfleet_test_gauge", "doc", ("model", "phase"), [(("m", "stable"), 1), (("n", "adding"), 0)])
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("tfleet_test_gauge", {"model": "m", "phase": "stable"}, 1.0),
        ("tfleet_test_gauge", {"model": "n", "phase": "adding"}, 0.0),
    ]
    assert all(type(s.value) is float for s in family.samples)
    with pytest.raises(ValueError, match="plain metric and label names"):
        RenderedGaugeFamily("tfleet test", "doc", ("model",), [])


def test_a_whole_registry_reads_the_same_and_in_the_same_order() -> None:
    """Plain families before, between and after the rendered ones, as the controller's."""
    registry = CollectorRegistry()
    Counter("tfleet_first_total", "first", ["kind"], registry=registry).labels("a").inc(3)
    wanted = ModelGauge("tfleet_wanted", "wanted", ["model"], registry)
    Histogram("tfleet_seconds", "time", registry=registry).observe(0.2)
    phase = ModelGauge("tfleet_phase", "phase", ["model", "phase"], registry)
    Gauge("tfleet_last", "last", registry=registry).set(math.inf)
    wanted.update({("m1",): 2, ('we"ird\\',): 3})
    phase.update({("m1", "stable"): 1, ("m2", "canary"): 0})
    assert generate(registry) == generate_latest(registry)
    assert registry.get_sample_value("tfleet_wanted", {"model": "m1"}) == 2.0
    assert registry.get_sample_value("tfleet_phase", {"model": "m2", "phase": "canary"}) == 0.0


def test_the_controllers_metrics_at_a_thousand_models() -> None:
    metrics = ControllerMetrics()
    models = [f"model-{i:04d}" for i in range(1000)]
    metrics.replicas_wanted.update({(m,): 2 for m in models})
    metrics.replicas_ready.update({(m,): i % 3 for i, m in enumerate(models)})
    metrics.rollout_phase.update({(m, "stable" if i % 5 else "adding"): 1 for i, m in enumerate(models)})
    text = generate(metrics.registry)
    assert text == generate_latest(metrics.registry)
    assert text.count(b"tfleet_controller_rollout_phase{") == 1000


def test_the_scrape_bench_at_a_small_size(capsys) -> None:
    """bench/metrics_scrape.py, small: both writers, the same bytes."""
    from bench import metrics_scrape

    metrics_scrape.main(["--models", "300", "--rounds", "1"])
    out = capsys.readouterr().out
    assert '"same_bytes": true' in out and '"series": 900' in out
