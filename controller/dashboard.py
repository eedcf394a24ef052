"""The read-only web dashboard every controller serves (leader or standby).

It reads the process's fleet cache (controller/fleetcache.py), which runs on a standby as
on the leader, so a standby's dashboard is as live as the leader's:

* the cache's one watch of the prefix keeps the keys of every section but history/; the page
  asks for a model's history when it shows it (a bounded read of its newest entries);
* a thread named ``dashboard-state``, woken by the cache, takes the keys changed since its
  last build from its own cursor of the cache, and turns them into a JSON state of the fleet
  at most once per coalescing window (100 ms) (``StateBuilder``: only the models whose keys
  changed are rebuilt; ``build_state`` is the pure one-shot form), and pushes a patch to
  every connected browser over server-sent events: the models that changed and the top-level
  parts that changed. A browser gets the whole state when its stream opens; while it lags,
  its patches are merged, so a slow browser never holds up the others;
* uvicorn serves the Starlette app in a thread named ``dashboard-http`` with its own event
  loop: ``/`` (a static page, vanilla JS, no build step), ``/api/state`` (the same JSON, for
  scripts), ``/api/events`` (the live stream) and ``/api/history/<model>``.

Nothing here writes to etcd, and the app has no route that accepts anything but GET.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tfleet import health, schema
from tfleet.controller.fleetcache import FleetCache
from tfleet.controller.snapshot import FleetBuilder, FleetSnapshot, SnapshotReader
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.passguard import PassGuard
from tfleet.registry import diff_values
from tfleet.schema import HistoryEntry, ModelIntent, ModelStatus, ModelStatusReport, SchemaError
from tfleet.store import Backoff, Snapshot, StoreError

COALESCE_SECONDS = 0.1
KEEPALIVE_SECONDS = 15.0
HISTORY_LIMIT = 20
HISTORY_LIMIT_MAX = 200
# Top-level parts of the state a patch carries when they changed (models travel one by one).
_PATCH_KEYS = ("prefix", "leader", "hosts", "rollouts", "errors", "summary", "dashboard")
_STATIC = "dashboard_static"
_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
# The page shows strings anyone with etcdctl can write: the browser runs only our script.
_PAGE_HEADERS = {"Cache-Control": "no-cache"}
# Sent with every response (SecurityHeaders below): no framing (clickjacking), no MIME
# sniffing, no referrer leaking model or host names to other sites, and a policy that only
# lets the page run our own script, talk to its own origin and embed nothing.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
                                "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response (streams included)."""

    def __init__(self, app) -> None:
        self._app = app
        self._headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self._headers}
                message = {**message, "headers": [*(h for h in message.get("headers", []) if h[0].lower() not in names), *self._headers]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------------------------
# The state of the fleet, as the page shows it (pure)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _policy_text(intent: ModelIntent | schema.Assignment) -> str:
    policy = intent.model_version_policy
    if policy.specific is not None:
        return "versions " + ", ".join(str(v) for v in sorted(set(policy.specific.versions)))
    if policy.all is not None:
        return "all versions"
    assert policy.latest is not None
    return "latest" if policy.latest.num_versions == 1 else f"latest {policy.latest.num_versions}"


def _intent_summary(intent: ModelIntent) -> dict[str, Any]:
    return {
        "policy": _policy_text(intent),
        "labels": dict(sorted(intent.version_labels.items())),
        "replicas": intent.replicas,
        "host_selector": dict(intent.host_selector),
        "spread_by": intent.spread_by,
        "memory_mb": intent.memory_mb,
        "strategy": intent.rollout.strategy,
        "promote": intent.rollout.promote,
        "abort": intent.rollout.abort,
        "base_path": intent.base_path,
        "owner": intent.owner,
        "description": intent.description,
    }


def _leader(fleet: FleetSnapshot) -> tuple[dict[str, Any] | None, list[str]]:
    parsed = fleet.leader
    if parsed is None:
        return None, []
    if parsed.value is None:
        return None, [parsed.error or "leader record unreadable"]
    record = parsed.value
    return {"id": record.id, "since": _iso(record.since), "version": record.version, "dashboard_address": record.dashboard_address}, []


def _cell(fleet: FleetSnapshot, host: str, model: str, report: ModelStatusReport | None) -> dict[str, Any]:
    parsed = fleet.assignments.get((host, model))
    status: ModelStatus | None = fleet.statuses.get((host, model))
    assigned = None
    if parsed is not None and parsed.value is not None:
        assigned = {"policy": _policy_text(parsed.value), "labels": dict(sorted(parsed.value.version_labels.items()))}
    replica = next((r for r in report.replicas if r.host == host), None) if report is not None else None
    versions = {}
    if status is not None:
        for version in sorted(status.versions, key=lambda v: (len(v), v)):
            r = status.versions[version]
            versions[version] = {"state": r.state, "error_code": r.error_code, "error_message": r.error_message}
    return {
        "assigned": assigned,
        "assignment_error": parsed.error if parsed is not None else None,
        "versions": versions,
        "labels": dict(sorted(status.version_labels.items())) if status is not None else {},
        "error": status.error if status is not None else None,
        # the agent has not reported on the latest write of the assignment yet
        "pending": parsed is not None and (status is None or status.assignment_revision != parsed.revision),
        "canary": bool(replica and replica.canary),
        "updated_at": _iso(status.updated_at) if status is not None else None,
        # tfleet/health.py's words, as the CLI and modelstatus use them
        "ready": parsed is not None and parsed.value is not None and health.replica_ready(status, parsed.revision),
        "serving": health.replica_serving(status),
        "errors": list(health.replica_errors(status)),
    }


def _serving(cell: dict[str, Any]) -> bool:
    """The cell's replica is ready (tfleet/health.py decides)."""
    return bool(cell["ready"])


@dataclass(frozen=True)
class ModelPart:
    """What the page shows about one model: its entry, its row of cells, its errors.

    It depends only on the model's own keys (intent, modelstatus, versions, assignments and
    status keys of the model), so it is rebuilt only when one changed.
    """

    entry: dict[str, Any]
    row: dict[str, dict[str, Any]]
    errors: tuple[dict[str, Any], ...]
    states: dict[str, int]


def _problem(kind: str, message: str, model: str | None = None, host: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "model": model, "host": host, "message": message}


def _model_part(fleet: FleetSnapshot, name: str, reporters: set[str]) -> ModelPart:
    parsed = fleet.intents.get(name)
    intent = parsed.value if parsed is not None else None
    report = fleet.modelstatus.get(name)
    errors: list[dict[str, Any]] = []
    states: dict[str, int] = {}
    row: dict[str, dict[str, Any]] = {}
    for host in sorted(fleet.holders.get(name, set()) | reporters):
        row[host] = cell = _cell(fleet, host, name, report)
        for version in cell["versions"].values():
            states[version["state"]] = states.get(version["state"], 0) + 1
        if cell["assignment_error"]:
            errors.append(_problem("assignment", cell["assignment_error"], name, host))
        for message in cell["errors"]:
            errors.append(_problem("agent", message, name, host))
    if report is not None:
        ready = sum(1 for r in report.replicas if r.ready)
        wanted = report.wanted_replicas
        available = dict(report.ready_replicas)
    else:
        ready = sum(1 for c in row.values() if _serving(c))
        wanted = intent.replicas if intent is not None else len(fleet.holders.get(name, ()))
        available = {}
        for c in row.values():
            for version, v in c["versions"].items():
                if v["state"] == "AVAILABLE":
                    available[version] = available.get(version, 0) + 1
    rollout = None
    if report is not None:
        rollout = {"phase": report.rollout.phase, "from_versions": list(report.rollout.from_versions),
                   "to_versions": list(report.rollout.to_versions), "reason": report.rollout.reason}
    intent_error = parsed.error if parsed is not None else None
    error = report.error if report is not None and report.error else intent_error
    judged = health.model_health(report, intent_exists=parsed is not None, intent_error=intent_error)
    if error:
        errors.append(_problem("intent", error, name))
    for reason in report.reasons if report is not None else ():
        errors.append(_problem("placement", reason, name))
    failures = [
        {"version": f.version, "host": f.host, "error": f.error, "at": _iso(f.at), "retry_after": _iso(f.retry_after)}
        for f in (report.failures if report is not None else ())
    ]
    for f in failures:
        errors.append(_problem("failure", f"version {f['version']} failed to load on {f['host']}: {f['error']} (retry after {f['retry_after']})", name, f["host"]))
    entry = {
        "name": name,
        "managed": parsed is not None or report is not None,
        "intent": _intent_summary(intent) if intent is not None else None,
        "intent_revision": parsed.revision if parsed is not None else None,
        "error": error,
        "wanted_replicas": wanted,
        "ready_replicas": ready,
        "serving_replicas": judged.serving if report is not None else sum(1 for c in row.values() if c["serving"]),
        "health": judged.state,
        "health_reason": judged.reason,
        "available": dict(sorted(available.items(), key=lambda item: (len(item[0]), item[0]))),
        "rollout": rollout,
        "reasons": list(report.reasons) if report is not None else [],
        "failures": failures,
        "replicas": [r.model_dump(mode="json") for r in report.replicas] if report is not None else [],
        "status_updated_at": _iso(report.updated_at) if report is not None else None,
        "versions_registered": sorted(fleet.versions.get(name, {})),
    }
    return ModelPart(entry, row, tuple(errors), states)


def _hosts(fleet: FleetSnapshot, host_names: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hosts, errors = [], []
    for name in sorted(host_names):
        record = fleet.hosts.get(name)
        control = fleet.hostctl.get(name)
        hosts.append({
            "name": name,
            "alive": record is not None,
            "grpc_address": record.grpc_address if record else None,
            "rest_address": record.rest_address if record else None,
            "memory_mb": record.memory_mb if record else None,
            "labels": dict(sorted(record.labels.items())) if record else {},
            "agent_version": record.agent_version if record else None,
            "started_at": _iso(record.started_at) if record else None,
            "cordoned": bool(control and control.cordoned),
            "draining": bool(control and control.draining),
            "control_reason": control.reason if control else "",
            "models": len(fleet.held_by.get(name, ())),
        })
        if record is None and fleet.held_by.get(name):
            errors.append(_problem("host", f"host {name} holds {len(fleet.held_by[name])} assignment(s) but has no live agent (no host record)", host=name))
    return hosts, errors


class StateBuilder:
    """Builds states one fleet snapshot after another, rebuilding only the models whose keys
    changed (the snapshot's ``changed_models``; None: all).

    ``build`` gives exactly what ``build_state`` gives for the same snapshot (a unit test
    pins it); ``changed`` then names the models whose part differs from the previous build
    (added, changed or removed), which is what the live stream sends.
    """

    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self._reader: SnapshotReader | None = None
        self._parts: dict[str, ModelPart] = {}
        self.parts: dict[str, ModelPart] = {}
        self.changed: frozenset[str] = frozenset()

    def build(self, snapshot: Snapshot) -> dict[str, Any]:
        """From whole snapshots one after another (tests, one-shot use)."""
        if self._reader is None:
            self._reader = SnapshotReader(self._ks)
        return self.build_fleet(self._reader.read(snapshot))

    def build_fleet(self, fleet: FleetSnapshot) -> dict[str, Any]:
        leader, extra_problems = _leader(fleet)
        model_names = set(fleet.intents) | set(fleet.modelstatus) | set(fleet.holders) | {m for _, m in fleet.statuses}
        host_names = set(fleet.hosts) | set(fleet.hostctl) | set(fleet.held_by) | {h for h, _ in fleet.statuses}
        reporters: dict[str, set[str]] = {}  # model -> hosts with a status key of it
        for host, model in fleet.statuses:
            reporters.setdefault(model, set()).add(host)
        everything = fleet.changed_models is None
        previous, parts = self._parts, {}
        for name in sorted(model_names):
            part = previous.get(name)
            if part is None or everything or name in fleet.changed_models:  # type: ignore[operator]
                part = _model_part(fleet, name, reporters.get(name, set()))
            parts[name] = part
        self.changed = frozenset(name for name in parts.keys() | previous.keys() if parts.get(name) is not previous.get(name))
        self._parts = self.parts = parts

        hosts, errors = _hosts(fleet, host_names)
        rollouts, states = [], {}
        for name, part in parts.items():
            errors.extend(part.errors)
            for state, count in part.states.items():
                states[state] = states.get(state, 0) + count
            rollout = part.entry["rollout"]
            if rollout is not None and rollout["phase"] != "stable":
                rollouts.append({"model": name, **rollout})
        errors.extend(_problem("key", message) for message in [*fleet.problems, *extra_problems])
        return {
            "prefix": self._ks.prefix,
            "revision": fleet.revision,
            "leader": leader,
            "hosts": hosts,
            "models": [part.entry for part in parts.values()],
            "cells": {name: part.row for name, part in parts.items()},
            "rollouts": rollouts,
            "errors": errors,
            "summary": {
                "hosts": len(host_names),
                "hosts_alive": len(fleet.hosts),
                "models": len(model_names),
                "versions": dict(sorted(states.items())),
                "rollouts": len(rollouts),
                "errors": len(errors),
            },
        }


def build_state(snapshot: Snapshot, keyspace: Keyspace) -> dict[str, Any]:
    """The whole fleet as the dashboard shows it, from one snapshot of the prefix.

    Pure: the same snapshot gives the same JSON-ready dict. Errors are listed per host, then
    per model (in name order), then keys that could not be read.
    """
    return StateBuilder(keyspace).build(snapshot)


def build_history(snapshot: Snapshot, keyspace: Keyspace, model: str, limit: int = HISTORY_LIMIT, total: int | None = None) -> dict[str, Any]:
    """The newest ``limit`` history entries of a model (newest first), each with its changes.

    total: how many entries the model has, when the read that gave ``snapshot`` knows it
    (default: the entries in ``snapshot``)."""
    prefix = keyspace.history_prefix(model)
    entries = []
    for kv in reversed(snapshot.items):
        if len(entries) >= limit:
            break
        if not kv.key.startswith(prefix):
            continue
        try:
            entry = schema.parse(HistoryEntry, kv.value, kv.key)
        except SchemaError as exc:
            entries.append({"key": kv.key, "error": str(exc)})
            continue
        changes = [{"path": c.path, "old": c.old, "new": c.new} for c in diff_values(entry.previous, entry.new)]
        entries.append({
            "sequence": entry.sequence,
            "action": entry.action,
            # null in the entry: written with the change, so the entry key has its revision
            "revision": entry.revision if entry.revision is not None else kv.mod_revision,
            "at": _iso(entry.at),
            "author": entry.author,
            "source": entry.source,
            "changes": changes,
        })
    if total is None:
        total = sum(1 for kv in snapshot.items if kv.key.startswith(prefix))
    return {"model": model, "revision": snapshot.revision, "total": total, "entries": entries}


# ---------------------------------------------------------------------------------------
# A model's history: a bounded read, never the cache


class PagedHistoryReader:
    """The newest entries of one model's history in ONE bounded, descending range read of its
    well-formed sequence keys (Keyspace.history_range), and their count (count_prefix): the
    response never grows with the history."""

    def __init__(self, store: Any, keyspace: Keyspace) -> None:
        self._store = store
        self._ks = keyspace

    def newest(self, model: str, limit: int) -> tuple[Snapshot, int | None]:
        """(a snapshot holding the newest ``limit`` entries in key order, how many keys the
        model's history has)."""
        start, end = self._ks.history_range(model)
        page = self._store.list_range(start, end, limit=limit, descending=True)
        total = self._store.count_prefix(self._ks.history_prefix(model), revision=page.revision)
        return Snapshot(page.revision, tuple(reversed(page.items))), total


def default_history_reader(store: Any, keyspace: Keyspace) -> PagedHistoryReader:
    return PagedHistoryReader(store, keyspace)


# ---------------------------------------------------------------------------------------
# Pushing states to browsers


FULL = "full"  # what a subscriber gets first: the whole state, read when it is sent


def merge_patches(older: dict[str, Any] | None, newer: dict[str, Any]) -> dict[str, Any]:
    """One patch with the effect of ``older`` then ``newer`` (every value in a patch is absolute)."""
    if older is None:
        return newer
    return {**older, **newer, "models": {**older.get("models", {}), **newer.get("models", {})}}


class _Subscriber:
    """One browser's stream: the whole state first, then patches (merged while it lags)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self.needs_full = True
        self.pending: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self.ready.set()

    def offer(self, patch: dict[str, Any]) -> None:  # runs in the subscriber's loop
        if self.needs_full:
            return  # the whole state it is about to get is read after this patch was made
        self.pending = merge_patches(self.pending, patch)
        self.ready.set()

    def close(self) -> None:  # runs in the subscriber's loop
        self.closed = True
        self.ready.set()

    async def next(self, timeout: float) -> str | dict[str, Any] | None:
        """FULL, a patch, or None after ``timeout`` seconds without news (time for a keepalive)."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return None
        self.ready.clear()
        if self.needs_full:
            self.needs_full = False  # patches from now on are kept; one already in the state is harmless
            return FULL
        patch, self.pending = self.pending, None
        return patch


class _Broadcaster:
    """Hands each patch from the state thread to every subscriber's event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self.closed = False

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self) -> _Subscriber:
        """Called from a request handler (inside the server's event loop)."""
        subscriber = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            subscriber.closed = self.closed
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, patch: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._subscribers)
        for subscriber in targets:
            _call_in(subscriber.loop, subscriber.offer, patch)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            targets = list(self._subscribers)
        for subscriber in targets:
            _call_in(subscriber.loop, subscriber.close)


def _call_in(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:  # the loop is closed: the server is gone
        pass


# ---------------------------------------------------------------------------------------
# The server


def _static(name: str) -> bytes:
    return (resources.files("tfleet.controller") / _STATIC / name).read_bytes()


def _bind(host: str, port: int) -> socket.socket:
    """Bind now, so that a port in use fails the controller at start-up, with the address."""
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise OSError(exc.errno, f"dashboard cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class Dashboard:
    """The dashboard of one controller: one watch, one state thread, one HTTP server thread."""

    def __init__(self, store: Any, keyspace: Keyspace, host: str, port: int, *, controller_id: str, log: Any,
                 coalesce: float = COALESCE_SECONDS, keepalive: float = KEEPALIVE_SECONDS, rng: random.Random | None = None,
                 cache: FleetCache | None = None, history: Any = None) -> None:
        """cache: the process's fleet cache (the controller's); without one the dashboard keeps its own."""
        self._store = store
        self._ks = keyspace
        self._controller_id = controller_id
        self._log = log
        self._coalesce = coalesce
        self._keepalive = keepalive
        self._rng = rng or random.Random()
        self._backoff = Backoff(initial=0.5, cap=5.0)
        self._cache = cache if cache is not None else FleetCache(store, keyspace, log=log)
        self._cursor = self._cache.cursor("dashboard")
        self._fleet = FleetBuilder(keyspace)
        self._history = history or default_history_reader(store, keyspace)
        self._builder = StateBuilder(keyspace)
        self._broadcaster = _Broadcaster()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._cache.on_change(self._on_change)
        self._cache.on_error(self._on_error)
        self._etcd_error: str | None = None
        self._state_lock = threading.Lock()
        self._doc = self._document(None)  # the state served to new pages and /api/state
        self._doc_text: str | None = None  # its JSON, made when first asked for
        self._last_pushed: dict[str, str] = {}  # JSON of each top-level part as last pushed
        self.publishes = 0
        self._index = _static("index.html")
        self._script = _static("dashboard.js")
        self._socket = _bind(host, port)
        self._host = host
        self._bound = self._socket.getsockname()[:2]  # kept: the socket is closed by stop()
        config = uvicorn.Config(self._app(), log_config=None, access_log=False, lifespan="off", ws="none", http="h11",
                                loop="asyncio", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._serve, name="dashboard-http", daemon=True)
        self._state_thread = threading.Thread(target=self._run, name="dashboard-state", daemon=True)

    # -- addresses ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._bound[1])

    @property
    def address(self) -> str:
        host = self._bound[0]
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def advertised_address(self) -> str:
        """Where others reach this dashboard (the machine's name when bound to every address)."""
        host = socket.gethostname() if self._host in _WILDCARD_HOSTS else self._host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in _WILDCARD_HOSTS else self._host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    # -- life cycle ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._state_thread.start()
        self._http_thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._http_thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError(f"dashboard on {self.address} did not start within {timeout:g} s")

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._dirty.set()
        self._broadcaster.close()  # open streams end, so the server can finish them
        self._server.should_exit = True
        for thread in (self._http_thread, self._state_thread):
            if thread.is_alive():
                thread.join(timeout)
        self._socket.close()

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # a dead dashboard must not take the controller down
            self._log.error("dashboard_failed", error=f"{type(exc).__name__}: {exc}")

    # -- keeping the state --------------------------------------------------------------
    def _run(self) -> None:
        guard = PassGuard("dashboard-state", self._log, None)
        while not self._stopping.is_set():
            try:
                self._run_until_stopped()
            except Exception as exc:  # noqa: BLE001 - the state thread never dies (tfleet/passguard.py)
                # the changes taken from the cache may be half applied: start over from all of it
                self._cursor.forget()
                self._fleet.forget()
                self._stopping.wait(guard.failed(exc))
                self._dirty.set()

    def _run_until_stopped(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self._cache.running:
                if not self._open():
                    failures += 1
                    self._publish()
                    self._stopping.wait(self._backoff.delay(failures, self._rng))
                    continue
                failures = 0
            self._dirty.wait(timeout=2.0 if self._etcd_error else None)
            if self._stopping.is_set():
                break
            if self._etcd_error and not self._dirty.is_set():
                self._probe()
            if self._dirty.is_set():
                self._stopping.wait(self._coalesce)  # gather a burst of changes into one push
                self._dirty.clear()
                self._publish()

    def _open(self) -> bool:
        """Start the cache unless the controller's loop did (the first one to come does it)."""
        if not self._cache.ensure_started():
            self._set_error(self._cache.error or "etcd unavailable")
            return False
        self._etcd_error = None
        self._dirty.set()
        return True

    def _on_change(self) -> None:  # the cache's watch thread: be quick
        self._etcd_error = None
        self._dirty.set()

    def _on_error(self, error: Exception) -> None:
        self._set_error(str(error))
        self._dirty.set()

    def _set_error(self, message: str) -> None:
        if message != self._etcd_error:
            self._log.info("dashboard_etcd_unavailable", error=message)
        self._etcd_error = message

    def _probe(self) -> None:
        """While the watch reports trouble: is etcd back? (The watch resumes by itself.)"""
        try:
            self._store.get(self._ks.leader())
        except StoreError:
            return
        self._etcd_error = None
        self._dirty.set()

    def _document(self, state: dict[str, Any] | None) -> dict[str, Any]:
        return {
            **(state or {"prefix": self._ks.prefix, "revision": 0, "leader": None, "hosts": [], "models": [], "cells": {},
                         "rollouts": [], "errors": [], "summary": {}}),
            "dashboard": {"controller": self._controller_id, "etcd_error": self._etcd_error, "loaded": state is not None},
        }

    def _publish(self) -> None:
        """Rebuild the state (only the models whose keys changed) and push what differs."""
        state = None
        changes = self._cursor.take()
        if changes is not None:
            if changes.everything or self._fleet.fleet is None:
                fleet = self._fleet.rebuild(changes.revision, (f for f in changes.files.values() if f is not None))
            else:
                fleet = self._fleet.apply(changes.revision, changes.files)
            state = self._builder.build_fleet(fleet)
        document = self._document(state)
        parts = self._builder.parts if state is not None else {}
        changed = self._builder.changed if state is not None else frozenset()
        with self._state_lock:
            self._doc, self._doc_text = document, None
        patch: dict[str, Any] = {"revision": document["revision"]}
        for key in _PATCH_KEYS:
            text = json.dumps(document[key], separators=(",", ":"))
            if text != self._last_pushed.get(key):
                patch[key] = document[key]
                self._last_pushed[key] = text
        if changed:
            patch["models"] = {name: {"model": parts[name].entry, "cells": parts[name].row} if name in parts else None for name in sorted(changed)}
        if len(patch) == 1:
            return  # only the revision moved (a history entry, a key the page does not show)
        self.publishes += 1
        self._broadcaster.publish(patch)

    def _full_text(self) -> str:
        with self._state_lock:
            if self._doc_text is None:
                self._doc_text = json.dumps(self._doc, separators=(",", ":"))
            return self._doc_text

    # -- HTTP ---------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self._page, methods=["GET"]),
            Route("/dashboard.js", self._js, methods=["GET"]),
            Route("/api/state", self._api_state, methods=["GET"]),
            Route("/api/events", self._api_events, methods=["GET"]),
            Route("/api/history/{model}", self._api_history, methods=["GET"]),
        ], middleware=[Middleware(SecurityHeaders)])

    async def _page(self, request: Request) -> Response:
        return Response(self._index, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def _js(self, request: Request) -> Response:
        return Response(self._script, media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)

    def _api_state(self, request: Request) -> Response:  # sync: a large fleet's JSON is made in a worker thread
        return Response(self._full_text(), media_type="application/json", headers={"Cache-Control": "no-store"})

    async def _api_events(self, request: Request) -> Response:
        subscriber = self._broadcaster.subscribe()
        keepalive = self._keepalive

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while not subscriber.closed:
                    item = await subscriber.next(keepalive)
                    if subscriber.closed:
                        break
                    # JSON from json.dumps holds no newline, so one data line carries it
                    if item is None:
                        yield ": keepalive\n\n"
                    elif isinstance(item, str):
                        yield f"event: state\ndata: {await asyncio.to_thread(self._full_text)}\n\n"
                    else:
                        yield f"event: patch\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
            finally:
                self._broadcaster.unsubscribe(subscriber)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    def _api_history(self, request: Request) -> Response:  # sync: Starlette runs it in a worker thread
        model = request.path_params["model"]
        try:
            limit = min(max(int(request.query_params.get("limit", HISTORY_LIMIT)), 1), HISTORY_LIMIT_MAX)
            self._ks.history_prefix(model)  # validates the name
        except (ValueError, InvalidName) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            snapshot, total = self._history.newest(model, limit)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(build_history(snapshot, self._ks, model, limit, total), headers={"Cache-Control": "no-store"})
