"""The simulator's Predict and GetModelMetadata encodings, the client's tolerance of odd
replies, and the fault modes (tfleet/sim/faults.py, docs/simulator.md "Faults"): restart,
freeze, stop while frozen, slow reload."""

from __future__ import annotations

import struct
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.helpers import wait_until
from tfleet.sim.fixtures import make_model
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
from tfleet.tfs.types import TfsDeadlineExceeded, TfsError
from tests.integration.simulator.support import fast_sim, predict, spec


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
