"""Prometheus HTTP service discovery from the live host records in etcd.

Prometheus' ``http_sd_configs`` polls a URL that answers a JSON list of target groups::

    [{"targets": ["h1:9100"], "labels": {"__meta_tfleet_host": "h1", "job_hint": "tfleet-agent"}}]

The controller serves two such lists on its ops port (any controller, leader or standby: they
read etcd on each request and keep no state):

* ``/sd/agents``: one group per agent, the agent's ``metrics_address`` (``/metrics``);
* ``/sd/tfserving``: one group per TF Serving, its REST address, with
  ``__metrics_path__`` set to TF Serving's ``/monitoring/prometheus/metrics``.

A host record is leased, so a dead host drops out of both lists within the lease TTL.
Labels are strings, as http_sd requires. ``__meta_*`` labels are visible to relabelling only
(deploy/prometheus/prometheus.yml turns ``__meta_tfleet_host`` into a ``host`` label and the
host labels into target labels); ``job_hint`` is a plain label naming what the target is, for
set-ups that scrape both lists from one job.

``build_targets`` is pure; ``discovery_routes`` wraps it in the OpsServer's route handlers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from tfleet.httpserver import Route
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.logs import Logger
from tfleet.ports import KeyReader
from tfleet.schema import HostRecord, SchemaError, parse
from tfleet.store import StoreError

Kind = Literal["agents", "tfserving"]

AGENTS_PATH = "/sd/agents"
TFSERVING_PATH = "/sd/tfserving"
# Where TF Serving (and the simulator) export Prometheus metrics on the REST port.
TFSERVING_METRICS_PATH = "/monitoring/prometheus/metrics"
JOB_HINTS: dict[str, str] = {"agents": "tfleet-agent", "tfserving": "tensorflow-serving"}

META = "__meta_tfleet_"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]")


def label_meta_name(name: str) -> str:
    """``__meta_tfleet_label_<name>`` with every character Prometheus forbids in a label name
    replaced by ``_`` (host labels such as ``topology.zone`` are allowed in tfleet)."""
    return f"{META}label_{_NOT_LABEL_CHAR.sub('_', name)}"


def _group(target: str, record: HostRecord, kind: Kind) -> dict[str, Any]:
    labels: dict[str, str] = {
        f"{META}host": record.host,
        f"{META}agent_version": record.agent_version,
        f"{META}grpc_address": record.grpc_address,
        f"{META}rest_address": record.rest_address,
        f"{META}memory_mb": str(record.memory_mb),
    }
    # Sorted, so that when two labels sanitize to the same name (a.b and a-b) the choice is stable.
    for name, value in sorted(record.labels.items()):
        labels.setdefault(label_meta_name(name), str(value))
    if kind == "tfserving":
        labels["__metrics_path__"] = TFSERVING_METRICS_PATH
    labels["job_hint"] = JOB_HINTS[kind]
    return {"targets": [target], "labels": labels}


def build_targets(records: Iterable[HostRecord], kind: Kind) -> list[dict[str, Any]]:
    """The http_sd document for ``kind``: one target group per host, ordered by host name.

    Agents without a ``metrics_address`` (written by agents older than the field) have no
    scrape target and are left out of the agents list.
    """
    if kind not in JOB_HINTS:
        raise ValueError(f"service discovery kind must be one of {sorted(JOB_HINTS)}, not {kind!r}")
    groups = []
    for record in sorted(records, key=lambda r: r.host):
        target = record.metrics_address if kind == "agents" else record.rest_address
        if target:
            groups.append(_group(target, record, kind))
    return groups


def read_host_records(store: KeyReader, keyspace: Keyspace, on_invalid: Callable[[str, str], None] | None = None) -> list[HostRecord]:
    """Every valid host record under ``<prefix>/hosts/`` (one etcd read). A record that does not
    parse is skipped and reported through ``on_invalid(key, reason)``."""
    prefix = keyspace.hosts_prefix()
    records = []
    for kv in store.list_prefix(prefix).items:
        try:
            keyspace.name_after(kv.key, prefix)
            records.append(parse(HostRecord, kv.value, kv.key))
        except (InvalidName, SchemaError) as exc:
            if on_invalid is not None:
                on_invalid(kv.key, str(exc))
    return records


def discovery_routes(store: KeyReader, keyspace: Keyspace, log: Logger | None = None) -> dict[str, Route]:
    """OpsServer routes ``/sd/agents`` and ``/sd/tfserving``.

    Each request reads the host records from etcd; when etcd cannot be reached the answer is
    503 with the reason on one line (Prometheus then keeps the targets it had).
    """

    def on_invalid(key: str, reason: str) -> None:
        if log is not None:
            log.warning("sd_host_record_ignored", key=key, error=reason)

    def route(kind: Kind) -> Route:
        def handle() -> tuple[int, bytes, str]:
            try:
                records = read_host_records(store, keyspace, on_invalid)
            except StoreError as exc:
                return 503, f"cannot read host records from etcd: {exc}\n".encode(), _TEXT
            return 200, json.dumps(build_targets(records, kind)).encode() + b"\n", _JSON

        return handle

    return {AGENTS_PATH: route("agents"), TFSERVING_PATH: route("tfserving")}
