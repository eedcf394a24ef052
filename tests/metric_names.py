"""The metric names tfleet exports, and the metric names a PromQL expression refers to.

Used by the alert-rule and dashboard tests: a rule or panel that names a metric nobody
exports (a typo, a renamed metric, `_total` forgotten) never fires or stays empty, silently.

``exported_series()`` asks the project's own registries (AgentMetrics, ControllerMetrics,
SimMetrics) for their exposition, so every suffix (`_total`, `_bucket`, `_sum`, `_count`,
`_created`) and every label name comes from prometheus_client itself, not from a convention
re-implemented here. ``references()`` is a small PromQL scanner: enough for the expressions
we write (selectors, functions, aggregations, binary operators, Grafana's $variables), not a
full parser; promtool checks the syntax separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

# Series Prometheus writes for every target, whatever the target exports.
PROMETHEUS_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# The real TensorFlow Serving's names for the simulator's request metrics (its exporter turns
# "/tensorflow/serving/request_count" into ":tensorflow:serving:request_count"; counters get no
# _total; latency in microseconds). Labels as in tensorflow_serving/servables/tensorflow/util.cc.
# Rules and dashboards read these next to the simulator's names, so they work on either.
TF_SERVING_SERIES = {
    ":tensorflow:serving:request_count": frozenset({"model_name", "status"}),
    ":tensorflow:serving:request_latency_bucket": frozenset({"model_name", "API", "entrypoint", "le"}),
    ":tensorflow:serving:request_latency_sum": frozenset({"model_name", "API", "entrypoint"}),
    ":tensorflow:serving:request_latency_count": frozenset({"model_name", "API", "entrypoint"}),
}
# Labels a scraped series carries besides its own: the job and instance of its target, and the
# host label deploy/prometheus/prometheus.yml adds to agent and TF Serving targets.
TARGET_LABELS = frozenset({"job", "instance", "host"})

AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    }
)
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<variable>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
      | (?P<number>[0-9][0-9A-Za-z_.]*)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|.)""",
    re.VERBOSE | re.DOTALL,
)


def _instrument(metrics: object) -> None:
    """Create one child of every labelled metric, so that the exposition shows its series."""
    from tfleet.controller.metrics import ModelGauge

    for value in vars(metrics).values():
        if isinstance(value, (MetricWrapperBase, ModelGauge)) and value._labelnames:
            value.labels(*("x" for _ in value._labelnames))


def _sim_registry() -> CollectorRegistry:
    from tfleet.sim.metrics import SimMetrics
    from tfleet.tfs.types import VersionState

    sim = SimMetrics()
    sim.watch(
        lambda: {"m": {1: SimpleNamespace(state=VersionState.AVAILABLE)}},
        lambda: [SimpleNamespace(model="m", version=1, spec=SimpleNamespace(memory_mb=1))],
    )
    _instrument(sim)
    return sim.registry


def _daemon_registries() -> dict[str, CollectorRegistry]:
    from tfleet.agent.metrics import AgentMetrics
    from tfleet.controller.metrics import ControllerMetrics

    agent, controller = AgentMetrics(), ControllerMetrics()
    _instrument(agent)
    _instrument(controller)
    return {"agent": agent.registry, "controller": controller.registry}


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the agent, the controller and TF Serving (the simulator, and the real
    server's request metrics) expose, with the label names it can carry (its own, plus the
    target's), and Prometheus' own series."""
    found: dict[str, set[str]] = {name: set(TARGET_LABELS) for name in PROMETHEUS_SERIES}
    found.update({name: set(TARGET_LABELS | labels) for name, labels in TF_SERVING_SERIES.items()})
    for registry in [*_daemon_registries().values(), _sim_registry()]:
        for family in registry.collect():
            for sample in family.samples:
                found.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
    return {name: frozenset(labels) for name, labels in found.items()}


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]  # label names its matcher filters on


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(expr):
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


def _skip_group(tokens: list[tuple[str, str]], i: int, opening: str, closing: str) -> int:
    """Index after the group that opens at tokens[i]."""
    depth = 0
    while i < len(tokens):
        if tokens[i] == ("op", opening):
            depth += 1
        elif tokens[i] == ("op", closing):
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {opening}{closing}")


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_left/group_right lists."""
    tokens = _tokens(expr)
    names: set[str] = set()
    for i, (kind, text) in enumerate(tokens[:-1]):
        if kind == "ident" and text in _LABEL_LIST_KEYWORDS and tokens[i + 1] == ("op", "("):
            end = _skip_group(tokens, i + 1, "(", ")")
            names.update(t for k, t in tokens[i + 2 : end - 1] if k == "ident")
    return names


def references(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression, in order of appearance."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if text == "[":
            i = _skip_group(tokens, i, "[", "]")  # range or subquery: durations only
            continue
        if text == "{":  # a selector without a metric name
            labels, i = _matcher_labels(tokens, i)
            found.append(Selector("", labels))
            continue
        if kind != "ident":
            i += 1
            continue
        if text in _LABEL_LIST_KEYWORDS and following == ("op", "("):
            i = _skip_group(tokens, i + 1, "(", ")")
            continue
        if text in _KEYWORDS or text in AGGREGATIONS or following == ("op", "("):
            i += 1  # keyword, aggregation or function name
            continue
        if following == ("op", "{"):
            labels, i = _matcher_labels(tokens, i + 1)
        else:
            labels, i = frozenset(), i + 1
        found.append(Selector(text, labels))
    return found


def _matcher_labels(tokens: list[tuple[str, str]], i: int) -> tuple[frozenset[str], int]:
    end = _skip_group(tokens, i, "{", "}")
    inner = tokens[i + 1 : end - 1]
    labels = {text for j, (kind, text) in enumerate(inner) if kind == "ident" and j + 1 < len(inner) and inner[j + 1][1] in ("=", "!=", "=~", "!~")}
    return frozenset(labels), end


def problems(expr: str, exported: dict[str, frozenset[str]]) -> list[str]:
    """What in ``expr`` refers to nothing tfleet exports: unknown metrics, or label names the
    metric does not carry. Empty when all is well."""
    found = []
    for selector in references(expr):
        if not selector.metric:
            found.append(f"selector without a metric name ({sorted(selector.labels)}): name the metric")
        elif selector.metric not in exported:
            found.append(f"unknown metric {selector.metric!r}")
        elif unknown := selector.labels - exported[selector.metric]:
            found.append(f"{selector.metric} has no label {', '.join(sorted(unknown))} (it has {', '.join(sorted(exported[selector.metric]))})")
    every_label = set().union(*exported.values())
    for name in sorted(grouping_labels(expr) - every_label):
        found.append(f"no metric has the label {name!r} it groups or matches by")
    return found
