"""deploy/grafana/tfleet-dashboard.json: it parses, every panel queries something, and every
metric and label it queries is one tfleet (or TF Serving, as the simulator exports it) has.
(promtool parses the queries in tests/integration/test_promtool.py.)"""

from __future__ import annotations

import re

import pytest

from tests.metric_names import exported_series, problems, references
from tests.monitoring import all_panels, dashboard_exprs, load_dashboard, query_panels


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard()


def test_dashboard_has_identity_and_a_prometheus_datasource_variable(dashboard: dict) -> None:
    assert dashboard["uid"] == "tfleet-overview" and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_every_panel_has_targets_on_the_chosen_datasource(dashboard: dict) -> None:
    panels = query_panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: dict) -> None:
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_query_names_only_exported_metrics_and_labels(dashboard: dict) -> None:
    exported = exported_series()
    found = [f"{where}: {problem}" for where, expr in dashboard_exprs(dashboard) for problem in problems(expr, exported)]
    assert not found, "\n".join(found)


def test_model_variable_lists_model_names_from_an_exported_metric(dashboard: dict) -> None:
    (model,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    match = re.fullmatch(r"label_values\((?P<selector>[^,]+),\s*(?P<label>\w+)\)", model["query"]["query"])
    assert match and model["definition"] == model["query"]["query"]
    exported = exported_series()
    assert problems(match["selector"], exported) == []
    (selector,) = references(match["selector"])
    assert match["label"] in exported[selector.metric] and match["label"] == "model"
    assert model["multi"] and model["includeAll"] and model["allValue"] == ".+"


def test_per_model_panels_follow_the_model_variable(dashboard: dict) -> None:
    model_row = False
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            model_row = "$model" in panel["title"]
            continue
        if model_row:
            for target in panel["targets"]:
                assert re.search(r'model(_name)?=~"\$model"', target["expr"]), (panel["title"], target["expr"])


def test_the_views_operators_asked_for_are_there(dashboard: dict) -> None:
    used = {s.metric for _, expr in dashboard_exprs(dashboard) for s in references(expr)}
    assert {
        "tensorflow_serving_request_count_total",  # request rate, errors
        "tensorflow_serving_request_latency_bucket",  # latency p50 / p99
        ":tensorflow:serving:request_count",
        ":tensorflow:serving:request_latency_bucket",  # the same, real TF Serving
        "tfleet_controller_replicas_ready",
        "tfleet_controller_replicas_wanted",
        "tfleet_agent_assignment_to_available_seconds_bucket",  # convergence
        "up",
        "tfleet_controller_live_hosts",  # hosts
        "tfleet_controller_is_leader",
        "tfleet_controller_reconcile_total",
        "tfleet_agent_reconcile_total",
    } <= used
    latency = [expr for _, expr in dashboard_exprs(dashboard) if "tensorflow_serving_request_latency_bucket" in expr]
    assert any("histogram_quantile(0.5," in e for e in latency) and any("histogram_quantile(0.99," in e for e in latency)
    # the real server's latency is in microseconds: every query of it converts to seconds
    assert all(e.count(":tensorflow:serving:request_latency_bucket") == e.count("/ 1e6") for e in latency)
