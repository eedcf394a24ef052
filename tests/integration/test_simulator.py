"""The simulator against tfserving-wire.md, through the real TfsClient and raw gRPC stubs.

One test per semantic of the spec ("Semantics that a real server has"), named after it,
plus Predict, GetModelMetadata and the REST port. Every server here polls the file system
every 0.05 s and retries failed loads 2 times, 0.05 s apart, so nothing waits for long;
every wait is a poll with a deadline.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.helpers import wait_until
from tfleet.sim.fixtures import make_model, write_version
from tfleet.sim.server import SimServer
from tfleet.tfs.client import TfsClient
from tfleet.tfs.pb import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensorflow_types_pb2,
)
from tfleet.tfs.types import ModelConfigSpec, TfsDeadlineExceeded, TfsError, VersionPolicy


def fast_sim(**overrides: Any) -> SimServer:
    """A server that polls every 0.05 s and retries a failed load twice, 0.05 s apart."""
    return SimServer(poll_wait_seconds=0.05, load_retry_interval=0.05, max_load_retries=2, **overrides)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """Overrides the suite's `sim` (tests/simfixtures.py) with a faster-polling server."""
    server = fast_sim().start()
    yield server
    server.stop(0)


@pytest.fixture
def client(sim: SimServer) -> Iterator[TfsClient]:
    tfs = TfsClient(sim.grpc_address)
    yield tfs
    tfs.close()


@pytest.fixture
def channel(sim: SimServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sim.grpc_address) as ch:
        yield ch


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


# ---------------------------------------------------------------------------- 1
def test_semantic_1_reload_replaces_the_whole_list(sim, client, channel, tmp_path) -> None:
    make_model(tmp_path, "a", [1])
    make_model(tmp_path, "b", [1])
    client.reload_config([spec(tmp_path, "a"), spec(tmp_path, "b")], timeout=10)
    assert states(client, "a") == {1: "AVAILABLE"} and states(client, "b") == {1: "AVAILABLE"}
    client.reload_config([spec(tmp_path, "a")], timeout=10)
    wait_until(lambda: states(client, "b") == {1: "END"}, 10, message="left-out model unloaded")
    assert states(client, "a") == {1: "AVAILABLE"}
    client.reload_config([], timeout=10)  # present but empty: unload everything
    wait_until(lambda: states(client, "a") == {1: "END"}, 10, message="empty list unloads everything")
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as no_config:
        stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=5)
    assert no_config.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Only ModelConfigList is currently supported" in no_config.value.details()


# ---------------------------------------------------------------------------- 2
def test_semantic_2_reload_blocks_until_new_models_are_available(sim, client, tmp_path) -> None:
    make_model(tmp_path, "slow", [1], load_seconds=1.0)
    started = time.monotonic()
    client.reload_config([spec(tmp_path, "slow")], timeout=20)
    assert time.monotonic() - started >= 1.0
    assert states(client, "slow") == {1: "AVAILABLE"}, "AVAILABLE as soon as the reload returns"

    make_model(tmp_path, "slow2", [1], load_seconds=1.0)
    with pytest.raises(TfsDeadlineExceeded):
        client.reload_config([spec(tmp_path, "slow"), spec(tmp_path, "slow2")], timeout=0.2)
    wait_until(lambda: states(client, "slow2") == {1: "AVAILABLE"}, 15, message="the load goes on after the client deadline")


# ---------------------------------------------------------------------------- 3
def test_semantic_3_reloads_are_serialized(tmp_path) -> None:
    # Parallel loads, so that only the reload lock can make the second reload wait.
    make_model(tmp_path, "slow", [1], load_seconds=1.0)
    make_model(tmp_path, "fast", [1])
    with fast_sim(num_load_threads=2) as server, TfsClient(server.grpc_address) as tfs:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(tfs.reload_config, [spec(tmp_path, "slow")], 20)
            wait_until(lambda: states(tfs, "slow") is not None, 10, message="first reload under way")
            tfs.reload_config([spec(tmp_path, "slow"), spec(tmp_path, "fast")], timeout=20)
            assert states(tfs, "slow") == {1: "AVAILABLE"}, "the second reload returned after the first"
            first.result(20)
        assert states(tfs, "fast") == {1: "AVAILABLE"}


