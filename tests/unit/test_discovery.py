"""The Prometheus http_sd document built from host records (pure)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tfleet.controller.discovery import JOB_HINTS, TFSERVING_METRICS_PATH, build_targets, label_meta_name
from tfleet.schema import HostRecord

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def record(host: str, *, metrics: str | None = "auto", labels: dict[str, str] | None = None, memory_mb: int = 2048) -> HostRecord:
    return HostRecord(
        host=host,
        grpc_address=f"{host}.example:8500",
        rest_address=f"{host}.example:8501",
        memory_mb=memory_mb,
        labels=labels or {},
        agent_version="0.1.0",
        started_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        metrics_address=f"{host}.example:9100" if metrics == "auto" else metrics,
    )


def test_one_agent_group_per_host_with_its_metrics_address() -> None:
    groups = build_targets([record("h2"), record("h1", labels={"zone": "a"})], "agents")
    assert groups == [
        {
            "targets": ["h1.example:9100"],
            "labels": {
                "__meta_tfleet_host": "h1",
                "__meta_tfleet_agent_version": "0.1.0",
                "__meta_tfleet_grpc_address": "h1.example:8500",
                "__meta_tfleet_rest_address": "h1.example:8501",
                "__meta_tfleet_memory_mb": "2048",
                "__meta_tfleet_label_zone": "a",
                "job_hint": "tfleet-agent",
            },
        },
        {
            "targets": ["h2.example:9100"],
            "labels": {
                "__meta_tfleet_host": "h2",
                "__meta_tfleet_agent_version": "0.1.0",
                "__meta_tfleet_grpc_address": "h2.example:8500",
                "__meta_tfleet_rest_address": "h2.example:8501",
                "__meta_tfleet_memory_mb": "2048",
                "job_hint": "tfleet-agent",
            },
        },
    ]


def test_tfserving_groups_use_the_rest_address_and_tf_servings_metrics_path() -> None:
    (group,) = build_targets([record("h1")], "tfserving")
    assert group["targets"] == ["h1.example:8501"]
    assert group["labels"]["__metrics_path__"] == TFSERVING_METRICS_PATH == "/monitoring/prometheus/metrics"
    assert group["labels"]["job_hint"] == JOB_HINTS["tfserving"] == "tensorflow-serving"
    assert group["labels"]["__meta_tfleet_host"] == "h1"


def test_agent_without_metrics_address_has_no_agent_target_but_keeps_its_tfserving_target() -> None:
    old = record("old", metrics=None)
    assert build_targets([old], "agents") == []
    assert [g["targets"] for g in build_targets([old], "tfserving")] == [["old.example:8501"]]


def test_empty_fleet_is_an_empty_list() -> None:
    assert build_targets([], "agents") == [] and build_targets([], "tfserving") == []


def test_host_label_names_are_made_valid_prometheus_label_names() -> None:
    assert label_meta_name("topology.kubernetes.io/zone") == "__meta_tfleet_label_topology_kubernetes_io_zone"
    assert label_meta_name("gpu-type") == "__meta_tfleet_label_gpu_type"
    (group,) = build_targets([record("h1", labels={"a.b": "1", "a-b": "2", "rack": "r7"})], "agents")
    labels = group["labels"]
    # "a-b" sorts before "a.b": the first one in name order wins a sanitized name, every time
    assert labels["__meta_tfleet_label_a_b"] == "2" and labels["__meta_tfleet_label_rack"] == "r7"


@pytest.mark.parametrize("kind", ["agents", "tfserving"])
def test_document_satisfies_http_sd_format(kind: str) -> None:
    """Prometheus' rules: a JSON list of {targets: [str], labels: {str: str}}, valid label names."""
    hosts = [record(f"h{i}", labels={"zone": "z", "weird key!": "v"}, memory_mb=i) for i in range(5)]
    document = json.loads(json.dumps(build_targets(hosts, kind)))
    assert isinstance(document, list) and len(document) == 5
    for group in document:
        assert set(group) == {"targets", "labels"}
        assert all(isinstance(t, str) and re.fullmatch(r"[^/\s]+:\d+", t) for t in group["targets"])
        for name, value in group["labels"].items():
            assert _LABEL_NAME.fullmatch(name), name
            assert isinstance(value, str), (name, value)
        assert [name for name in group["labels"] if not name.startswith("__")] == ["job_hint"]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="agents"):
        build_targets([], "controllers")  # type: ignore[arg-type]
