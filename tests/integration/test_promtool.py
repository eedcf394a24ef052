"""promtool (Prometheus' own checker) accepts what tfleet ships and renders, and evaluates it.

* deploy/prometheus: the rules parse, their unit tests (deploy/prometheus/tests/*.yml) pass,
  the example configuration is valid;
* `tfleet alerts render`: the rendered per-model rules parse and fire above their thresholds
  only, on series shaped like the simulator's and like the real TF Serving's;
* deploy/grafana: every dashboard query is valid PromQL.

promtool is a process (Debian's prometheus package; scripts/ensure-system-deps installs it);
without it these tests skip. The checks that only read the files are in tests/unit/.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from tests.monitoring import (
    ALERT_INTENTS,
    GRAFANA_VARIABLES,
    PROMETHEUS,
    RULE_TESTS,
    RULES,
    alert_intent,
    dashboard_exprs,
    load_dashboard,
    promtool,
)
from tfleet.cli.alerts import render_yaml


# -- deploy/prometheus --------------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests/"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


# -- `tfleet alerts render`: the rendered rules ------------------------------------------------


def test_rendered_file_passes_promtool_check(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tfleet-model-alerts.yml"
    path.write_text(render_yaml(ALERT_INTENTS, "test"))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout


# The simulator's names and units, and the real TF Serving's (latency in microseconds).
FLAVOURS = {
    "simulator": ("tensorflow_serving_request_latency_bucket", 1, "tensorflow_serving_request_count_total"),
    "tf-serving": (":tensorflow:serving:request_latency_bucket", 1_000_000, ":tensorflow:serving:request_count"),
}


def _bucket_series(metric: str, scale: int, model: str, per_minute: dict[float, int]) -> list[dict[str, str]]:
    def bound(le: float) -> str:
        return "+Inf" if le == float("inf") else f"{le * scale:g}"

    return [
        {"series": f'{metric}{{model_name="{model}", API="predict", entrypoint="GRPC", le="{bound(le)}"}}', "values": f"0+{count}x30"}
        for le, count in per_minute.items()
    ]


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_rendered_rules_fire_above_their_thresholds_only(tmp_path: pathlib.Path, flavour: str) -> None:
    """promtool evaluates the rendered rules on series shaped like the simulator's, and like
    the real TF Serving's."""
    latency_metric, scale, requests_metric = FLAVOURS[flavour]
    intents = {
        "slow": alert_intent(latency_p99_ms=250, **{"for": "2m"}),
        "fast": alert_intent(latency_p99_ms=250, **{"for": "2m"}),
        "flaky": alert_intent(error_rate=0.05),
        "fine": alert_intent(error_rate=0.05),
    }
    (tmp_path / "rendered.yml").write_text(render_yaml(intents, "test"))
    inf = float("inf")
    slow = {0.1: 0, 0.25: 10, 0.5: 100, inf: 100}  # 90% between 250 and 500 ms: p99 = 250 + 250 * 89/90
    fast = {0.1: 100, 0.25: 100, 0.5: 100, inf: 100}
    requests = [
        ("flaky", "OK", 90),
        ("flaky", "UNAVAILABLE", 10),  # 10% fail
        ("fine", "OK", 99),
        ("fine", "NOT_FOUND", 1),  # 1% fail
    ]
    series = (
        _bucket_series(latency_metric, scale, "slow", slow)
        + _bucket_series(latency_metric, scale, "fast", fast)
        + [{"series": f'{requests_metric}{{model_name="{m}", status="{s}"}}', "values": f"0+{n}x30"} for m, s, n in requests]
    )
    tests = {
        "rule_files": ["rendered.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "TfleetModelLatencyHigh", "exp_alerts": []},  # pending for 2m
                    {
                        "eval_time": "10m",
                        "alertname": "TfleetModelLatencyHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model": "slow", "model_name": "slow"},
                                "exp_annotations": {
                                    "summary": "p99 latency of slow is 497.2ms, above its threshold of 250 ms",
                                    "description": "The 99th percentile of slow's request latency over all its hosts has been above 250 ms"
                                    " (alerts.latency_p99_ms of its intent) for 2m.",
                                    "runbook": "docs/monitoring.md#per-model-alerts-tfleet-alerts-render",
                                },
                            }
                        ],
                    },
                    {"eval_time": "4m", "alertname": "TfleetModelErrorRateHigh", "exp_alerts": []},  # pending for 5m
                    {
                        "eval_time": "10m",
                        "alertname": "TfleetModelErrorRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model": "flaky", "model_name": "flaky"},
                                "exp_annotations": {
                                    "summary": "10% of flaky's requests fail, above its threshold of 0.05",
                                    "description": "The share of flaky's requests answered with a status other than OK, over all its hosts,"
                                    " has been above 0.05 (alerts.error_rate of its intent) for 5m.",
                                    "runbook": "docs/monitoring.md#per-model-alerts-tfleet-alerts-render",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- deploy/grafana ---------------------------------------------------------------------------------


def test_dashboard_queries_are_valid_promql(tmp_path: pathlib.Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as a recording rule."""
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs(load_dashboard())):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
