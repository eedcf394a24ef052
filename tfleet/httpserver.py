"""The operations endpoint every daemon serves: /metrics, /healthz and /readyz.

A standard-library threading HTTP server is enough for three small read-only endpoints and
keeps the agent lean; metrics come from the daemon's own prometheus-client registry, as
tfleet/exposition.py writes them (the controller's per-model gauges on a fast path).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tfleet.exposition import generate

# A probe answers (ok, reason); the reason is shown in the body for people and scripts.
Probe = Callable[[], tuple[bool, str]]
# An extra read-only route answers (status code, body, content type).
Route = Callable[[], tuple[int, bytes, str]]


class OpsServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, *, healthy: Probe, ready: Probe, routes: dict[str, Route] | None = None) -> None:
        self._registry = registry
        self._probes = {"/healthz": healthy, "/readyz": ready}
        self._routes = dict(routes or {})
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # what an AF_INET socket reports (typeshed also allows bytes)
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate(ops._registry), CONTENT_TYPE_LATEST)
                elif path in ops._routes:
                    self._reply(*ops._routes[path]())
                elif path in ops._probes:
                    ok, reason = ops._probes[path]()
                    self._reply(200 if ok else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                pass

        return Handler
