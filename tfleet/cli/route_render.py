"""Route tables rendered for proxies: nginx upstreams and Envoy ClusterLoadAssignments.

What `tfleet routes render` writes (docs/routing.md describes both formats); tfleet/cli/routes.py
reads the tables from etcd, calls this and writes the files. Pure: tables in, file contents and
problems out, so the same tables always give the same bytes (proxies reload only on change).

Every address and name is checked before it is pasted into a proxy's configuration: what does
not pass is left out and reported, never written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tfleet.routing import version_order
from tfleet.schema import RouteEndpoint, RouteTable

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


def upstreams(tables: Mapping[str, RouteTable], pinned: Sequence[str] = ()) -> tuple[list[Upstream], list[str]]:
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
        for version in sorted(table.versions, key=version_order):
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
        f'# nginx rejects an empty upstream, so one with no endpoint holds "server {NGINX_FALLBACK_SERVER} down;":',
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
    lb_endpoints = [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}} for host, port in addresses]
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
]
