"""Helpers of the simulator tests: a fast server, model specs, and asking it over gRPC and REST."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc

from tfleet.sim.server import SimServer
from tfleet.tfs.client import TfsClient
from tfleet.tfs.pb import (
    predict_pb2,
    prediction_service_pb2_grpc,
    tensorflow_types_pb2,
)
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy


def fast_sim(**overrides: Any) -> SimServer:
    """A server that polls every 0.05 s and retries a failed load twice, 0.05 s apart."""
    return SimServer(poll_wait_seconds=0.05, load_retry_interval=0.05, max_load_retries=2, **overrides)


def spec(base: Path, name: str, *versions: int, labels: dict[str, int] | None = None) -> ModelConfigSpec:
    policy = VersionPolicy("specific", versions=versions) if versions else VersionPolicy()
    return ModelConfigSpec(name, str(base / name), model_version_policy=policy, version_labels=tuple(sorted((labels or {}).items())))


def states(client: TfsClient, name: str) -> dict[int, str] | None:
    found = client.get_model_status(name, timeout=5)
    return None if found is None else {s.version: s.state.value for s in found}


def rest(sim: SimServer, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{sim.rest_address}{path}", data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    text = raw.decode()
    return status, (json.loads(text) if text.startswith("{") else text)


def predict(channel: grpc.Channel, name: str, values: list[float], **model_spec: Any) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if "version" in model_spec:
        request.model_spec.version.value = model_spec.pop("version")
    for key, value in model_spec.items():
        setattr(request.model_spec, key, value)
    request.inputs["x"].dtype = tensorflow_types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=len(values))
    request.inputs["x"].float_val.extend(values)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=5)


def metric(sim: SimServer, line_start: str) -> float:
    _, text = rest(sim, "/monitoring/prometheus/metrics")
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)
