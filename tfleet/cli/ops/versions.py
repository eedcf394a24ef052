"""tfleet register: record a model version in the registry."""

from __future__ import annotations

import click

from tfleet.cli.ops.context import Ops, _check_model_name, author_option, fleet_command
from tfleet.cli.output import (
    OpsCommand,
    emit,
    format_size,
    jsonable,
    output_option,
)

# -- register -------------------------------------------------------------------------------------


@click.command("register", cls=OpsCommand)
@click.argument("model")
@click.argument("version", type=click.IntRange(min=0))
@click.option("--base-path", help="Directory holding <VERSION>/saved_model.pb (default: the intent's base_path).")
@click.option("--source-uri", default="", help="Where the model came from (training run, bucket).")
@click.option("--source-commit", default="", help="Commit of the code that produced it.")
@click.option("--description", default="", help="Free text for people.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@author_option
@output_option
@fleet_command
def register(
    ops: Ops,
    model: str,
    version: int,
    base_path: str | None,
    source_uri: str,
    source_commit: str,
    description: str,
    tags: tuple[str, ...],
    author: str,
    output: str,
) -> None:
    """Register VERSION of MODEL: checksum its directory and record where it came from."""
    from tfleet.schema import utc_now

    _check_model_name(model)
    started = utc_now()
    record = ops.registry.register_version(
        model, version, base_path=base_path, source_uri=source_uri, source_commit=source_commit, description=description, tags=tags, registered_by=author
    )
    existed = record.registered_at < started

    def human() -> str:
        what = "already registered with the same files" if existed else "registered"
        return f"{model} version {version} {what}: {record.checksum} ({format_size(record.size_bytes)}, {record.path})"

    emit(output, {**jsonable(record), "already_registered": existed}, human)
