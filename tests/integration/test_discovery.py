"""The controller's Prometheus service discovery routes, over a real etcd.

The last test runs a real Prometheus (Debian's, when installed) with
deploy/prometheus/prometheus.yml pointed at the routes, and checks the targets it builds.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from tests.helpers import wait_until
from tfleet import schema
from tfleet.agent.metrics import AgentMetrics
from tfleet.controller.discovery import AGENTS_PATH, TFSERVING_PATH, discovery_routes
from tfleet.etcd_local import free_port
from tfleet.httpserver import OpsServer
from tfleet.keyspace import Keyspace
from tfleet.schema import HostRecord
from tfleet.store import EtcdSettings, EtcdStore

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def host_record(host: str, *, metrics: str | None, rest: str = "127.0.0.1:8501", labels: dict[str, str] | None = None) -> bytes:
    return schema.encode(
        HostRecord(
            host=host,
            grpc_address="127.0.0.1:8500",
            rest_address=rest,
            memory_mb=512,
            labels=labels or {},
            agent_version="0.1.0",
            started_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
            metrics_address=metrics,
        )
    )


@pytest.fixture
def keyspace(prefix: str) -> Keyspace:
    return Keyspace(prefix.rstrip("/"))


@pytest.fixture
def ops(store, keyspace) -> Iterator[OpsServer]:
    """The routes served as the controller serves them: on an OpsServer."""
    server = OpsServer(
        "127.0.0.1", 0, AgentMetrics().registry, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"), routes=discovery_routes(store, keyspace)
    )
    server.start()
    yield server
    server.stop()


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_routes_list_the_live_host_records(store, keyspace) -> None:
    store.put(keyspace.host("h1"), host_record("h1", metrics="10.0.0.1:9100", rest="10.0.0.1:8501", labels={"zone": "a"}))
    store.put(keyspace.host("h2"), host_record("h2", metrics=None, rest="10.0.0.2:8501"))
    store.put(keyspace.host("bad"), b'{"host": "bad"}')  # invalid: skipped, the rest still listed
    routes = discovery_routes(store, keyspace)

    status, body, content_type = routes[AGENTS_PATH]()
    assert (status, content_type) == (200, "application/json")
    agents = json.loads(body)
    assert [g["targets"] for g in agents] == [["10.0.0.1:9100"]]  # h2 has no metrics address
    assert agents[0]["labels"]["__meta_tfleet_host"] == "h1" and agents[0]["labels"]["__meta_tfleet_label_zone"] == "a"

    status, body, _ = routes[TFSERVING_PATH]()
    assert status == 200
    assert [g["targets"] for g in json.loads(body)] == [["10.0.0.1:8501"], ["10.0.0.2:8501"]]

    store.delete(keyspace.host("h1"))  # its lease expired: gone on the next request
    assert json.loads(routes[AGENTS_PATH]()[1]) == []
    assert [g["targets"] for g in json.loads(routes[TFSERVING_PATH]()[1])] == [["10.0.0.2:8501"]]


def test_other_prefixes_are_not_listed(store, keyspace, prefix) -> None:
    other = Keyspace(prefix.rstrip("/") + "-other")
    store.put(other.host("stranger"), host_record("stranger", metrics="10.9.9.9:9100"))
    assert json.loads(discovery_routes(store, keyspace)[AGENTS_PATH]()[1]) == []


def test_served_over_http_by_the_ops_server(store, keyspace, ops) -> None:
    store.put(keyspace.host("h1"), host_record("h1", metrics="10.0.0.1:9100"))
    status, content_type, body = http_get(f"http://{ops.address}{AGENTS_PATH}")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)[0]["targets"] == ["10.0.0.1:9100"]
    status, _, body = http_get(f"http://{ops.address}{TFSERVING_PATH}?ignored=1")
    assert status == 200 and json.loads(body)[0]["labels"]["__metrics_path__"] == "/monitoring/prometheus/metrics"


def test_unreachable_etcd_answers_503_with_the_reason(etcd_factory, keyspace) -> None:
    etcd = etcd_factory()
    with EtcdStore(EtcdSettings((etcd.client_url,), call_timeout=0.5)) as store:
        routes = discovery_routes(store, keyspace)
        store.put(keyspace.host("h1"), host_record("h1", metrics="10.0.0.1:9100"))
        assert routes[AGENTS_PATH]()[0] == 200
        etcd.stop()
        status, body, content_type = routes[AGENTS_PATH]()
        assert status == 503 and content_type.startswith("text/plain")
        text = body.decode()
        assert text.startswith("cannot read host records from etcd: ") and text.endswith("\n") and text.count("\n") == 1
        assert etcd.client_url.removeprefix("http://") in text
        assert routes[TFSERVING_PATH]()[0] == 503


# -- a real Prometheus on the example configuration -------------------------------------------


def _prometheus_config(tmp_path: pathlib.Path, sd_address: str) -> pathlib.Path:
    """deploy/prometheus/prometheus.yml with the discovery URLs on the test's ops server,
    fast intervals, no controller job and no rule files."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config.pop("rule_files")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tfleet-agent"]["http_sd_configs"][0]["url"] == "http://controller:9200/sd/agents"
    assert jobs["tensorflow-serving"]["http_sd_configs"][0]["url"] == "http://controller:9200/sd/tfserving"
    for name, path in (("tfleet-agent", AGENTS_PATH), ("tensorflow-serving", TFSERVING_PATH)):
        jobs[name]["http_sd_configs"] = [{"url": f"http://{sd_address}{path}", "refresh_interval": "1s"}]
    config["scrape_configs"] = [jobs["tfleet-agent"], jobs["tensorflow-serving"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_real_prometheus_discovers_and_scrapes_agents_and_tf_serving(store, keyspace, ops, sim, tmp_path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (scripts/ensure-system-deps installs Debian's package)")
    agent = OpsServer("127.0.0.1", 0, AgentMetrics().registry, healthy=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    agent.start()
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={_prometheus_config(tmp_path, ops.address)}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        store.put(keyspace.host("h1"), host_record("h1", metrics=agent.address, rest=sim.rest_address, labels={"zone": "a"}))

        def active_targets() -> list[dict]:
            status, _, body = http_get(f"http://127.0.0.1:{port}/api/v1/targets?state=active")
            assert status == 200
            return json.loads(body)["data"]["activeTargets"]

        def healthy() -> list[dict] | None:
            targets = active_targets()
            return targets if len(targets) == 2 and all(t["health"] == "up" for t in targets) else None

        targets = wait_until(
            healthy, 60, interval=0.5, ignore=(OSError,), message=f"two healthy targets; log: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        )
        by_job = {t["labels"]["job"]: t for t in targets}
        assert set(by_job) == {"tfleet-agent", "tensorflow-serving"}
        agent_target, tfs_target = by_job["tfleet-agent"], by_job["tensorflow-serving"]
        assert agent_target["scrapeUrl"] == f"http://{agent.address}/metrics"
        assert tfs_target["scrapeUrl"] == f"http://{sim.rest_address}/monitoring/prometheus/metrics"
        for target in (agent_target, tfs_target):
            assert target["labels"]["host"] == "h1"
            assert "job_hint" not in target["labels"]  # used as the job, then dropped
            assert target["discoveredLabels"]["__meta_tfleet_label_zone"] == "a"

        store.delete(keyspace.host("h1"))  # the host leaves: both targets go
        wait_until(lambda: active_targets() == [], 30, interval=0.5, message="targets removed after the host record went")
    finally:
        process.terminate()
        process.wait(timeout=30)
        agent.stop()
