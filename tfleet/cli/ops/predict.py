"""tfleet predict: one Predict call to a host serving the model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from tfleet.cli.ops.context import Ops, _check_model_name, _unknown_model, fleet_command
from tfleet.cli.output import (
    EXIT_BAD_INPUT,
    CommandError,
    OpsCommand,
    bad_input,
    emit,
    note,
    output_option,
    refused,
)

if TYPE_CHECKING:
    from tfleet.cli.views import FleetView

# -- predict --------------------------------------------------------------------------------------


def _inputs(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad_input(f"--input is not JSON: {exc}") from None
    if isinstance(data, dict):
        if not data:
            raise bad_input("--input names no input")
        return data
    return {"x": data}  # a bare list or number: the default input name


def _candidates(ops: Ops, model: str, version: int | None, label: str | None) -> tuple[list[tuple[str, str]], str, FleetView | None]:
    """(host, grpc address) pairs serving what is asked, where they came from, and the view
    (None when the routes key answered)."""
    from tfleet.schema import RouteTable, SchemaError, parse

    kv = ops.store.get(ops.keyspace.routes(model))
    if kv is not None:
        try:
            routes = parse(RouteTable, kv.value, kv.key)
        except SchemaError as exc:
            note(f"tfleet predict: ignoring an unreadable routes key ({exc})")
        else:
            if version is not None:
                endpoints = routes.versions.get(str(version), [])
            elif label is not None:
                endpoints = routes.labels.get(label, [])
            else:
                endpoints = routes.endpoints
            return sorted((e.host, e.grpc_address) for e in endpoints), "routes", None
    view = ops.view()
    found = []
    for (host, name), status in view.fleet.statuses.items():
        record = view.fleet.hosts.get(host)
        if name != model or record is None:
            continue
        available = {v for v, r in status.versions.items() if r.state == "AVAILABLE"}
        if version is not None:
            ok = str(version) in available
        elif label is not None:
            ok = label in status.version_labels and str(status.version_labels[label]) in available
        else:
            ok = bool(available)
        if ok:
            found.append((host, record.grpc_address))
    return sorted(found), "status", view


def _known_versions(ops: Ops, view: FleetView, model: str) -> set[int]:
    """Versions anything in etcd mentions: registered, in the intent, reported by agents, routed."""
    known = {record.version for record in ops.registry.versions(model)}
    intent = view.intent(model)
    if intent is not None and intent.model_version_policy.specific is not None:
        known.update(intent.model_version_policy.specific.versions)
    for (_, name), status in view.fleet.statuses.items():
        if name == model:
            known.update(int(v) for v in status.versions if v.isdigit())
    routes = view.routes.get(model)
    if routes is not None:
        known.update(int(v) for v in routes.versions if v.isdigit())
    return known


@click.command("predict", cls=OpsCommand)
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=0), help="Ask this version.")
@click.option("--label", help="Ask the version under this label (e.g. stable).")
@click.option(
    "--input",
    "input_text",
    required=True,
    metavar="JSON",
    help='Inputs as JSON: {"x": [1.0, 2.0]} (name -> nested list of numbers, sent as DT_FLOAT); a bare list is input "x".',
)
@click.option("--host", help="Send to this host (default: the first host serving it).")
@click.option("--signature", default="serving_default", show_default=True, help="Signature to call.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Deadline of the Predict call, seconds.")
@output_option
@fleet_command
def predict(
    ops: Ops, model: str, version: int | None, label: str | None, input_text: str, host: str | None, signature: str, timeout: float, output: str
) -> None:
    """Send one gRPC Predict to a host serving MODEL and print the outputs."""
    from tfleet.tfs.predict import predict as send
    from tfleet.tfs.tensors import TensorError
    from tfleet.tfs.types import TfsDeadlineExceeded, TfsError, TfsUnavailable

    _check_model_name(model)
    if version is not None and label is not None:
        raise bad_input("give --version or --label, not both")
    inputs = _inputs(input_text)
    candidates, source, view = _candidates(ops, model, version, label)
    wanted = f"version {version}" if version is not None else (f"label {label}" if label is not None else "any version")
    if host is not None:
        chosen = [c for c in candidates if c[0] == host]
        if not chosen:
            record_kv = ops.store.get(ops.keyspace.host(host))
            if record_kv is None:
                raise bad_input(f"unknown host {host}: no agent registered it (hosts/{host})")
            from tfleet.schema import HostRecord, parse

            record = parse(HostRecord, record_kv.value, record_kv.key)
            note(f"tfleet predict: {host} is not listed as serving {model} ({wanted}); asking it anyway")
            chosen = [(host, record.grpc_address)]
        candidates = chosen
    if not candidates:
        view = view or ops.view()
        if not view.knows_model(model):
            raise _unknown_model(ops, model, view)
        if version is not None:
            known = _known_versions(ops, view, model)
            if version not in known:
                raise bad_input(f"unknown version {version} of {model} (known: {', '.join(map(str, sorted(known))) or 'none'})")
        raise refused(
            f"no host serves {model} ({wanted}) AVAILABLE (from the {'routes key' if source == 'routes' else 'agents status keys'}); see tfleet explain {model}"
        )
    target_host, address = candidates[0]
    try:
        result = send(address, model, inputs, version=version, label=label, signature=signature, timeout=timeout)
    except TensorError as exc:
        raise bad_input(f"--input: {exc}") from None
    except (TfsUnavailable, TfsDeadlineExceeded) as exc:
        raise refused(f"Predict on {target_host} ({address}) failed: {exc.message}") from None
    except TfsError as exc:
        # INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION: the request named something that is not there
        code = EXIT_BAD_INPUT if exc.code in (3, 5, 9) else 1
        raise CommandError(f"Predict on {target_host} ({address}) failed: {exc.message}", code) from None
    data = {"model": result.model, "version": result.version, "signature": result.signature, "host": target_host, "address": address, "outputs": result.outputs}

    def human() -> str:
        lines = [f"{result.model} version {result.version} on {target_host} ({address}):"]
        lines += [f"  {name}: {json.dumps(value)}" for name, value in result.outputs.items()]
        return "\n".join(lines)

    emit(output, data, human)
