"""The agent's Prometheus metrics, on a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter("tfleet_agent_reconcile_total", "Reconcile passes by outcome.", ["result"], registry=r)
        self.reconcile_seconds = Histogram("tfleet_agent_reconcile_duration_seconds", "Duration of one reconcile pass.", buckets=_FAST, registry=r)
        self.reload_seconds = Histogram(
            "tfleet_agent_reload_duration_seconds",
            "Duration of HandleReloadConfigRequest calls by outcome.",
            ["result"],
            buckets=_SLOW,
            registry=r,
        )
        self.versions = Gauge("tfleet_agent_model_versions", "Assigned model versions by TF Serving state.", ["state"], registry=r)
        self.models_with_errors = Gauge("tfleet_agent_models_with_errors", "Assigned models whose status carries an error.", registry=r)
        self.watch_restarts = Counter("tfleet_agent_watch_restarts_total", "Times the assignment watch was re-established.", registry=r)
        self.lease_renew_failures = Counter("tfleet_agent_lease_renew_failures_total", "Failed lease renewals.", registry=r)
        self.lease_grants = Counter("tfleet_agent_lease_grants_total", "Leases granted (1 at start, +1 per lease lost).", registry=r)
        self.status_writes = Counter("tfleet_agent_status_writes_total", "Status keys written or deleted.", ["op"], registry=r)
        self.assignment_to_available = Histogram(
            "tfleet_agent_assignment_to_available_seconds",
            "Time from an assignment change first seen to all its versions AVAILABLE.",
            buckets=_SLOW,
            registry=r,
        )
        self.etcd_up = Gauge("tfleet_agent_etcd_up", "1 when the last etcd call succeeded.", registry=r)
        self.tfs_up = Gauge("tfleet_agent_tfs_up", "1 when the last TF Serving call succeeded.", registry=r)
        self.tfs_unresponsive = Gauge(
            "tfleet_agent_tfs_unresponsive",
            "1 while TF Serving counts as not serving (unreachable, or probes past their deadline in a row).",
            registry=r,
        )
        self.foreign_key_writes = Counter(
            "tfleet_agent_foreign_key_writes_total",
            "Changes or deletes of the agent's own keys by another writer (each one is written again).",
            ["key"],
            registry=r,
        )
        self.last_reconcile = Gauge("tfleet_agent_last_reconcile_timestamp_seconds", "Unix time of the last completed reconcile.", registry=r)
        self.pass_errors = Counter("tfleet_agent_pass_errors_total", "Passes ended by an unexpected error (the loop backs off and goes on).", registry=r)
        self.pass_failing = Gauge("tfleet_agent_pass_failing", "1 while the agent's passes keep failing with an unexpected error.", registry=r)
