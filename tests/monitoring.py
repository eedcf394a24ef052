"""What the monitoring tests share: the shipped Prometheus rules and Grafana dashboard, the
intents `tfleet alerts render` turns into rules, and promtool.

The checks that read these files run in tests/unit/ (test_prometheus_rules.py,
test_grafana_dashboard.py, test_alerts_render.py); the ones that run promtool, a process, in
tests/integration/test_promtool.py.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest

from tfleet.schema import ModelIntent

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "tfleet-rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "tfleet-dashboard.json"
# Grafana's variables, replaced by values PromQL accepts, to check the queries' syntax.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$model": ".+", "${model}": ".+"}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels of collapsed rows
    return found


def query_panels(dashboard: dict) -> list[dict]:
    return [p for p in all_panels(dashboard) if p["type"] != "row"]


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title / query refId, PromQL) of every query of the dashboard."""
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in query_panels(dashboard) for t in p["targets"]]


def alert_intent(**alerts: Any) -> ModelIntent:
    """An intent with these per-model alert thresholds (none: no ``alerts`` field)."""
    return ModelIntent.model_validate({"base_path": "/models/x", **({"alerts": alerts} if alerts else {})})


# Three models: two thresholds, one, none (3 rules in all).
ALERT_INTENTS = {
    "resnet": alert_intent(latency_p99_ms=250, error_rate=0.01, **{"for": "10m"}),
    "bert": alert_intent(error_rate=0.05),
    "plain": alert_intent(),
}


def promtool(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; skip the test when it is not installed (Debian's prometheus package, which
    scripts/ensure-system-deps installs as root; a developer machine may lack it)."""
    executable = shutil.which("promtool")
    if executable is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/ensure-system-deps installs it)")
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
