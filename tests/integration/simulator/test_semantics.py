"""One test per semantic of tfserving-wire.md ("Semantics that a real server has"), named after
it: reloads replace the whole list, block, are serialized and queue behind a hanging load;
retries, labels, versions from the file system, status, Predict and the REST port."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.helpers import wait_until
from tfleet.sim.fixtures import make_model, write_version
from tfleet.tfs.client import TfsClient
from tfleet.tfs.pb import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)
from tfleet.tfs.types import ModelConfigSpec, TfsDeadlineExceeded, TfsError, VersionPolicy
from tests.integration.simulator.support import fast_sim, metric, predict, rest, spec, states


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
