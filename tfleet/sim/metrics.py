"""Prometheus metrics of one simulator instance (its own CollectorRegistry, no global state).

The real server's names (`:tensorflow:serving:request_count`, ...) are not valid Prometheus
names, so the simulator uses underscores and Prometheus conventions instead. These names
are a contract (Grafana dashboards use them), listed in docs/simulator.md:

- tensorflow_serving_request_count_total{model_name, status, entrypoint}
    Predict requests by outcome; status is the tensorflow code name ("OK", "NOT_FOUND", ...),
    entrypoint "GRPC" or "REST". (A counter: the exposition adds `_total`.)
- tensorflow_serving_request_latency_bucket / _sum / _count{model_name, API, entrypoint}
    Predict latency histogram in SECONDS (the real server uses microseconds); API="predict".
- tensorflow_serving_model_version_state{model_name, model_version, state}
    1 for the current state of every version the server knows (END versions included).
- tensorflow_serving_model_memory_bytes{model_name, model_version}
    memory_mb of sim.json for every AVAILABLE version.
- tensorflow_serving_load_attempt_count_total{model_name, model_version, status}
    Load attempts by outcome (status: "OK" or the code name of the failure).
- tensorflow_serving_reload_config_count_total{status}
    HandleReloadConfigRequest outcomes by code name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tfleet.sim.manager import MonitorEntry, ServedVersion

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StateCollector(Collector):
    """Reads the manager at scrape time, so the gauges can never drift from the truth."""

    def __init__(
        self,
        states: Callable[[], dict[str, dict[int, MonitorEntry]]],
        served: Callable[[], list[ServedVersion]],
    ) -> None:
        self._states, self._served = states, served

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "tensorflow_serving_model_version_state",
            "1 for the current state of each model version known to the server.",
            labels=["model_name", "model_version", "state"],
        )
        for model, versions in sorted(self._states().items()):
            for version, entry in sorted(versions.items()):
                state.add_metric([model, str(version), entry.state.value], 1.0)
        yield state
        memory = GaugeMetricFamily(
            "tensorflow_serving_model_memory_bytes",
            "Memory of each AVAILABLE version (memory_mb of its sim.json).",
            labels=["model_name", "model_version"],
        )
        for served in sorted(self._served(), key=lambda s: (s.model, s.version)):
            memory.add_metric([served.model, str(served.version)], served.spec.memory_mb * 1024 * 1024)
        yield memory


class SimMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_count = Counter(
            "tensorflow_serving_request_count",
            "Predict requests by model and outcome.",
            ["model_name", "status", "entrypoint"],
            registry=r,
        )
        self.request_latency = Histogram(
            "tensorflow_serving_request_latency",
            "Predict latency in seconds.",
            ["model_name", "API", "entrypoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.load_attempts = Counter(
            "tensorflow_serving_load_attempt_count",
            "Model version load attempts by outcome.",
            ["model_name", "model_version", "status"],
            registry=r,
        )
        self.reloads = Counter(
            "tensorflow_serving_reload_config_count",
            "HandleReloadConfigRequest calls by outcome.",
            ["status"],
            registry=r,
        )

    def watch(
        self,
        states: Callable[[], dict[str, dict[int, MonitorEntry]]],
        served: Callable[[], list[ServedVersion]],
    ) -> None:
        """Export the manager's version states and memory as gauges."""
        self.registry.register(_StateCollector(states, served))

    def record_request(self, model: str, status_name: str, entrypoint: str, seconds: float) -> None:
        self.request_count.labels(model, status_name, entrypoint).inc()
        self.request_latency.labels(model, "predict", entrypoint).observe(seconds)
