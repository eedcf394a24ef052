"""What the operator commands show, computed from one consistent read of the fleet.

Pure: every function takes a FleetView (one etcd snapshot of the whole prefix, parsed by the
controller's own snapshot reader) and plain values, and returns rows, documents or sentences.
No etcd, no click, no printing: the commands in tfleet/cli/ops/ do those.

One module per subject: fleet.py (FleetView), text.py (how values are written), models.py
(`get models`, `get versions`, `describe`), hosts.py (`get hosts`), status.py (`status`),
history.py (`history`), explain.py (`explain`), dryrun.py (`apply --dry-run`). The names below
are the package's interface.
"""

from __future__ import annotations

from tfleet.cli.views.dryrun import dry_run, dry_run_text
from tfleet.cli.views.explain import explain_model
from tfleet.cli.views.fleet import FleetView
from tfleet.cli.views.history import changes_text, history_summary, who
from tfleet.cli.views.hosts import host_row
from tfleet.cli.views.models import describe_model, health, model_health, model_row, replicas_of, serving, short_checksum, version_rows
from tfleet.cli.views.status import fleet_status
from tfleet.cli.views.text import json_text, labels_text, numbers, pairs_text, versions_phrase, versions_text

__all__ = [
    "FleetView",
    "changes_text",
    "describe_model",
    "dry_run",
    "dry_run_text",
    "explain_model",
    "fleet_status",
    "health",
    "history_summary",
    "host_row",
    "json_text",
    "labels_text",
    "model_health",
    "model_row",
    "numbers",
    "pairs_text",
    "replicas_of",
    "serving",
    "short_checksum",
    "version_rows",
    "versions_phrase",
    "versions_text",
    "who",
]
