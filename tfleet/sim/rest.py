"""The simulator's REST port, shaped like tensorflow_model_server's (default port 8501).

    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]             model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata    signature metadata
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict     {"instances": [...]} or {"inputs": ...}
    GET  /monitoring/prometheus/metrics                          Prometheus text (see metrics.py)

Errors answer {"error": "<message>"} with the HTTP status the real server maps the code to.
`RestApi` is the whole behaviour, independent of the HTTP server, so tests can call it
directly; `RestServer` only binds it to a port with the standard library's threading server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tfleet.sim import model
from tfleet.sim.core import SimCore
from tfleet.sim.metrics import SimMetrics
from tfleet.sim.status import INVALID_ARGUMENT, OK_STATUS, SimError, Status

METRICS_PATH = "/monitoring/prometheus/metrics"
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict)?$"
)
_JSON = "application/json"
Response = tuple[int, str, bytes]


def _json(status: int, body: Any) -> Response:
    return status, _JSON, json.dumps(body).encode()


def _error(status: Status) -> Response:
    return _json(status.http_status, {"error": status.message})


class RestApi:
    def __init__(self, core: SimCore, metrics: SimMetrics) -> None:
        self._core, self._metrics = core, metrics

    def handle(self, method: str, path: str, body: bytes) -> Response:
        self._core.faults.checkpoint()
        path = path.split("?", 1)[0]
        if method == "GET" and path == METRICS_PATH:
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._metrics.registry)
        match = _MODEL_URL.match(path)
        if match is None:
            if path.startswith("/v1/"):
                return _error(Status(INVALID_ARGUMENT, f"Malformed request: {method} {path}"))
            return _json(404, {"error": f"Not found: {path}"})
        name, suffix = match["name"], match["suffix"]
        version = int(match["version"]) if match["version"] is not None else None
        label = match["label"]
        try:
            if method == "GET" and suffix is None:
                return _json(200, self._status(name, version, label))
            if method == "GET" and suffix == "/metadata":
                return _json(200, self._metadata(name, version, label))
            if method == "POST" and suffix == ":predict":
                return self._predict(name, version, label, body)
        except SimError as err:
            return _error(err.status)
        return _error(Status(INVALID_ARGUMENT, f"Malformed request: {method} {path}"))

    def _status(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        wanted = self._core.resolve_version(name, version, label)
        rows = self._core.model_status(name, wanted)
        return {
            "model_version_status": [
                {
                    "version": str(number),
                    "state": entry.state.value,
                    "status": {"error_code": entry.status.code_name, "error_message": entry.status.message},
                }
                for number, entry in rows
            ]
        }

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        served = self._core.servable(name, version, label)
        return {
            "model_spec": {"name": served.model, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": model.signature_json()}},
        }

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> Response:
        started = time.perf_counter()
        status = OK_STATUS
        try:
            result = self._predict_body(name, version, label, body)
        except SimError as err:
            status = err.status
        self._metrics.record_request(name, status.code_name, "REST", time.perf_counter() - started)
        return _error(status) if not status.ok else _json(200, result)

    def _predict_body(self, name: str, version: int | None, label: str | None, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body or b"null")
        except ValueError as err:
            raise SimError(INVALID_ARGUMENT, f"JSON Parse error: {err}") from err
        if not isinstance(request, dict):
            raise SimError(INVALID_ARGUMENT, "JSON Value: request body must be an object")
        served = self._core.servable(name, version, label)
        model.check_signature(str(request.get("signature_name", "")))
        if "instances" in request:
            instances = request["instances"]
            if not isinstance(instances, list):
                raise SimError(INVALID_ARGUMENT, "'instances' must be a JSON array")
            return {"predictions": [model.apply_nested(served.spec, self._input(item)) for item in instances]}
        if "inputs" in request:
            return {"outputs": model.apply_nested(served.spec, self._input(request["inputs"]))}
        raise SimError(INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")

    @staticmethod
    def _input(value: Any) -> Any:
        """An instance is either the value of the single input, or an object naming it."""
        if isinstance(value, dict):
            model.check_inputs(list(value))
            return value[model.INPUT]
        return value


class RestServer:
    def __init__(self, api: RestApi, host: str, port: int) -> None:
        handler = type("SimRestHandler", (_Handler,), {"api": api})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="sim-rest", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    api: RestApi
    server_version = "tfleet-sim"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, content_type, payload = self.api.handle(method, self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one log line per HTTP request would drown the reload outcomes."""
