"""Route tables: where load balancers and clients send requests for each model.

``<prefix>/routes/<model>`` (docs/routing.md) lists, for one model, the serving endpoints of
every version that is AVAILABLE, of every label TF Serving applies, and of the model as a
whole (any AVAILABLE version). The leading controller computes the tables from its fleet
snapshot with ``plan_routes`` and writes them in its fenced batches; `tfleet routes render`
and ``tfleet.client.TfleetClient`` read them.

It also renders the tables for proxies (nginx upstreams, Envoy ClusterLoadAssignments).
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
import hashlib
import ipaddress
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from tfleet import schema
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.schema import HostRecord, ModelStatus, RouteEndpoint, RouteTable, SchemaError

if TYPE_CHECKING:  # the controller's snapshot type; only its hosts and statuses are read
    from tfleet.controller.snapshot import FleetSnapshot
    from tfleet.store import Delete, Put, Snapshot

# updated_at of a table computed without a clock: content only (routes_changed ignores it).
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _endpoint(record: HostRecord) -> RouteEndpoint:
    return RouteEndpoint(host=record.host, grpc_address=record.grpc_address, rest_address=record.rest_address)


def _version_key(text: str) -> tuple[int, int | str]:
    """Numeric versions in numeric order; anything else (never written by agents) after them."""
    return (0, int(text)) if text.isdigit() else (1, text)


def build_table(
    model: str,
    served: Mapping[str, ModelStatus],
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
        versions={name: versions[name] for name in sorted(versions, key=_version_key)},
        labels={name: labels[name] for name in sorted(labels)},
        endpoints=endpoints,
        updated_at=now,
    )


def route_tables(snap: FleetSnapshot, now: dt.datetime = EPOCH, models: Collection[str] | None = None) -> dict[str, RouteTable]:
    """model -> its route table, for every model with a status key on a live host.

    ``snap`` is the controller's FleetSnapshot (only ``hosts`` and ``statuses`` are read).
    ``now`` becomes every table's updated_at; compare tables with ``routes_changed``.
    ``models`` limits the work to those models (through the snapshot's status index).
    """
    by_model: dict[str, dict[str, ModelStatus]] = {}
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


def routes_changed(old: RouteTable | None, new: RouteTable) -> bool:
    """True when ``new`` must be written over ``old`` (anything but updated_at differs)."""
    if old is None:
        return True
    return old.model_dump(exclude={"updated_at"}) != new.model_dump(exclude={"updated_at"})


# -- what the controller writes ------------------------------------------------------------------


@dataclass(frozen=True)
class RoutePlan:
    """Route keys to write: tables to put (updated_at = now) and models whose key goes."""

    puts: Mapping[str, RouteTable]
    deletes: frozenset[str]

    def operations(self, keyspace: Keyspace) -> list[Put | Delete]:
        """The etcd operations of this plan, in a stable order (puts by model, then deletes)."""
        from tfleet.store import Delete, Put

        ops: list[Put | Delete] = [Put(keyspace.routes(model), schema.encode(table)) for model, table in sorted(self.puts.items())]
        ops += [Delete(keyspace.routes(model)) for model in sorted(self.deletes)]
        return ops


def plan_routes(snap: FleetSnapshot, current: Mapping[str, RouteTable | None], now: dt.datetime,
                models: Collection[str] | None = None) -> RoutePlan:
    """What to write so that ``<prefix>/routes/`` matches the snapshot.

    ``current`` maps every model that has a routes key now to its stored table, or None when
    the stored value is unreadable (``read_route_tables``). A table is put only when its
    content differs (an unreadable one is always rewritten); the key of a model no longer
    served by any live host is deleted. ``models`` limits the plan to those models (the
    controller passes the ones whose keys changed); None plans every model.
    """
    wanted = route_tables(snap, now, models)
    puts = {model: table for model, table in wanted.items() if routes_changed(current.get(model), table)}
    considered = current.keys() if models is None else set(models) & current.keys()
    deletes = frozenset(model for model in considered if model not in wanted)
    return RoutePlan(puts=puts, deletes=deletes)


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
        if not kv.key.startswith(section):
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


# -- rendering for load balancers (`tfleet routes render`) -----------------------------------------

NGINX_FALLBACK_SERVER = "127.0.0.1:1"
ENVOY_TYPE_URL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
_ADDRESS_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def split_address(address: str) -> tuple[str, int] | None:
    """("10.0.0.5", 8500) from "10.0.0.5:8500", ("::1", 8500) from "[::1]:8500"; None if malformed.

    Strict on purpose: an address is pasted into proxy configuration, so anything with
    spaces, ';' or braces must never get through.
    """
    match = _ADDRESS_RE.fullmatch(address)
    if match is None:
        return None
    host, port = match.group(1), int(match.group(2))
    if not 0 < port < 65536:
        return None
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return host, port


@dataclass(frozen=True)
class Upstream:
    """One group of endpoints a proxy balances over: a model, a version or a label."""

    name: str  # tfleet_<model>, tfleet_<model>_v<version>, tfleet_<model>_label_<label>
    model: str
    what: str  # "any version", "version 3", "label stable"
    endpoints: tuple[RouteEndpoint, ...]


def upstreams(
    tables: Mapping[str, RouteTable], pinned: Sequence[str] = ()
) -> tuple[list[Upstream], list[str]]:
    """Every upstream of ``tables`` in a stable order, and the problems found on the way.

    With ``pinned`` models only those models are rendered, and each of them always gets its
    model-level upstream, empty when the model has no table: a proxy configuration that
    refers to it stays valid while the model is not served anywhere. Model-level names win
    over version and label names when two collide (model ``a_v1`` against version 1 of
    model ``a``); the loser is left out and reported.
    """
    problems: list[str] = []
    models = sorted(set(pinned)) if pinned else sorted(tables)
    top: list[Upstream] = []
    derived: list[Upstream] = []
    for model in models:
        table = tables.get(model)
        if table is None:
            top.append(Upstream(f"tfleet_{model}", model, "any version", ()))
            continue
        top.append(Upstream(f"tfleet_{model}", model, "any version", tuple(table.endpoints)))
        for version in sorted(table.versions, key=_version_key):
            endpoints = table.versions[version]
            if not version.isdigit():
                problems.append(f"route table of model {model!r}: version {version!r} is not a number; left out")
                continue
            derived.append(Upstream(f"tfleet_{model}_v{version}", model, f"version {version}", tuple(endpoints)))
        for label in sorted(table.labels):
            endpoints = table.labels[label]
            if not _LABEL_RE.fullmatch(label):
                problems.append(f"route table of model {model!r}: label {label!r} is not a valid label name; left out")
                continue
            derived.append(Upstream(f"tfleet_{model}_label_{label}", model, f"label {label}", tuple(endpoints)))
    taken: dict[str, Upstream] = {}
    result: list[Upstream] = []
    for upstream in top + derived:
        other = taken.get(upstream.name)
        if other is not None:
            problems.append(
                f"upstream name {upstream.name!r} of model {upstream.model!r} ({upstream.what}) is already used by "
                f"model {other.model!r} ({other.what}); left out"
            )
            continue
        taken[upstream.name] = upstream
        result.append(upstream)
    order = {name: index for index, name in enumerate(u.name for u in top)}
    result.sort(key=lambda u: (u.model, 0 if u.name in order else 1))
    return result, problems


def _usable(upstream: Upstream, field: str, problems: list[str], *, ip_only: bool = False) -> list[tuple[str, int]]:
    """Parsed addresses of one upstream (``field``: grpc_address or rest_address), sorted by host."""
    found: list[tuple[str, int]] = []
    for endpoint in sorted(upstream.endpoints, key=lambda e: e.host):
        address = getattr(endpoint, field)
        parsed = split_address(address)
        if parsed is None:
            problems.append(f"host {endpoint.host!r} of model {upstream.model!r}: {field} {address!r} is not HOST:PORT; left out")
            continue
        if ip_only:
            try:
                ipaddress.ip_address(parsed[0])
            except ValueError:
                problems.append(
                    f"host {endpoint.host!r} of model {upstream.model!r}: {field} {address!r} is not an IP address, "
                    "which Envoy requires in a ClusterLoadAssignment (start the agent with --advertise-host IP); left out"
                )
                continue
        found.append(parsed)
    return found


@dataclass(frozen=True)
class Rendered:
    """Rendered configuration: file name -> content, and the problems found (each once)."""

    files: dict[str, str]
    problems: list[str]

    @property
    def text(self) -> str:
        """The content of a single-file rendering (nginx)."""
        (content,) = self.files.values()
        return content


def _nginx_server(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


NGINX_FILE = "tfleet-routes.conf"


def render_nginx(tables: Mapping[str, RouteTable], pinned: Sequence[str] = (), source: str = "/tfleet/routes/") -> Rendered:
    """One nginx include file (http context): a gRPC and a REST upstream per model, version, label."""
    groups, problems = upstreams(tables, pinned)
    lines = [
        f"# Generated by `tfleet routes render --format nginx` from the etcd keys {source}",
        "# Do not edit: this file is overwritten whenever the routes change.",
        "# Upstreams (include this file in the http block):",
        "#   tfleet_<model>_grpc / _rest                  any AVAILABLE version",
        "#   tfleet_<model>_v<version>_grpc / _rest        one version",
        "#   tfleet_<model>_label_<label>_grpc / _rest     one version label",
        f"# nginx rejects an empty upstream, so one with no endpoint holds \"server {NGINX_FALLBACK_SERVER} down;\":",
        "# requests sent to it fail at once (502) until an endpoint appears.",
    ]
    model = None
    for group in groups:
        if group.model != model:
            model = group.model
            lines += ["", f"# model {model}"]
        for protocol in ("grpc", "rest"):
            servers = _usable(group, f"{protocol}_address", problems)
            lines.append(f"upstream {group.name}_{protocol} {{")
            if servers:
                lines += [f"    server {_nginx_server(host, port)};" for host, port in servers]
            else:
                lines.append(f"    # no endpoint serves {group.what} of {group.model} now: placeholder (see the header)")
                lines.append(f"    server {NGINX_FALLBACK_SERVER} down;")
            lines.append("}")
    return Rendered({NGINX_FILE: "\n".join(lines) + "\n"}, _unique(problems))


def _unique(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))


def envoy_assignment(cluster_name: str, addresses: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """An Envoy v3 ClusterLoadAssignment (proto3 JSON field names)."""
    lb_endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}} for host, port in addresses
    ]
    return {
        "@type": ENVOY_TYPE_URL,
        "cluster_name": cluster_name,
        "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else [],
    }


def envoy_document(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """The file Envoy's path_config_source reads: a DiscoveryResponse holding ONE assignment.

    Envoy rejects a file-based EDS update holding more than one resource, hence one file per
    cluster. version_info is a digest of the content, so it changes exactly when it does.
    """
    digest = hashlib.sha256(json.dumps(assignment, sort_keys=True).encode()).hexdigest()[:16]
    return {"version_info": digest, "resources": [dict(assignment)]}


def _encode(document: Mapping[str, Any], encoding: str) -> str:
    if encoding == "yaml":
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return json.dumps(document, indent=2) + "\n"


def render_envoy(
    tables: Mapping[str, RouteTable],
    pinned: Sequence[str] = (),
    encoding: str = "json",
    keep: Sequence[str] = (),
) -> Rendered:
    """One file per Envoy cluster, named ``<cluster>.<json|yaml>``.

    Clusters: ``tfleet_<model>``, ``tfleet_<model>_v<version>``, ``tfleet_<model>_label_<label>``
    reach the gRPC addresses; the same names with ``_rest`` reach the REST addresses. ``keep``
    names clusters whose file exists from an earlier render: those no longer in the routes get
    an empty assignment rather than disappearing, because Envoy keeps the last endpoints of a
    file that is deleted.
    """
    if encoding not in ("json", "yaml"):
        raise ValueError(f"envoy encoding must be json or yaml, not {encoding!r}")
    groups, problems = upstreams(tables, pinned)
    files: dict[str, str] = {}
    for group in groups:
        for suffix, field in (("", "grpc_address"), ("_rest", "rest_address")):
            name = group.name + suffix
            addresses = _usable(group, field, problems, ip_only=True)
            files[f"{name}.{encoding}"] = _encode(envoy_document(envoy_assignment(name, addresses)), encoding)
    for name in sorted(set(keep)):
        filename = f"{name}.{encoding}"
        if filename not in files:
            files[filename] = _encode(envoy_document(envoy_assignment(name, ())), encoding)
    return Rendered(dict(sorted(files.items())), _unique(problems))


def envoy_bundle(tables: Mapping[str, RouteTable], pinned: Sequence[str] = ()) -> dict[str, Any]:
    """Every assignment in one DiscoveryResponse, for reading (Envoy itself needs one file each)."""
    groups, _ = upstreams(tables, pinned)
    resources = []
    for group in groups:
        for suffix, field in (("", "grpc_address"), ("_rest", "rest_address")):
            resources.append(envoy_assignment(group.name + suffix, _usable(group, field, [], ip_only=True)))
    return {"resources": resources}


__all__ = [
    "ENVOY_TYPE_URL",
    "NGINX_FILE",
    "NGINX_FALLBACK_SERVER",
    "Rendered",
    "Upstream",
    "envoy_assignment",
    "envoy_bundle",
    "envoy_document",
    "render_envoy",
    "render_nginx",
    "split_address",
    "upstreams",
    "EPOCH",
    "RoutePlan",
    "build_table",
    "parse_route_table",
    "plan_routes",
    "read_route_tables",
    "route_tables",
    "routes_changed",
]
