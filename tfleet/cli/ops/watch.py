"""tfleet watch: the keyspace's changes as they happen."""

from __future__ import annotations

import datetime as dt
import json
import queue
import time
from typing import Any

import click

from tfleet.cli.ops.context import SECTIONS, Ops, fleet_command
from tfleet.keyspace import Keyspace
from tfleet.cli.output import (
    OpsCommand,
    note,
    one_line,
    output_option,
    short,
)

# -- watch ----------------------------------------------------------------------------------------


@click.command("watch", cls=OpsCommand)
@click.option("--prefix-only", "section", type=click.Choice(SECTIONS), help="Only this section of the keyspace.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@output_option
@fleet_command
def watch(ops: Ops, section: str | None, count: int | None, duration: float | None, output: str) -> None:
    """Print every change under the prefix as it happens (time, op, key, value) until Ctrl-C."""
    prefix = f"{ops.keyspace.prefix}/{section}" if section == "leader" else f"{ops.keyspace.prefix}/{section + '/' if section else ''}"
    start = ops.store.list_prefix(prefix).revision + 1
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    handle = ops.store.watch_prefix(
        prefix,
        start,
        on_events=lambda batch: events.put(("events", batch)),
        on_reset=lambda snapshot: events.put(("reset", snapshot)),
        on_error=lambda exc: events.put(("error", exc)),
    )
    note(f"watching {prefix} from revision {start} (Ctrl-C to stop)")
    deadline = time.monotonic() + duration if duration is not None else None
    seen = 0
    try:
        while count is None or seen < count:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                kind, payload = events.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "error":
                note(f"tfleet watch: {one_line(payload)}; resuming")
            elif kind == "reset":
                note(f"tfleet watch: etcd compacted the revisions to resume from; re-read {len(payload.items)} keys at revision {payload.revision}, continuing")
            else:
                for event in payload:
                    click.echo(_event_line(event, ops.keyspace, output))
                    seen += 1
                    if count is not None and seen >= count:
                        break
    except KeyboardInterrupt:
        pass
    finally:
        handle.cancel()


def _event_line(event: Any, keyspace: Keyspace, output: str) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    key = keyspace.relative(event.key)
    text = event.value.decode("utf-8", "replace")
    if output in ("json", "yaml"):
        try:
            value: Any = json.loads(text) if event.kind == "put" else None
        except (ValueError, RecursionError):  # any bytes may be in etcd: print them as text
            value = text
        return json.dumps({"time": now.isoformat().replace("+00:00", "Z"), "op": event.kind, "key": event.key, "revision": event.mod_revision, "value": value})
    shown = short(text, 100) if event.kind == "put" else ""
    return f"{now.strftime('%H:%M:%S.%f')[:-3]}Z {event.kind.upper():<6} {key} {shown}".rstrip()
