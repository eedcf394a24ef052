"""The compose file: TF Serving under the agent (sidecar, same models), two controllers with
dashboards, pinned official images, health checks on the ops port, Grafana provisioning."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deployfiles import (
    COMPOSE,
    ETCD_IMAGES,
    INVOCATIONS,
    Invocation,
    as_list,
    check_tf_serving,
    compose_mounts,
    compose_read,
    compose_services,
    rel,
    start_with_stub,
)


def test_compose_runs_tf_serving_for_the_agent() -> None:
    services = compose_services()
    tfs = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith(("tensorflow/serving", "docker.io/tensorflow/serving"))]
    assert len(tfs) == 1, f"compose: expected one TF Serving service, found {[n for n, _ in tfs]}"
    name, service = tfs[0]
    argv = as_list(service.get("entrypoint")) + as_list(service.get("command"))
    check_tf_serving(f"compose service {name}", service["image"], argv, lambda p: compose_read(service, p))


def test_the_compose_agent_is_a_sidecar_of_tf_serving_with_the_same_models() -> None:
    services = compose_services()
    (agent,) = [inv for inv in INVOCATIONS if inv.family == "compose" and inv.command == "agent"]
    service = agent.extra["service"]
    tfs_name = next(n for n, s in services.items() if str(s.get("image", "")).startswith("tensorflow/serving"))
    assert service.get("network_mode") == f"service:{tfs_name}", "the agent must share TF Serving's network (its host record advertises one address)"
    assert agent.env["TFLEET_TFS_GRPC"].startswith("127.0.0.1:") and agent.env["TFLEET_ADVERTISE_HOST"] == tfs_name
    ours = {target: host for host, target in compose_mounts(service)}
    theirs = {target: host for host, target in compose_mounts(services[tfs_name])}
    shared = [t for t in ours if t in theirs and ours[t] == theirs[t]]
    assert "/models" in shared, "agent and TF Serving must mount the same model directory at the same path"


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_compose_services_reference_existing_files(name: str) -> None:
    service = compose_services()[name]
    if "build" in service:
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context.is_dir(), f"compose service {name}: build context {build['context']} does not exist"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"compose service {name}: no {build.get('dockerfile')}"
    for host, target in compose_mounts(service):
        assert host.exists(), f"compose service {name}: mounts {host} at {target}, which does not exist"
    if name == "prometheus":
        config = next(a.split("=", 1)[1] for a in as_list(service.get("command")) if a.startswith("--config.file="))
        host_config = next(h / PurePosixPath(config).relative_to(t) for h, t in compose_mounts(service) if PurePosixPath(t) in PurePosixPath(config).parents)
        assert rel(host_config) == "deploy/prometheus/prometheus.yml"
        assert host_config.is_file(), f"compose prometheus: {rel(host_config)} does not exist"


def test_compose_images_are_official_and_etcd_is_recent() -> None:
    images = {name: str(s.get("image", "")) for name, s in compose_services().items()}
    assert ETCD_IMAGES.match(images["etcd"]), images["etcd"]
    assert images["prometheus"].startswith(("prom/prometheus:", "quay.io/prometheus/prometheus:"))
    assert images["grafana"].startswith("grafana/grafana:")
    for name, image in images.items():
        assert ":" in image and not image.endswith(":latest"), f"compose service {name}: pin the image tag ({image!r})"


def test_compose_has_two_controllers_with_dashboards() -> None:
    controllers = [inv for inv in INVOCATIONS if inv.family == "compose" and inv.command == "controller"]
    assert len(controllers) == 2
    ids = {inv.args[inv.args.index("--id") + 1] for inv in controllers}
    assert len(ids) == 2, "every controller needs its own --id"
    assert all("--dashboard-port" in inv.args for inv in controllers)


def healthcheck_url(service: dict[str, Any]) -> str:
    test = " ".join(as_list(service["healthcheck"]["test"]))
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\S*?)['\" )]", test + " ")
    assert match, f"healthcheck does not fetch a local URL: {test}"
    return f"{match.group(1)}{match.group(2)}"


@pytest.mark.parametrize("inv", [i for i in INVOCATIONS if i.family == "compose"], ids=str)
def test_compose_healthchecks_ask_healthz_on_the_ops_port(inv: Invocation, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = start_with_stub(inv, monkeypatch)
    assert healthcheck_url(inv.extra["service"]) == f"{settings.http_port}/healthz"


def test_grafana_provisioning_loads_the_shipped_dashboards() -> None:
    grafana = compose_services()["grafana"]
    provisioning = compose_read(grafana, "/etc/grafana/provisioning/dashboards/tfleet.yml")
    assert provisioning is not None, "compose grafana: no dashboard provider mounted"
    provider = yaml.safe_load(provisioning)["providers"][0]
    mounts = {target: host for host, target in compose_mounts(grafana)}
    host = mounts.get(provider["options"]["path"])
    assert host is not None and rel(host) == "deploy/grafana", "the provider must load the mount of deploy/grafana/"
    datasources = yaml.safe_load(compose_read(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml") or "{}")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert list(host.rglob("*.json")), "deploy/grafana/ ships no dashboard (*.json)"
