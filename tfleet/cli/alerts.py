"""`tfleet alerts render`: per-model alert thresholds (``ModelIntent.alerts``) as Prometheus rules.

An intent may carry ``"alerts": {"latency_p99_ms": 250, "error_rate": 0.01, "for": "10m"}``.
``render_rules`` turns every such intent into two alerting rules on TF Serving's own metrics
(docs/simulator.md lists them):

* TfleetModelLatencyHigh: the p99 of ``tensorflow_serving_request_latency`` (seconds) over all
  hosts, entry points and APIs of the model is above ``latency_p99_ms``;
* TfleetModelErrorRateHigh: the share of ``tensorflow_serving_request_count_total`` whose
  status is not OK is above ``error_rate``.

Those are the simulator's names. The real TensorFlow Serving exports the same metrics as
``:tensorflow:serving:request_count`` and ``:tensorflow:serving:request_latency_bucket`` (in
microseconds; its --monitoring_config_file must enable Prometheus), so every expression also
reads those (``... or ...``, the latency divided by 1e6): one rules file fits both.

Both hold for the intent's ``for`` before they fire. The file is meant for Prometheus'
``rule_files`` (deploy/prometheus/prometheus.yml loads ``tfleet-model-alerts*.yml``); render it
again, e.g. from cron or CI, after intents change, then reload Prometheus.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import click
import yaml
from pydantic import ValidationError

from tfleet.cli.options import etcd_options, etcd_settings, fleet_prefix, unreachable_message
from tfleet.keyspace import DEFAULT_PREFIX, InvalidName, Keyspace, validate_name
from tfleet.ports import KeyReader
from tfleet.schema import ModelIntent, SchemaError, explain, parse

# (simulator's name, real TF Serving's name); the real latency is in microseconds.
LATENCY_METRICS = ("tensorflow_serving_request_latency_bucket", ":tensorflow:serving:request_latency_bucket")
REQUEST_METRICS = ("tensorflow_serving_request_count_total", ":tensorflow:serving:request_count")
DEFAULT_WINDOW = "5m"
_DURATION = re.compile(r"[0-9]+[smhd]")


class RenderError(ValueError):
    """Intents that cannot be rendered, explained per model."""


def _string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(value: float) -> str:
    return repr(float(value))


def _p99(metric: str, model: str, window: str) -> str:
    return f"histogram_quantile(0.99, sum by (model_name, le) (rate({metric}{{model_name={model}}}[{window}])))"


def _requests(matchers: str, window: str) -> str:
    simulator, real = REQUEST_METRICS
    return f"sum by (model_name) (rate({simulator}{{{matchers}}}[{window}]) or rate({real}{{{matchers}}}[{window}]))"


def model_rules(model: str, intent: ModelIntent, window: str = DEFAULT_WINDOW) -> list[dict[str, Any]]:
    """The alerting rules of one model (none when its intent sets no thresholds)."""
    thresholds = intent.alerts
    if thresholds is None:
        return []
    name = _string(model)
    labels = {"severity": "warning", "model": model}
    rules: list[dict[str, Any]] = []
    if thresholds.latency_p99_ms is not None:
        limit = thresholds.latency_p99_ms
        rules.append(
            {
                "alert": "TfleetModelLatencyHigh",
                "expr": (f"(\n  {_p99(LATENCY_METRICS[0], name, window)}\n  or\n  {_p99(LATENCY_METRICS[1], name, window)} / 1e6\n) > {_number(limit / 1000)}"),
                "for": thresholds.for_,
                "labels": dict(labels),
                "annotations": {
                    "summary": f"p99 latency of {model} is {{{{ $value | humanizeDuration }}}}, above its threshold of {limit:g} ms",
                    "description": (
                        f"The 99th percentile of {model}'s request latency over all its hosts has been above "
                        f"{limit:g} ms (alerts.latency_p99_ms of its intent) for {thresholds.for_}."
                    ),
                    "runbook": "docs/monitoring.md#per-model-alerts-tfleet-alerts-render",
                },
            }
        )
    if thresholds.error_rate is not None:
        limit = thresholds.error_rate
        rules.append(
            {
                "alert": "TfleetModelErrorRateHigh",
                "expr": (
                    _requests(f'model_name={name}, status!="OK"', window)
                    + "\n"
                    + "  / "
                    + _requests(f"model_name={name}", window)
                    + "\n"
                    + f"> {_number(limit)}"
                ),
                "for": thresholds.for_,
                "labels": dict(labels),
                "annotations": {
                    "summary": f"{{{{ $value | humanizePercentage }}}} of {model}'s requests fail, above its threshold of {limit:.4g}",
                    "description": (
                        f"The share of {model}'s requests answered with a status other than OK, over all its hosts, "
                        f"has been above {limit:.4g} (alerts.error_rate of its intent) for {thresholds.for_}."
                    ),
                    "runbook": "docs/monitoring.md#per-model-alerts-tfleet-alerts-render",
                },
            }
        )
    return rules


def render_rules(intents: Mapping[str, ModelIntent], window: str = DEFAULT_WINDOW) -> dict[str, Any]:
    """The rules document: one group per model with thresholds, in model-name order."""
    if not _DURATION.fullmatch(window):
        raise ValueError(f"rate window {window!r} must be a whole number of s, m, h or d, e.g. 5m")
    groups = []
    for model in sorted(intents):
        validate_name("model", model)
        rules = model_rules(model, intents[model], window)
        if rules:
            groups.append({"name": f"tfleet-model-{model}", "rules": rules})
    return {"groups": groups}


def render_yaml(intents: Mapping[str, ModelIntent], source: str, window: str = DEFAULT_WINDOW) -> str:
    """The rules file as text, with a header saying where it came from."""
    document = render_rules(intents, window)
    header = (
        f"# Generated by `tfleet alerts render` from {source}; do not edit by hand.\n"
        "# Thresholds come from the `alerts` field of each model's intent (docs/monitoring.md).\n"
    )
    return header + yaml.dump(document, Dumper=_RulesDumper, sort_keys=False, width=120, allow_unicode=True)


class _RulesDumper(yaml.SafeDumper):
    """Writes multi-line strings (expressions) as literal blocks, as people write rules."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _represent_str)


