"""`tfleet wait MODEL`: block until a model is ready, for scripts and the README.

Ready means: the controller's report is about the intent as it is now (its
``intent_revision`` is the intent's revision, so a report written before the last change
never counts), no rollout is in progress, and every wanted replica serves each version the
intent lists. Reads two keys per look (the intent and its report), never the whole fleet.
Exit codes: 0 ready, 1 not ready before --timeout, 2 unknown model or invalid intent, 3 etcd.
"""

from __future__ import annotations

import time
from typing import Any

import click

from tfleet.cli.ops import Ops, _check_model_name, fleet_command
from tfleet.cli.output import OpsCommand, bad_input, one_line, refused


def readiness(intent: Any, intent_revision: int, report: Any) -> tuple[bool, str]:
    """(ready, what is still missing in words): pure, on parsed documents."""
    if report is None:
        return False, "no report from the controller yet"
    if report.intent_revision != intent_revision:
        return False, f"the controller has not seen revision {intent_revision} of the intent yet"
    if report.error:
        return False, one_line(report.error)
    if report.rollout.phase != "stable":
        return False, f"rollout {report.rollout.phase}" + (f": {one_line(report.rollout.reason)}" if report.rollout.reason else "")
    specific = intent.model_version_policy.specific
    versions = [str(v) for v in specific.versions] if specific is not None else list(report.ready_replicas) or ["any"]
    short = {v: report.ready_replicas.get(v, 0) for v in versions if report.ready_replicas.get(v, 0) < intent.replicas}
    if short:
        return False, ", ".join(f"version {v}: {n}/{intent.replicas} replicas ready" for v, n in short.items())
    return True, ", ".join(f"version {v}: {report.ready_replicas.get(v, 0)}/{intent.replicas} replicas ready" for v in versions)


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
            ready, why = readiness(intent, intent_kv.mod_revision, report)
        except SchemaError as exc:
            ready, why = False, str(exc)  # the controller rewrites it; keep waiting
        if ready:
            click.echo(f"{model} ready: {why}")
            return
        if time.monotonic() >= deadline:
            raise refused(f"{model} not ready after {timeout:g} s: {why}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
