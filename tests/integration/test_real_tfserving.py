"""The agent against the official images (testcontainers): etcd and tensorflow/serving.

Runs only where a Docker engine answers; elsewhere every test here is skipped with that
reason. A real SavedModel is needed for TF Serving to report AVAILABLE, so the tests also
need TensorFlow to write one (the tiny half_plus_two model); without it they skip, saying so.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.integration.agent_harness import Fleet, start_agent
from tfleet.store import EtcdSettings, EtcdStore

pytestmark = pytest.mark.docker

TF_SERVING_IMAGE = "tensorflow/serving:2.18.0"
ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"


def _docker_engine_or_skip() -> None:
    docker = pytest.importorskip("docker", reason="the docker Python package is not installed")
    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 (any failure means: no engine here)
        pytest.skip(f"no Docker engine answers here ({type(exc).__name__}); the real-server tests need one")


def _write_half_plus_two(base: pathlib.Path, version: int) -> None:
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed to write a real SavedModel")

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 0.5 + 2.0}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(base / str(version)), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def real_servers(tmp_path_factory):
    _docker_engine_or_skip()
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    models = tmp_path_factory.mktemp("real-models")
    # the server refuses to start with neither a model nor a config file: an empty list,
    # read once at start-up (never polled, so it cannot overwrite what the agent pushes)
    (models / "empty.config").write_text("model_config_list {}\n")
    _write_half_plus_two(models / "half_plus_two", 1)
    _write_half_plus_two(models / "half_plus_two", 2)
    etcd = (
        DockerContainer(ETCD_IMAGE)
        .with_command("etcd --listen-client-urls=http://0.0.0.0:2379 --advertise-client-urls=http://127.0.0.1:2379")
        .with_exposed_ports(2379)
    )
    tfs = (
        DockerContainer(TF_SERVING_IMAGE)
        .with_volume_mapping(str(models), str(models), "ro")
        .with_exposed_ports(8500, 8501)
        # the server binary itself: the image's entrypoint script would add a --model_base_path
        # that does not exist. No model at start; the agent pushes everything through gRPC.
        .with_kwargs(entrypoint="tensorflow_model_server")
        .with_command(f"--port=8500 --rest_api_port=8501 --file_system_poll_wait_seconds=1 --model_config_file={models}/empty.config")
    )
    with etcd, tfs:
        wait_for_logs(etcd, "ready to serve client requests", timeout=60)
        wait_for_logs(tfs, "Exporting HTTP/REST API", timeout=120)
        yield {
            "models": models,
            "etcd_url": f"http://{etcd.get_container_host_ip()}:{etcd.get_exposed_port(2379)}",
            "grpc": f"{tfs.get_container_host_ip()}:{tfs.get_exposed_port(8500)}",
            "rest": f"{tfs.get_container_host_ip()}:{tfs.get_exposed_port(8501)}",
        }


def test_real_tf_serving_loads_labels_and_reports_errors(real_servers, tmp_path) -> None:
    store = EtcdStore(EtcdSettings(endpoints=(real_servers["etcd_url"],)))
    fleet = Fleet(store, "/real")
    agent = start_agent(
        host="real1",
        etcd_url=real_servers["etcd_url"],
        prefix="/real",
        tfs_grpc=real_servers["grpc"],
        tfs_rest=real_servers["rest"],
        state_dir=tmp_path / "state",
        lease_ttl=10,
        reload_timeout=8.0,
        status_timeout=3.0,
    )
    base = str(real_servers["models"] / "half_plus_two")
    try:
        fleet.assign("real1", "half_plus_two", {"base_path": base, "model_version_policy": {"specific": {"versions": [1]}}})
        fleet.wait_available("real1", "half_plus_two", {1}, timeout=120)
        rev = fleet.assign(
            "real1", "half_plus_two", {"base_path": base, "model_version_policy": {"specific": {"versions": [1, 2]}}, "version_labels": {"stable": 2}}
        )
        fleet.wait_status("real1", "half_plus_two", lambda s: s.assignment_revision == rev and s.version_labels == {"stable": 2}, timeout=120)
        fleet.assign("real1", "missing", {"base_path": str(real_servers["models"] / "nope")})
        status = fleet.wait_status("real1", "missing", lambda s: s.error is not None, timeout=30)
        assert "does not exist" in status.error
    finally:
        agent.stop()
        store.close()