# -- reading intents -----------------------------------------------------------------------------


def intents_from_documents(documents: Mapping[str, Any], source: str) -> dict[str, ModelIntent]:
    """Validate ``{model: intent document}``; RenderError lists every problem."""
    intents, errors = {}, []
    for model, document in documents.items():
        try:
            validate_name("model", str(model))
            if not isinstance(document, dict):
                raise ValueError(f"must be a mapping, found {type(document).__name__}")
            intents[str(model)] = ModelIntent.model_validate(document)
        except ValidationError as exc:
            errors.append(f"{source}: model {model}: {explain(exc)}")
        except (InvalidName, ValueError) as exc:
            errors.append(f"{source}: model {model}: {exc}")
    if errors:
        raise RenderError("\n".join(errors))
    return intents


def intents_from_file(path: pathlib.Path) -> dict[str, ModelIntent]:
    """A YAML (or JSON) file mapping model names to intent documents, as stored in etcd."""
    try:
        documents = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: {exc}") from None
    if documents is None:
        return {}
    if not isinstance(documents, dict):
        raise RenderError(f"{path}: must map model names to intents, found {type(documents).__name__}")
    return intents_from_documents(documents, str(path))


def intents_from_etcd(store: KeyReader, keyspace: Keyspace) -> tuple[dict[str, ModelIntent], list[str]]:
    """Every intent under ``<prefix>/models/`` (one read): (valid intents, problems)."""
    prefix = keyspace.models_prefix()
    intents, problems = {}, []
    for kv in store.list_prefix(prefix).items:
        try:
            model = keyspace.name_after(kv.key, prefix)
            intents[model] = parse(ModelIntent, kv.value, kv.key)
        except (InvalidName, SchemaError) as exc:
            problems.append(str(exc))
    return intents, problems


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Replace path with text so that a reader (Prometheus reloading) sees the old file or the
    new one, never a part: write a temporary file next to it, fsync, rename."""
    directory = path.parent
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# -- the command -----------------------------------------------------------------------------


@click.group("alerts", context_settings={"show_default": True})
def alerts() -> None:
    """Prometheus alerts of a fleet (docs/monitoring.md)."""


@alerts.command("render", context_settings={"show_default": True})
@etcd_options
@click.option("--prefix", default=DEFAULT_PREFIX, envvar="TFLEET_PREFIX", show_envvar=True, help="etcd key prefix of this fleet.")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="Render offline from a YAML file mapping model names to intents, instead of etcd.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=pathlib.Path), help="Rules file to write (atomically) [default: standard output].")
@click.option("--rate-window", default=DEFAULT_WINDOW, help="Range of the rate() the thresholds are checked over.")
@click.option("--skip-invalid", is_flag=True, help="Render the valid intents even when some are invalid (default: refuse, keeping the old file).")
def render(from_file: pathlib.Path | None, output: pathlib.Path | None, rate_window: str, skip_invalid: bool, prefix: str, **etcd: Any) -> None:
    """Render the per-model thresholds of every intent (its `alerts` field) into a Prometheus rules file."""
    if not _DURATION.fullmatch(rate_window):
        raise click.BadParameter(f"{rate_window!r} must be a whole number of s, m, h or d, e.g. 5m", param_hint="--rate-window")
    problems: list[str] = []
    if from_file is not None:
        source = str(from_file)
        try:
            intents = intents_from_file(from_file)
        except RenderError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        intents, problems, source = _read_etcd(etcd, prefix)
    if problems:
        for problem in problems:
            click.echo(f"invalid intent: {problem}", err=True)
        if not skip_invalid:
            raise click.ClickException(
                f"{len(problems)} intent(s) are invalid; nothing written (their alerts would be lost). Fix them, or pass --skip-invalid to render the others."
            )
    text = render_yaml(intents, source, rate_window)
    rules = sum(len(group["rules"]) for group in render_rules(intents, rate_window)["groups"])
    with_alerts = sum(1 for intent in intents.values() if intent.alerts is not None)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomically(output, text)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc}") from None
    click.echo(f"rendered {rules} alert rule(s) for {with_alerts} of {len(intents)} models" + (f" written to {output}" if output else ""), err=True)


def _read_etcd(options: dict[str, Any], prefix: str) -> tuple[dict[str, ModelIntent], list[str], str]:
    from tfleet.store import EtcdStore, StoreError

    settings = etcd_settings(options)
    prefix = fleet_prefix(prefix)
    try:
        keyspace = Keyspace(prefix)
    except InvalidName as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix") from None
    try:
        with EtcdStore(settings) as store:
            intents, problems = intents_from_etcd(store, keyspace)
    except StoreError as exc:
        raise click.ClickException(unreachable_message(exc)) from None
    return intents, problems, f"the intents under {keyspace.models_prefix()}"
