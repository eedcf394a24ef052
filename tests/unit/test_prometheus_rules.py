"""deploy/prometheus: the alert rules, their promtool unit tests and the example configuration.

promtool checks the syntax and runs deploy/prometheus/tests/*.yml in
tests/integration/test_promtool.py. What is checked here reads the files only: every metric and label a rule names is exported by tfleet, every
alert is unit-tested both firing and silent, and every runbook link leads somewhere.
"""

from __future__ import annotations

import re

import yaml

from tests.metric_names import PROMETHEUS_SERIES, exported_series, grouping_labels, problems, references
from tests.monitoring import ROOT, RULE_TESTS, RULES

MONITORING_DOC = ROOT / "docs" / "monitoring.md"

REQUIRED_ALERTS = {
    "TfleetHostDown",
    "TfleetModelBelowWantedReplicas",
    "TfleetVersionFailingToLoad",
    "TfleetRolloutStuck",
    "TfleetNoControllerLeader",
    "TfleetConvergenceSlow",
}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_tests() -> list[dict]:
    return [case for path in RULE_TESTS for case in yaml.safe_load(path.read_text())["tests"]]


# -- contents --------------------------------------------------------------------------------


def test_the_alerts_operators_rely_on_exist() -> None:
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in alert_rules()}


def test_every_rule_names_only_exported_metrics_and_labels() -> None:
    exported = exported_series()
    found = {f"{rule['alert']}: {problem}" for rule in alert_rules() for problem in problems(rule["expr"], exported)}
    assert not found, "\n".join(sorted(found))


def test_every_alert_rule_is_tested_firing_and_silent() -> None:
    """Each rule (an alert name, with its `cause` when several rules share the name) must have
    a promtool case where it fires and one where that alert name stays silent."""
    fired: set[tuple[str, str | None]] = set()
    silent: set[str] = set()
    for case in rule_tests():
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            if not expected:
                silent.add(check["alertname"])
            for alert in expected:
                fired.add((check["alertname"], alert.get("exp_labels", {}).get("cause")))
    rules = {(rule["alert"], rule.get("labels", {}).get("cause")) for rule in alert_rules()}
    assert rules - fired == set(), "rules never tested firing"
    assert {name for name, _ in rules} - silent == set(), "alerts never tested silent"


def test_rules_sharing_an_alert_name_differ_by_cause() -> None:
    seen: dict[str, list[str | None]] = {}
    for rule in alert_rules():
        seen.setdefault(rule["alert"], []).append(rule.get("labels", {}).get("cause"))
    for name, causes in seen.items():
        if len(causes) > 1:
            assert None not in causes and len(set(causes)) == len(causes), (name, causes)


def test_every_alert_has_severity_summary_and_a_runbook_section_in_the_docs() -> None:
    anchors = {_anchor(line.lstrip("#").strip()) for line in MONITORING_DOC.read_text().splitlines() if line.startswith("#")}
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/monitoring.md" and anchor in anchors, (rule["alert"], anchor)


def test_every_exported_metric_is_documented() -> None:
    """docs/monitoring.md lists every metric family (a histogram by its base name)."""
    documented = set(re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*)", MONITORING_DOC.read_text()))
    exported = exported_series()
    missing = set()
    for name in exported:
        if name in PROMETHEUS_SERIES or name.endswith("_created"):
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        family = base if f"{base}_bucket" in exported else name
        if family not in documented:
            missing.add(family)
    assert not missing, f"not in docs/monitoring.md: {sorted(missing)}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


# -- the PromQL scanner the metric checks rely on ---------------------------------------------


def test_scanner_finds_selectors_and_ignores_functions_keywords_and_label_lists() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, model_name) (rate(tensorflow_serving_request_latency_bucket"
        '{model_name=~"$model", API="predict"}[$__rate_interval]))) > 0.25'
        " and on (instance) (tfleet_controller_is_leader == 1) unless x offset 15m"
    )
    assert [(s.metric, sorted(s.labels)) for s in references(expr)] == [
        ("tensorflow_serving_request_latency_bucket", ["API", "model_name"]),
        ("tfleet_controller_is_leader", []),
        ("x", []),
    ]
    assert grouping_labels(expr) == {"le", "model_name", "instance"}


def test_scanner_reports_typos() -> None:
    exported = exported_series()
    assert problems("tfleet_controller_replicas_ready", exported) == []
    assert problems("tfleet_agent_reconcile", exported) == ["unknown metric 'tfleet_agent_reconcile'"]  # _total forgotten
    assert problems("tensorflow_serving_request_latency_seconds_bucket", exported) != []
    assert "model_name" in problems('tfleet_controller_replicas_ready{model_name="m"}', exported)[0]
    assert problems("sum by (modle) (tfleet_controller_replicas_ready)", exported) == ["no metric has the label 'modle' it groups or matches by"]
    assert problems('{__name__="up"}', exported)[0].startswith("selector without a metric name")


def test_exported_series_come_from_the_registries() -> None:
    exported = exported_series()
    assert {
        "tfleet_agent_reconcile_total",
        "tfleet_agent_assignment_to_available_seconds_bucket",
        "tfleet_controller_is_leader",
        "tensorflow_serving_request_count_total",
        "up",
    } <= set(exported)
    assert "tfleet_agent_reconcile" not in exported  # a counter is only exposed with _total
    assert exported["tensorflow_serving_request_latency_bucket"] >= {"model_name", "le", "API", "entrypoint", "host"}
