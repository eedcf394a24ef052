"""`tfleet wait MODEL`: block until a model is ready, for scripts and the README.

Ready means: the controller's report is about the intent as it is now (its
``intent_revision`` is the intent's revision, so a report written before the last change
never counts), no rollout is in progress, and every wanted replica serves each version the
intent lists. Reads two keys per look (the intent and its report), never the whole fleet.
Exit codes: 0 ready, 1 not ready before --timeout, 2 unknown model or invalid intent, 3 etcd.
"""

from __future__ import annotations

import time
import click

from tfleet.cli.ops.context import Ops, _check_model_name, fleet_command
from tfleet.cli.output import OpsCommand, bad_input, refused
from tfleet.health import intent_ready


@click.command("wait", cls=OpsCommand)
@click.argument("model")
@click.option("--timeout", default=120.0, type=click.FloatRange(min=0), show_default=True, help="Seconds to wait before giving up (exit 1).")
@click.option("--interval", default=0.5, type=click.FloatRange(min=0.05), show_default=True, help="Seconds between looks.")
@fleet_command
def wait(ops: Ops, model: str, timeout: float, interval: float) -> None:
    """Wait until MODEL is ready: its wanted replicas serve the intent's versions, no rollout runs."""
    from tfleet.schema import ModelIntent, ModelStatusReport, SchemaError, parse

    _check_model_name(model)
    deadline = time.monotonic() + timeout
    why = ""
    while True:
        intent_kv = ops.store.get(ops.keyspace.model(model))
        if intent_kv is None:
            raise bad_input(f"unknown model {model} (no intent at {ops.keyspace.model(model)})")
        try:
            intent = parse(ModelIntent, intent_kv.value, intent_kv.key)
        except SchemaError as exc:
            raise bad_input(f"the intent is invalid, it will never be ready: {exc}") from None
        report_kv = ops.store.get(ops.keyspace.modelstatus(model))
        try:
            report = parse(ModelStatusReport, report_kv.value, report_kv.key) if report_kv is not None else None
            ready, why = intent_ready(intent, intent_kv.mod_revision, report)
        except SchemaError as exc:
            ready, why = False, str(exc)  # the controller rewrites it; keep waiting
        if ready:
            click.echo(f"{model} ready: {why}")
            return
        if time.monotonic() >= deadline:
            raise refused(f"{model} not ready after {timeout:g} s: {why}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
