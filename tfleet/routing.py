"""Route tables: where load balancers and clients send requests for each model.

``<prefix>/routes/<model>`` (docs/routing.md) lists, for one model, the serving endpoints of
every version that is AVAILABLE, of every label TF Serving applies, and of the model as a
whole (any AVAILABLE version). The leading controller computes the tables from its fleet
snapshot with ``plan_routes`` and writes them in its fenced batches; `tfleet routes render`
and ``tfleet.client.TfleetClient`` read them (``parse_route_table``).

This is the one definition of what is routed, so it lives in the core next to its parser:
the controller only decides when to write, and reaches this module through the ServedFleet
protocol (its FleetSnapshot is one), so the core never imports the controller. Rendering the
tables for proxies is a separate job (tfleet/cli/route_render.py).
Everything here is pure: no I/O, no clock (``now`` is passed in).

Rules:

* Routes describe what is **served**, not what is intended: every model that has a status key
  on a live host gets a table, whether the controller placed it or an operator assigned it
  by hand.
* A host counts only while its host record (``<prefix>/hosts/<host>``, leased) exists: that
  is where its addresses come from, and a dead host drops out with its lease.
* A version is routed to a host when that host's status reports it ``AVAILABLE``; a label
  when TF Serving applies it there (``ModelStatus.version_labels``) *and* its version is
  AVAILABLE there. ``endpoints`` lists the hosts with any AVAILABLE version.
* A model whose status keys only show versions that are not AVAILABLE (loading, failed)
  still gets a table, with empty lists: renderers then write "no endpoint" explicitly
  instead of dropping the upstream a proxy configuration may refer to.
* Ordering is deterministic (endpoints by host name, versions by number, labels by name), so
  that equal fleets give equal bytes and a table is rewritten only when its content changes.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tfleet import schema
from tfleet.keyspace import InvalidName, Keyspace, Section
from tfleet.schema import HostRecord, ReplicaStatus, RouteEndpoint, RouteTable, SchemaError

if TYPE_CHECKING:
    from tfleet.store.types import Delete, Put, Snapshot

# updated_at of a table computed without a clock: content only (routes_changed ignores it).
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class ServedFleet(Protocol):
    """What route planning reads of a fleet snapshot: live hosts and what they report serving.

    The controller's FleetSnapshot (controller/snapshot.py) satisfies it as it is; tests may
    pass anything with these three mappings.
    """

    @property
    def hosts(self) -> Mapping[str, HostRecord]:
        """host -> its record, for live hosts only (the key is on the host's lease)."""

    @property
    def statuses(self) -> Mapping[tuple[str, str], ReplicaStatus]:
        """(host, model) -> the status the host's agent reports."""

    @property
    def status_hosts(self) -> Mapping[str, Collection[str]]:
        """model -> the hosts that have a status key for it (the index of ``statuses``)."""


def _endpoint(record: HostRecord) -> RouteEndpoint:
    return _shared_endpoint(record.host, record.grpc_address, record.rest_address)


@functools.lru_cache(maxsize=4096)
def _shared_endpoint(host: str, grpc_address: str, rest_address: str) -> RouteEndpoint:
    """One endpoint object per host address (frozen): a host's endpoint is in every table of
    the models it serves, and validating it again for each cost more than the table."""
    return RouteEndpoint(host=host, grpc_address=grpc_address, rest_address=rest_address)


def version_order(text: str) -> tuple[int, int | str]:
    """Numeric versions in numeric order; anything else (never written by agents) after them."""
    return (0, int(text)) if text.isdigit() else (1, text)


def build_table(
    model: str,
    served: Mapping[str, ReplicaStatus],
    hosts: Mapping[str, HostRecord],
    now: dt.datetime = EPOCH,
) -> RouteTable:
    """The route table of one model from its status per host (hosts without a record are skipped)."""
    versions: dict[str, list[RouteEndpoint]] = {}
    labels: dict[str, list[RouteEndpoint]] = {}
    endpoints: list[RouteEndpoint] = []
    for host in sorted(served):
        record = hosts.get(host)
        if record is None:
            continue  # no live host record: no address to route to
        status = served[host]
        endpoint = _endpoint(record)
        available = {name for name, report in status.versions.items() if report.state == "AVAILABLE"}
        for name in available:
            versions.setdefault(name, []).append(endpoint)
        for label, version in status.version_labels.items():
            if str(version) in available:
                labels.setdefault(label, []).append(endpoint)
        if available:
            endpoints.append(endpoint)
    return RouteTable(
        model=model,
        versions={name: versions[name] for name in sorted(versions, key=version_order)},
        labels={name: labels[name] for name in sorted(labels)},
        endpoints=endpoints,
        updated_at=now,
    )


def route_tables(snap: ServedFleet, now: dt.datetime = EPOCH, models: Collection[str] | None = None) -> dict[str, RouteTable]:
    """model -> its route table, for every model with a status key on a live host.

    ``snap``: the controller's FleetSnapshot or any other ServedFleet.
    ``now`` becomes every table's updated_at; compare tables with ``routes_changed``.
    ``models`` limits the work to those models (through the snapshot's status index).
    """
    by_model: dict[str, dict[str, ReplicaStatus]] = {}
    if models is None:
        for (host, model), status in snap.statuses.items():
            if host in snap.hosts:
                by_model.setdefault(model, {})[host] = status
    else:
        for model in models:
            served = {h: snap.statuses[(h, model)] for h in snap.status_hosts.get(model, ()) if h in snap.hosts}
            if served:
                by_model[model] = served
    return {model: build_table(model, by_model[model], snap.hosts, now) for model in sorted(by_model)}


def content_digest(table: RouteTable) -> bytes:
    """A digest of everything in a table but updated_at: equal digests, equal content.

    What the controller keeps of each stored table (controller/snapshot.py): it only needs
    to know whether a table it computes differs, and at 100,000 models the parsed tables
    cost ~200 MB. Canonical JSON (keys sorted, as dict equality ignores their order): the
    ``document_digest`` of the table's JSON document, written here from the table's fields
    (each endpoint's text made once per address) instead of dumping the table and encoding
    the dump again, which was ~40% of a pass's route work when lost hosts' replicas move
    (tests/unit/test_route_digest.py pins the two equal)."""
    text = "".join(
        (
            '{"endpoints":',
            _endpoints_text(table.endpoints),
            ',"labels":',
            _groups_text(table.labels),
            ',"model":',
            json.dumps(table.model),
            ',"versions":',
            _groups_text(table.versions),
            "}",
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@functools.lru_cache(maxsize=4096)
def _endpoint_text(host: str, grpc_address: str, rest_address: str) -> str:
    return json.dumps({"grpc_address": grpc_address, "host": host, "rest_address": rest_address}, sort_keys=True, separators=(",", ":"))


def _endpoints_text(endpoints: list[RouteEndpoint]) -> str:
    return "[" + ",".join([_endpoint_text(e.host, e.grpc_address, e.rest_address) for e in endpoints]) + "]"


def _groups_text(groups: Mapping[str, list[RouteEndpoint]]) -> str:
    return "{" + ",".join([json.dumps(name) + ":" + _endpoints_text(groups[name]) for name in sorted(groups)]) + "}"


def document_digest(document: Mapping[str, object]) -> bytes:
    """content_digest of a table given as its JSON document (as ``schema.encode`` writes it:
    the controller's own writes coming back need no second validation)."""
    content = {key: value for key, value in document.items() if key != "updated_at"}
    return hashlib.blake2b(json.dumps(content, sort_keys=True, separators=(",", ":")).encode(), digest_size=16).digest()


def routes_changed(old: RouteTable | bytes | None, new: RouteTable) -> bool:
    """True when ``new`` must be written over ``old`` (anything but updated_at differs).

    old: the stored table, its ``content_digest``, or None (none, or unreadable)."""
    return _compare(old, new)[0]


def _compare(old: RouteTable | bytes | None, new: RouteTable) -> tuple[bool, bytes | None]:
    """(routes_changed, new's content_digest when the comparison computed it: compared with a
    digest or with nothing, a table's digest is what the controller keeps of its echo)."""
    if isinstance(old, RouteTable):
        return old.model_dump(exclude={"updated_at"}) != new.model_dump(exclude={"updated_at"}), None
    digest = content_digest(new)
    return digest != old, digest


# -- what the controller writes ------------------------------------------------------------------


@dataclass(frozen=True)
class RoutePlan:
    """Route keys to write: tables to put (updated_at = now) and models whose key goes."""

    puts: Mapping[str, RouteTable]
    deletes: frozenset[str]
    # model -> content_digest of its table in puts (when plan_routes computed it to compare)
    digests: Mapping[str, bytes] = field(default_factory=dict)

    def operations(self, keyspace: Keyspace) -> list[Put | Delete]:
        """The etcd operations of this plan, in a stable order (puts by model, then deletes)."""
        return [op for _, op, _ in self.writes(keyspace)]

    def writes(self, keyspace: Keyspace) -> Iterator[tuple[str, Put | Delete, bytes | None]]:
        """(model, operation, the content digest of the table put, if computed) in the order
        of ``operations``, encoded one at a time."""
        from tfleet.store.types import Delete, Put  # the values only: no etcd client here

        for model, table in sorted(self.puts.items()):
            yield model, Put(keyspace.routes(model), schema.encode(table)), self.digests.get(model)
        for model in sorted(self.deletes):
            yield model, Delete(keyspace.routes(model)), None


def plan_routes(snap: ServedFleet, current: Mapping[str, RouteTable | bytes | None], now: dt.datetime, models: Collection[str] | None = None) -> RoutePlan:
    """What to write so that ``<prefix>/routes/`` matches the snapshot.

    ``current`` maps every model that has a routes key now to its stored table (or that
    table's ``content_digest``), or None when the stored value is unreadable
    (``read_route_tables``). A table is put only when its
    content differs (an unreadable one is always rewritten); the key of a model no longer
    served by any live host is deleted. ``models`` limits the plan to those models (the
    controller passes the ones whose keys changed); None plans every model.
    """
    wanted = route_tables(snap, now, models)
    puts: dict[str, RouteTable] = {}
    digests: dict[str, bytes] = {}
    for model, table in wanted.items():
        changed, digest = _compare(current.get(model), table)
        if changed:
            puts[model] = table
            if digest is not None:
                digests[model] = digest
    considered = current.keys() if models is None else set(models) & current.keys()
    deletes = frozenset(model for model in considered if model not in wanted)
    return RoutePlan(puts=puts, deletes=deletes, digests=digests)


def parse_route_table(key: str, value: bytes, keyspace: Keyspace) -> RouteTable:
    """One stored route table; raises SchemaError (also for a bad key or a model mismatch)."""
    try:
        model = keyspace.name_after(key, keyspace.routes_prefix())
    except InvalidName as exc:
        raise SchemaError(str(exc)) from None
    table = schema.parse(RouteTable, value, key)
    if table.model != model:
        raise SchemaError(f"{key}: names model {table.model!r}, but the key is that of model {model!r}")
    return table


def read_route_tables(snapshot: Snapshot, keyspace: Keyspace) -> tuple[dict[str, RouteTable | None], list[str]]:
    """(model -> stored table or None if unreadable, problems) from a store snapshot.

    Keys outside ``<prefix>/routes/`` are ignored, so the snapshot of the whole prefix that
    the controller reads each pass can be passed as it is. A key whose name is not a valid
    model name is only reported (tfleet never writes one).
    """
    section = keyspace.routes_prefix()
    tables: dict[str, RouteTable | None] = {}
    problems: list[str] = []
    for kv in snapshot.items:
        if not keyspace.in_section(kv.key, Section.ROUTES):
            continue
        try:
            model = keyspace.name_after(kv.key, section)
        except InvalidName as exc:
            problems.append(str(exc))
            continue
        try:
            tables[model] = parse_route_table(kv.key, kv.value, keyspace)
        except SchemaError as exc:
            tables[model] = None
            problems.append(str(exc))
    return tables, problems


__all__ = [
    "EPOCH",
    "RoutePlan",
    "ServedFleet",
    "build_table",
    "content_digest",
    "document_digest",
    "parse_route_table",
    "plan_routes",
    "read_route_tables",
    "route_tables",
    "routes_changed",
    "version_order",
]