# ---------------------------------------------------------------------------- 4
def test_semantic_4_missing_base_path_hangs_and_later_reloads_queue(sim, client, tmp_path) -> None:
    make_model(tmp_path, "ok", [1])
    late = spec(tmp_path, "late")
    with pytest.raises(TfsDeadlineExceeded):
        client.reload_config([late], timeout=0.5)
    with pytest.raises(TfsDeadlineExceeded):
        client.reload_config([late, spec(tmp_path, "ok")], timeout=0.5)
    assert states(client, "ok") is None, "the second reload is queued, not applied"
    assert metric(sim, "tensorflow_serving_reload_config_count_total") == 0
    make_model(tmp_path, "late", [1])  # the directory appears: both reloads complete
    wait_until(lambda: metric(sim, 'tensorflow_serving_reload_config_count_total{status="OK"}') == 2, 15, message="both queued reloads finished")
    assert states(client, "late") == {1: "AVAILABLE"} and states(client, "ok") == {1: "AVAILABLE"}


def test_semantic_4_no_numeric_version_dir_hangs_too_and_stop_interrupts(tmp_path) -> None:
    (tmp_path / "nover" / "export").mkdir(parents=True)
    server = fast_sim().start()
    tfs = TfsClient(server.grpc_address)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(tfs.reload_config, [spec(tmp_path, "nover")], 30)
        time.sleep(0.3)  # a negative check: the reload must still be hanging
        assert not pending.done()
        started = time.monotonic()
        server.stop(0)
        with pytest.raises(TfsError):
            pending.result(10)
        assert time.monotonic() - started < 5, "shutdown interrupts a hanging reload"
    tfs.close()


# ---------------------------------------------------------------------------- 5
def test_semantic_5_failed_version_is_retried_then_left_in_end(sim, client, tmp_path) -> None:
    make_model(tmp_path, "bad", [1], fail_versions=[1], fail_message="corrupt variables")
    with pytest.raises(TfsError) as failed:
        client.reload_config([spec(tmp_path, "bad")], timeout=10)
    assert failed.value.code == 2 and "did not become available" in failed.value.message
    (status,) = client.get_model_status("bad", timeout=5) or []
    assert (status.state.value, status.error_code, status.error_message) == ("END", 2, "corrupt variables")
    attempts = 'tensorflow_serving_load_attempt_count_total{model_name="bad",model_version="1",status="UNKNOWN"}'
    assert metric(sim, attempts) == 3, "1 attempt + 2 retries"
    client.reload_config([spec(tmp_path, "bad")], timeout=10)  # the same config: not new, not retried
    time.sleep(0.3)  # a negative check: give a (wrong) retry time to happen
    assert metric(sim, attempts) == 3 and sim.load_count("bad", 1) == 1

    make_model(tmp_path, "flaky", [1], fail_attempts=2)
    client.reload_config([spec(tmp_path, "bad"), spec(tmp_path, "flaky")], timeout=10)
    assert states(client, "flaky") == {1: "AVAILABLE"}, "succeeds on its last retry"


# ---------------------------------------------------------------------------- 6
def test_semantic_6_unchanged_model_is_left_alone(sim, client, channel, tmp_path) -> None:
    make_model(tmp_path, "steady", [1])
    make_model(tmp_path, "other", [1], load_seconds=0.5)
    client.reload_config([spec(tmp_path, "steady")], timeout=10)
    before = sim.manager.version_states("steady")[1]
    with ThreadPoolExecutor(1) as pool:
        reload = pool.submit(client.reload_config, [spec(tmp_path, "steady"), spec(tmp_path, "other")], 10)
        while not reload.done():  # serving never stops during the reload
            assert predict(channel, "steady", [1.0]).outputs["y"].float_val == [1.0]
        reload.result()
    assert sim.manager.version_states("steady")[1] == before, "no state change at all"
    assert sim.load_count("steady", 1) == 1


# ---------------------------------------------------------------------------- 7
def test_semantic_7_labels_only_point_at_available_versions(sim, client, channel, tmp_path) -> None:
    make_model(tmp_path, "m", [1, 2], load_seconds=0.3)
    with pytest.raises(TfsError) as refused:
        client.reload_config([spec(tmp_path, "m", 1, labels={"stable": 1})], timeout=10)
    assert refused.value.code == 9
    assert refused.value.message == ("Request to assign label to version 1 of model m, which is not currently available for inference")
    assert states(client, "m") is None, "a refused reload changes nothing"
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)
    client.reload_config([spec(tmp_path, "m", 1, labels={"stable": 1})], timeout=10)
    assert predict(channel, "m", [0.0], version_label="stable").model_spec.version.value == 1
    # Adding a version and pointing the label at it in one go is refused ...
    with pytest.raises(TfsError) as too_early:
        client.reload_config([spec(tmp_path, "m", 1, 2, labels={"stable": 2})], timeout=10)
    assert too_early.value.code == 9
    assert states(client, "m") == {1: "AVAILABLE"}
    # ... so a canary takes two reloads: add the version, then move the label.
    client.reload_config([spec(tmp_path, "m", 1, 2, labels={"stable": 1})], timeout=10)
    wait_until(lambda: states(client, "m") == {1: "AVAILABLE", 2: "AVAILABLE"}, 10, message="v2 loaded")
    client.reload_config([spec(tmp_path, "m", 1, 2, labels={"stable": 2, "old": 1})], timeout=10)
    assert predict(channel, "m", [0.0], version_label="stable").model_spec.version.value == 2


