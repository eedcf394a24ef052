"""A model's intent history: history, diff, rollback."""

from __future__ import annotations

import json

import click

from tfleet.cli.ops.context import Ops, _check_model_name, _unknown_model, author_option, fleet_command
from tfleet.cli.output import (
    OpsCommand,
    emit,
    format_time,
    output_option,
    refused,
    short,
    table,
)

# -- history, diff, rollback ----------------------------------------------------------------------


@click.command("history", cls=OpsCommand)
@click.argument("model")
@click.option("--limit", type=click.IntRange(min=1), help="Show only the newest N entries.  [default: every entry kept]")
@click.option("--before", type=click.IntRange(min=1), help="Show only entries older than sequence SEQ (to page back).")
@output_option
@fleet_command
def history(ops: Ops, model: str, limit: int | None, before: int | None, output: str) -> None:
    """Every recorded change of MODEL's intent: who, when, what changed.

    Gaps (changes etcd compacted before the controller recorded them) show as action "gap"
    with the revisions they cover. Entries older than the retention (tfleet controller
    --history-keep) are pruned.
    """
    from tfleet.cli.views import history_summary

    _check_model_name(model)
    entries = ops.registry.history(model, limit=limit, before=before)
    if not entries and before is None and ops.store.get(ops.keyspace.model(model)) is None:
        raise _unknown_model(ops, model)

    def human() -> str:
        if not entries:
            if before is not None:
                return f"{model} has no history entry before {before} (older entries are pruned, or there were none)"
            return f"{model} has no history entry yet (written with etcdctl; the controller records it)"
        return table(
            [
                [
                    e.sequence,
                    format_time(e.at),
                    e.author or ("etcdctl" if e.source == "etcd" else "-"),
                    e.source,
                    e.action,
                    e.revision,
                    short(history_summary(e), 80),
                ]
                for e in entries
            ],
            ["seq", "at", "author", "source", "action", "revision", "changes"],
        )

    emit(output, entries, human)


@click.command("diff", cls=OpsCommand)
@click.argument("model")
@click.argument("seq1", type=click.IntRange(min=1))
@click.argument("seq2", type=click.IntRange(min=1))
@output_option
@fleet_command
def diff(ops: Ops, model: str, seq1: int, seq2: int, output: str) -> None:
    """What changed in MODEL's intent from history entry SEQ1 to SEQ2."""
    _check_model_name(model)
    changes = ops.registry.diff(model, seq1, seq2)
    data = [{"path": c.path, "old": c.old, "new": c.new} for c in changes]

    def human() -> str:
        if not changes:
            return f"no differences between entries {seq1} and {seq2} of {model}"
        return table([[c.path, json.dumps(c.old), json.dumps(c.new)] for c in changes], ["field", f"entry {seq1}", f"entry {seq2}"])

    emit(output, data, human)


@click.command("rollback", cls=OpsCommand)
@click.argument("model")
@click.option("--to", "to_sequence", type=click.IntRange(min=1), help="History entry to restore (default: undo the last change).")
@author_option
@output_option
@fleet_command
def rollback(ops: Ops, model: str, to_sequence: int | None, author: str, output: str) -> None:
    """Restore the intent recorded at a history entry (default: the one before the last)."""
    from tfleet.cli.views import history_summary
    from tfleet.registry import ConflictError

    _check_model_name(model)
    before = ops.registry.history(model, limit=2)  # the newest two: all "undo the last change" needs
    if not before and ops.store.get(ops.keyspace.model(model)) is None:
        raise _unknown_model(ops, model)
    target = to_sequence if to_sequence is not None else (before[-2].sequence if len(before) >= 2 else None)
    try:
        revision = ops.registry.rollback(model, to_sequence=to_sequence, author=author or None)
    except ConflictError as exc:
        raise refused(ops.conflict(exc, "rollback")) from None
    after = ops.registry.history(model, limit=1)
    written = bool(after) and (not before or after[-1].sequence > before[-1].sequence)
    data = {
        "model": model,
        "to_sequence": target,
        "revision": revision,
        "written": written,
        "sequence": after[-1].sequence if written else None,
        "changes": history_summary(after[-1]) if written else None,
    }

    def human() -> str:
        if not written:
            return f"{model} already holds the intent of history entry {target}: nothing written"
        return f"{model} rolled back to history entry {target} (revision {revision}, history entry {data['sequence']}): {data['changes']}"

    emit(output, data, human)
