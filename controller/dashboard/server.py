"""The dashboard of one controller: it consumes the fleet cache in its state thread and serves
the Starlette app (page, JSON state, live stream, history) in its HTTP thread, with security
headers on every response, bound at start-up."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tfleet.backoff import Backoff
from tfleet.controller.dashboard.feed import _Broadcaster
from tfleet.controller.dashboard.history import HISTORY_LIMIT, HISTORY_LIMIT_MAX, HistoryReader, build_history, default_history_reader
from tfleet.controller.dashboard.state import StateBuilder
from tfleet.controller.fleetcache import FleetCache
from tfleet.controller.snapshot import FleetBuilder
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.logs import Logger
from tfleet.loop import Loop, Outcome
from tfleet.store import StoreError
from tfleet.ports import Store

COALESCE_SECONDS = 0.1
# While the cache's watch reports trouble, etcd is probed this often (the watch resumes by itself).
PROBE_SECONDS = 2.0
KEEPALIVE_SECONDS = 15.0
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
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self._headers}
                message = {**message, "headers": [*(h for h in message.get("headers", []) if h[0].lower() not in names), *self._headers]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


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

    def __init__(
        self,
        store: Store,
        keyspace: Keyspace,
        host: str,
        port: int,
        *,
        controller_id: str,
        log: Logger,
        coalesce: float = COALESCE_SECONDS,
        keepalive: float = KEEPALIVE_SECONDS,
        rng: random.Random | None = None,
        cache: FleetCache | None = None,
        history: HistoryReader | None = None,
    ) -> None:
        """cache: the process's fleet cache (the controller's); without one the dashboard keeps its own."""
        self._store = store
        self._ks = keyspace
        self._controller_id = controller_id
        self._log = log
        self._keepalive = keepalive
        self._rng = rng or random.Random()
        self._cache = cache if cache is not None else FleetCache(store, keyspace, log=log)
        self._cursor = self._cache.cursor("dashboard")
        self._fleet = FleetBuilder(keyspace)
        self._history = history or default_history_reader(store, keyspace)
        self._builder = StateBuilder(keyspace)
        self._broadcaster = _Broadcaster()
        # The state thread: woken by the cache; a pass that cannot start the cache retries
        # after a backoff; one that raised forgets what it took from the cache (half applied).
        self._loop = Loop(
            "dashboard-state",
            self._step,
            log=log,
            coalesce=coalesce,
            retry_backoff=Backoff(initial=0.5, cap=5.0),
            on_failure=self._forget,
            rng=self._rng,
        )
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
        config = uvicorn.Config(
            self._app(), log_config=None, access_log=False, lifespan="off", ws="none", http="h11", loop="asyncio", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._serve, name="dashboard-http", daemon=True)
        self._state_thread = threading.Thread(target=self._loop.run, name="dashboard-state", daemon=True)

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
        self._loop.stop()
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
    def _step(self, woke: bool) -> Outcome:
        """One turn of the state thread (tfleet/loop.py): start the cache if nobody did, then
        rebuild and push the state after a change, or probe etcd while the watch reports trouble."""
        if not self._cache.running:
            if not self._open():
                self._publish()  # the page says why it shows nothing new
                return Outcome("etcd_unavailable", retry=True)
            woke = True
        elif self._etcd_error and not woke:
            woke = self._probe()
        if woke:
            self._publish()
        return Outcome("ok", requeue_after=PROBE_SECONDS if self._etcd_error else None)

    def _forget(self) -> None:
        """After a pass raised: the changes taken from the cache may be half applied, so the
        next one starts over from all of it."""
        self._cursor.forget()
        self._fleet.forget()
        self._loop.wake()

    def _open(self) -> bool:
        """Start the cache unless the controller's loop did (the first one to come does it)."""
        if not self._cache.ensure_started():
            self._set_error(self._cache.error or "etcd unavailable")
            return False
        self._etcd_error = None
        return True

    def _on_change(self) -> None:  # the cache's watch thread: be quick
        self._etcd_error = None
        self._loop.wake()

    def _on_error(self, error: Exception) -> None:
        self._set_error(str(error))
        self._loop.wake()

    def _set_error(self, message: str) -> None:
        if message != self._etcd_error:
            self._log.info("dashboard_etcd_unavailable", error=message)
        self._etcd_error = message

    def _probe(self) -> bool:
        """While the watch reports trouble: is etcd back? (The watch resumes by itself.)"""
        try:
            self._store.get(self._ks.leader())
        except StoreError:
            return False
        self._etcd_error = None
        return True

    def _document(self, state: dict[str, Any] | None) -> dict[str, Any]:
        return {
            **(
                state
                or {
                    "prefix": self._ks.prefix,
                    "revision": 0,
                    "leader": None,
                    "hosts": [],
                    "models": [],
                    "cells": {},
                    "rollouts": [],
                    "errors": [],
                    "summary": {},
                }
            ),
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
                fleet = self._fleet.apply(changes.revision, changes.files, previous=changes.previous)
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
        return Starlette(
            routes=[
                Route("/", self._page, methods=["GET"]),
                Route("/dashboard.js", self._js, methods=["GET"]),
                Route("/api/state", self._api_state, methods=["GET"]),
                Route("/api/events", self._api_events, methods=["GET"]),
                Route("/api/history/{model}", self._api_history, methods=["GET"]),
            ],
            middleware=[Middleware(SecurityHeaders)],
        )

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
