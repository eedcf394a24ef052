"""The controller's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from tfleet.exposition import RenderedGaugeFamily

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# a transaction of a pass's writes: a few ms on an idle etcd, up to the call's deadline
_TXN_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ModelGauge:
    """A labelled gauge with one value per label set, for the per-model gauges.

    prometheus_client keeps a whole metric object (with a lock) per label set: ~600 bytes,
    180 MB for 100,000 models' three gauges (bench/cache_memory.py). This keeps a float per
    label set and exposes the same family on each scrape. The part of Gauge's interface the
    controller uses: ``labels(...).set(v)``, ``remove(...)`` (nothing when absent, as Gauge), ``clear()``.
    """

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}  # (an int value is kept as an int: _number)
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> _LabelSet:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, given {values}")
        labels = tuple(str(v) for v in values)
        with self._lock:
            self._values.setdefault(labels, 0.0)  # (as Gauge: the series exists from here on)
        return _LabelSet(self, labels)

    def update(self, values: Mapping[tuple[str, ...], float], removed: Iterable[tuple[str, ...]] = ()) -> None:
        """Remove the label sets ``removed``, then set ``values`` (label set -> value): what
        ``remove`` and ``labels(...).set`` do one at a time, under one lock hold (a pass that
        re-places 10,000 models' replicas sets 30,000 values). Labels are the caller's
        strings, as many as the gauge has names."""
        width = len(self._labelnames)
        if any(len(labels) != width for labels in values):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        with self._lock:
            for labels in removed:
                self._values.pop(labels, None)
            for labels, value in values.items():
                self._values[labels] = _number(value)

    def remove(self, *values: str) -> None:
        with self._lock:
            self._values.pop(tuple(str(v) for v in values), None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # (a family that writes its own /metrics lines: tfleet/exposition.py)
        with self._lock:
            values = list(self._values.items())
        yield RenderedGaugeFamily(self._name, self._documentation, self._labelnames, values)


def _number(value: float) -> float:
    """A gauge's value as kept: an int as it is (the small ones are shared objects: the
    per-model gauges' replica counts and phase flags, 300,000 values at 100,000 models, held
    ~7 MB as floats), anything else as a float."""
    return value if type(value) is int else float(value)


class _LabelSet:
    __slots__ = ("_gauge", "_labels")

    def __init__(self, gauge: ModelGauge, labels: tuple[str, ...]) -> None:
        self._gauge, self._labels = gauge, labels

    def set(self, value: float) -> None:
        with self._gauge._lock:
            self._gauge._values[self._labels] = _number(value)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.is_leader = Gauge("tfleet_controller_is_leader", "1 while this controller leads.", registry=r)
        self.leadership_changes = Counter("tfleet_controller_leadership_changes_total", "Leadership won or lost.", ["change"], registry=r)
        self.reconcile_total = Counter("tfleet_controller_reconcile_total", "Reconcile passes by outcome.", ["result"], registry=r)
        self.reconcile_seconds = Histogram("tfleet_controller_reconcile_duration_seconds", "Duration of one pass.", buckets=_BUCKETS, registry=r)
        self.plan_seconds = Histogram("tfleet_controller_plan_duration_seconds", "Duration of the pure planning step.", buckets=_BUCKETS, registry=r)
        self.writes = Counter("tfleet_controller_writes_total", "Keys written or deleted by the controller.", ["kind", "op"], registry=r)
        self.write_txn_seconds = Histogram(
            "tfleet_controller_write_txn_duration_seconds",
            "A pass's write transaction, from its send to etcd's answer, as the controller sees it (compare etcd's grpc_server_handling_seconds for Txn).",
            buckets=_TXN_BUCKETS,
            registry=r,
        )
        self.fenced_rejections = Counter("tfleet_controller_fenced_rejections_total", "Writes refused because leadership was lost.", registry=r)
        self.replicas_wanted = ModelGauge("tfleet_controller_replicas_wanted", "Replicas the intent asks for.", ["model"], r)
        self.replicas_ready = ModelGauge("tfleet_controller_replicas_ready", "Replicas with their wanted versions AVAILABLE.", ["model"], r)
        self.unplaced_models = Gauge("tfleet_controller_unplaced_models", "Models with fewer placed replicas than wanted.", registry=r)
        self.invalid_intents = Gauge("tfleet_controller_invalid_intents", "Intents that fail validation.", registry=r)
        self.rollout_phase = ModelGauge("tfleet_controller_rollout_phase", "1 for the rollout phase each model is in.", ["model", "phase"], r)
        self.live_hosts = Gauge("tfleet_controller_live_hosts", "Hosts registered in etcd.", registry=r)
        # the fleet cache (controller/fleetcache.py) and what each pass takes from it
        self.cache_keys = Gauge("tfleet_controller_cache_keys", "Keys held by the fleet cache (history/ is never cached).", registry=r)
        self.cache_revision = Gauge("tfleet_controller_cache_revision", "etcd revision the fleet cache has applied.", registry=r)
        self.cache_relists = Counter("tfleet_controller_cache_relists_total", "Re-reads of the cached sections, by reason.", ["reason"], registry=r)
        self.cache_divergences = Counter(
            "tfleet_controller_cache_divergences_total", "Verifications that found the fleet cache different from etcd (then re-listed).", registry=r
        )
        self.cache_events = Counter("tfleet_controller_cache_events_total", "Watch events applied to the fleet cache.", registry=r)
        self.pass_keys = Counter("tfleet_controller_pass_keys_applied_total", "Changed keys the passes applied to their snapshot.", registry=r)
        self.models_planned = Counter("tfleet_controller_models_planned_total", "Models the passes planned (all of them on a full plan).", registry=r)
        self.gc_seconds = Counter(
            "tfleet_controller_gc_seconds_total",
            "Seconds the cycle collector paused the process, by generation (controller/collector.py).",
            ["generation"],
            registry=r,
        )
        self.pass_errors = Counter("tfleet_controller_pass_errors_total", "Passes ended by an unexpected error (the loop backs off and goes on).", registry=r)
        self.pass_failing = Gauge("tfleet_controller_pass_failing", "1 while the controller's passes keep failing with an unexpected error.", registry=r)
        self.problems = Gauge(
            "tfleet_controller_problems", "Values in etcd no reader can use, by keyspace section (the leader's <prefix>/problems).", ["section"], registry=r
        )
        # The history recorder (controller/history.py)
        self.history_entries = Counter(
            "tfleet_controller_history_entries_total",
            "Changes of models/ the history recorder went through, by who wrote their entry: etcd (the recorder), cli (written with the change).",
            ["source"],
            registry=r,
        )
        self.history_gaps = Counter(
            "tfleet_controller_history_gaps_total", "Gap entries written: changes etcd compacted before the recorder read them.", registry=r
        )
        self.history_pruned = Counter(
            "tfleet_controller_history_pruned_total", "History entries pruned by the recorder's retention (--history-keep).", registry=r
        )
        self.history_lag = Gauge(
            "tfleet_controller_history_lag_revisions", "Revisions between the newest change of models/ seen and the recorder's cursor.", registry=r
        )
        self.history_errors = Counter(
            "tfleet_controller_history_recorder_errors_total", "Recorder rounds that failed (logged; retried after a backoff).", registry=r
        )