def test_semantic_7_flag_allows_labels_for_unavailable_models(tmp_path) -> None:
    make_model(tmp_path, "m", [1])
    with fast_sim(allow_labels_for_unavailable=True) as server, TfsClient(server.grpc_address) as tfs:
        tfs.reload_config([spec(tmp_path, "m", 1, labels={"stable": 1})], timeout=10)
        assert states(tfs, "m") == {1: "AVAILABLE"}


# ---------------------------------------------------------------------------- 8
def test_semantic_8_versions_come_from_the_file_system(sim, client, tmp_path) -> None:
    make_model(tmp_path, "m", [1, 2])
    (tmp_path / "m" / "not-a-version").mkdir()
    client.reload_config([spec(tmp_path, "m")], timeout=10)
    assert states(client, "m") == {2: "AVAILABLE"}, "latest: the highest number"
    write_version(tmp_path / "m", 3)  # no reload: the next poll finds it
    wait_until(lambda: states(client, "m") == {2: "END", 3: "AVAILABLE"}, 10, message="v3 replaced v2")
    shutil.rmtree(tmp_path / "m" / "3")
    wait_until(lambda: states(client, "m") == {2: "AVAILABLE", 3: "END"}, 10, message="back to v2")

    for name in ("all", "two", "specific"):
        make_model(tmp_path, name, [1, 2, 3])
    client.reload_config(
        [
            spec(tmp_path, "m"),
            ModelConfigSpec("all", str(tmp_path / "all"), model_version_policy=VersionPolicy("all")),
            ModelConfigSpec("two", str(tmp_path / "two"), model_version_policy=VersionPolicy("latest", num_versions=2)),
            spec(tmp_path, "specific", 1, 3, 7),  # 7 does not exist: simply not aspired
        ],
        timeout=10,
    )
    wait_until(lambda: states(client, "all") == {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}, 10, message="all versions")
    wait_until(lambda: states(client, "two") == {2: "AVAILABLE", 3: "AVAILABLE"}, 10, message="latest 2")
    wait_until(lambda: states(client, "specific") == {1: "AVAILABLE", 3: "AVAILABLE"}, 10, message="specific")


