"""The controller's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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
        self.fenced_rejections = Counter("tfleet_controller_fenced_rejections_total", "Writes refused because leadership was lost.", registry=r)
        self.replicas_wanted = Gauge("tfleet_controller_replicas_wanted", "Replicas the intent asks for.", ["model"], registry=r)
        self.replicas_ready = Gauge("tfleet_controller_replicas_ready", "Replicas with their wanted versions AVAILABLE.", ["model"], registry=r)
        self.unplaced_models = Gauge("tfleet_controller_unplaced_models", "Models with fewer placed replicas than wanted.", registry=r)
        self.invalid_intents = Gauge("tfleet_controller_invalid_intents", "Intents that fail validation.", registry=r)
        self.rollout_phase = Gauge("tfleet_controller_rollout_phase", "1 for the rollout phase each model is in.", ["model", "phase"], registry=r)
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