# ---------------------------------------------------------------------------- 9
def test_semantic_9_status_of_unknown_and_removed_models(sim, client, channel, tmp_path) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as unknown:
        stub.GetModelStatus(request, timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details() == "Could not find any versions of model nope"
    assert client.get_model_status("nope", timeout=5) is None

    make_model(tmp_path, "m", [1, 2])
    client.reload_config([spec(tmp_path, "m", 1, 2)], timeout=10)
    wait_until(lambda: states(client, "m") == {1: "AVAILABLE", 2: "AVAILABLE"}, 10, message="both loaded")
    request.model_spec.name = "m"
    request.model_spec.version.value = 2
    only = stub.GetModelStatus(request, timeout=5)
    assert [(s.version, s.state) for s in only.model_version_status] == [(2, 30)]
    request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as missing_version:
        stub.GetModelStatus(request, timeout=5)
    assert missing_version.value.code() == grpc.StatusCode.NOT_FOUND

    client.reload_config([], timeout=10)
    wait_until(lambda: states(client, "m") == {1: "END", 2: "END"}, 10, message="removed model answers END")


# ---------------------------------------------------------------------------- 10
def test_semantic_10_predict_needs_an_available_version(sim, client, channel, tmp_path) -> None:
    def code_of(**kwargs: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            predict(channel, **kwargs)
        return err.value.code()

    assert code_of(name="m", values=[1.0]) == grpc.StatusCode.NOT_FOUND
    make_model(tmp_path, "m", [1, 2], load_seconds=1.0, scale=3.0)
    with ThreadPoolExecutor(1) as pool:
        reload = pool.submit(client.reload_config, [spec(tmp_path, "m", 1)], 10)
        wait_until(lambda: (states(client, "m") or {}).get(1) == "LOADING", 10, message="loading")
        assert code_of(name="m", values=[1.0]) == grpc.StatusCode.NOT_FOUND, "LOADING is not servable"
        reload.result()
    assert predict(channel, "m", [1.0], version=1).outputs["y"].float_val == [3.0]
    assert code_of(name="m", values=[1.0], version=2) == grpc.StatusCode.NOT_FOUND
    assert code_of(name="m", values=[1.0], version_label="nope") == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(name="m", values=[1.0], signature_name="other") == grpc.StatusCode.FAILED_PRECONDITION


# ---------------------------------------------------------------------------- 11
def test_semantic_11_rest_status_predict_and_metrics(sim, client, tmp_path) -> None:
    make_model(tmp_path, "m", [3], scale=2.0, bias=1.0, memory_mb=12)
    client.reload_config([spec(tmp_path, "m", 3, labels={})], timeout=10)
    client.reload_config([spec(tmp_path, "m", 3, labels={"stable": 3})], timeout=10)
    expected = {"model_version_status": [{"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest(sim, "/v1/models/m") == (200, expected)
    assert rest(sim, "/v1/models/m/versions/3") == (200, expected)
    assert rest(sim, "/v1/models/m/versions/4")[0] == 404
    assert rest(sim, "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert rest(sim, "/v1/models/m:predict", {"instances": [1.0, [2, 3]]}) == (200, {"predictions": [3.0, [5.0, 7.0]]})
    assert rest(sim, "/v1/models/m/versions/3:predict", {"instances": [{"x": 0}]}) == (200, {"predictions": [1.0]})
    assert rest(sim, "/v1/models/m/labels/stable:predict", {"inputs": {"x": [1]}}) == (200, {"outputs": [3.0]})
    assert rest(sim, "/v1/models/m/versions/9:predict", {"instances": [1]})[0] == 404
    assert rest(sim, "/v1/models/m:predict", {"instances": [{"z": 1}]})[0] == 400
    status, meta = rest(sim, "/v1/models/m/metadata")
    assert status == 200 and meta["model_spec"]["version"] == "3"
    assert meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"

    count = "tensorflow_serving_request_count_total"
    assert metric(sim, count + '{entrypoint="REST",model_name="m",status="OK"}') == 3
    assert metric(sim, count + '{entrypoint="REST",model_name="m",status="NOT_FOUND"}') == 1
    assert metric(sim, count + '{entrypoint="REST",model_name="m",status="INVALID_ARGUMENT"}') == 1
    assert metric(sim, 'tensorflow_serving_request_latency_count{API="predict",entrypoint="REST",model_name="m"}') == 5
    state = "tensorflow_serving_model_version_state"
    assert metric(sim, state + '{model_name="m",model_version="3",state="AVAILABLE"}') == 1
    assert metric(sim, 'tensorflow_serving_model_memory_bytes{model_name="m",model_version="3"}') == 12 * 1024 * 1024
    other = fast_sim().start()
    try:
        assert metric(other, "tensorflow_serving_request_count_total") == 0, "one registry per instance"
    finally:
        other.stop(0)


# ---------------------------------------------------------------------------- Predict / GetModelMetadata
def test_predict_tensor_encodings_and_output_filter(sim, client, channel, tmp_path) -> None:
    make_model(tmp_path, "m", [1], scale=2.0, bias=0.5)
    client.reload_config([spec(tmp_path, "m")], timeout=10)
    reply = predict(channel, "m", [1.0, 2.0])
    assert list(reply.outputs["y"].float_val) == [2.5, 4.5]
    assert [d.size for d in reply.outputs["y"].tensor_shape.dim] == [2]
    assert (reply.model_spec.name, reply.model_spec.version.value, reply.model_spec.signature_name) == ("m", 1, "serving_default")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    x = request.inputs["x"]
    x.dtype = tensorflow_types_pb2.DT_DOUBLE
    x.tensor_shape.dim.add(size=2)
    x.tensor_shape.dim.add(size=1)
    x.tensor_content = struct.pack("<2d", 1.0, -1.0)
    request.output_filter.append("y")
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=5)
    assert list(reply.outputs["y"].float_val) == [2.5, -1.5]
    request.output_filter[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as bad_filter:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=5)
    assert bad_filter.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_metadata_packs_a_signature_def_map(sim, client, channel, tmp_path) -> None:
    make_model(tmp_path, "m", [4])
    client.reload_config([spec(tmp_path, "m")], timeout=10)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "m"
    reply = stub.GetModelMetadata(request, timeout=5)
    assert reply.model_spec.version.value == 4
    packed = reply.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["x"].dtype == tensorflow_types_pb2.DT_FLOAT
    assert serving.outputs["y"].dtype == tensorflow_types_pb2.DT_FLOAT
    request.metadata_field[:] = []
    with pytest.raises(grpc.RpcError) as no_field:
        stub.GetModelMetadata(request, timeout=5)
    assert no_field.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- client validation
class _OddStatusService(model_service_pb2_grpc.ModelServiceServicer):
    """A server answering with a state number the protocol does not define."""

    def GetModelStatus(self, request, context):  # noqa: N802
        reply = get_model_status_pb2.GetModelStatusResponse()
        reply.model_version_status.add(version=2, state=77)
        reply.model_version_status.add(version=1, state=30)
        return reply

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        reply = model_management_pb2.ReloadConfigResponse()
        reply.status.error_code = 9
        reply.status.error_message = "refused in the reply body"
        return reply


def test_client_tolerates_unknown_states_and_reads_status_in_the_reply() -> None:
    server = grpc.server(ThreadPoolExecutor(2))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_OddStatusService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with TfsClient(f"127.0.0.1:{port}") as tfs:
            assert [(s.version, s.state.value) for s in tfs.get_model_status("m", timeout=5) or []] == [(1, "AVAILABLE"), (2, "UNKNOWN")]
            with pytest.raises(TfsError) as refused:
                tfs.reload_config([], timeout=5)
            assert (refused.value.code, refused.value.message) == (9, "refused in the reply body")
    finally:
        server.stop(0)


# -- fault modes (tfleet/sim/faults.py, docs/simulator.md "Faults") ------------------------------


def test_restart_forgets_every_model_and_label(sim: SimServer, client: TfsClient, tmp_path: Path) -> None:
    make_model(tmp_path, "m", [1])
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)
    client.reload_config([spec(tmp_path, "m", 1, labels={"stable": 1})], timeout=10)
    sim.restart()
    # Like a restarted tensorflow_model_server: NOT_FOUND for the model, labels gone, and a
    # label for a version it has not loaded yet is refused (FAILED_PRECONDITION).
    wait_until(lambda: _status_or_error(client, "m") is None, 10, message="NOT_FOUND after the restart")
    assert sim.core.label_version("m", "stable") is None
    with pytest.raises(TfsError) as refused:
        client.reload_config([spec(tmp_path, "m", 1, labels={"stable": 1})], timeout=10)
    assert refused.value.code == 9 and "not currently available" in refused.value.message
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)
    assert [(s.version, s.state.value) for s in client.get_model_status("m", 2)] == [(1, "AVAILABLE")]


def _status_or_error(client: TfsClient, model: str):
    try:
        return client.get_model_status(model, 1)
    except TfsError:
        return "unreachable"


def test_freeze_holds_every_request_until_thawed(sim: SimServer, client: TfsClient, tmp_path: Path) -> None:
    make_model(tmp_path, "m", [1])
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)
    sim.faults.freeze()
    with pytest.raises(TfsDeadlineExceeded):
        client.get_model_status("m", 0.3)
    with pytest.raises(TfsDeadlineExceeded):
        client.reload_config([spec(tmp_path, "m", 1)], timeout=0.3)
    with pytest.raises((urllib.error.URLError, TimeoutError)):
        urllib.request.urlopen(f"http://{sim.rest_address}/v1/models/m", timeout=0.3)
    sim.faults.thaw()
    assert [s.state.value for s in client.get_model_status("m", 2)] == ["AVAILABLE"]


def test_stop_releases_frozen_requests(tmp_path: Path) -> None:
    server = fast_sim().start()
    server.faults.freeze()
    with TfsClient(server.grpc_address) as tfs, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(tfs.get_model_status, "m", 30)
        time.sleep(0.2)
        started = time.monotonic()
        server.stop(0)
        assert time.monotonic() - started < 10
        try:
            pending.result(timeout=10)  # answered or failed, but no longer held
        except TfsError:
            pass


def test_slow_reload_holds_the_reload_lock_but_status_answers(sim: SimServer, client: TfsClient, tmp_path: Path) -> None:
    make_model(tmp_path, "m", [1])
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)
    sim.faults.set_reload_delay(1.0)
    started = time.monotonic()
    with pytest.raises(TfsDeadlineExceeded):
        client.reload_config([spec(tmp_path, "m", 1)], timeout=0.3)
    assert [s.state.value for s in client.get_model_status("m", 0.5)] == ["AVAILABLE"]
    client.reload_config([spec(tmp_path, "m", 1)], timeout=10)  # queued behind the first
    assert time.monotonic() - started >= 1.0
