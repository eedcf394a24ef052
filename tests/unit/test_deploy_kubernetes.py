"""The Kubernetes manifests: well-formed objects listed in the kustomization, a highly available
and probed controller, TF Serving with the agent as a sidecar, TLS material that is really
mounted, and references (Services, PDBs, volumes, service accounts) that resolve."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.deployfiles import (
    DNS_1123,
    INVOCATIONS,
    KUBERNETES,
    Invocation,
    as_list,
    check_tf_serving,
    example_pod_name,
    k8s_env,
    k8s_find,
    k8s_objects,
    load_yaml,
    parse_quantity,
    rel,
    secret_data,
    start_with_stub,
)


@pytest.mark.parametrize(
    "path,index",
    [(p, i) for p in sorted(KUBERNETES.glob("*.yaml")) if p.name != "kustomization.yaml" for i, _ in enumerate(load_yaml(p))],
    ids=lambda v: rel(v) if isinstance(v, Path) else str(v),
)
def test_every_kubernetes_document_is_an_object(path: Path, index: int) -> None:
    doc = load_yaml(path)[index]
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], f"{rel(path)}[{index}]: apiVersion"
    assert isinstance(doc.get("kind"), str) and doc["kind"], f"{rel(path)}[{index}]: kind"
    name = (doc.get("metadata") or {}).get("name")
    assert isinstance(name, str) and DNS_1123.fullmatch(name) and len(name) <= 63, f"{rel(path)}[{index}]: metadata.name {name!r}"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")[0]
    listed = kustomization["resources"]
    present = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present, f"kustomization.yaml lists {sorted(listed)}, the directory has {present}"
    assert len(set(listed)) == len(listed)
    kinds = {doc["kind"] for _, doc in k8s_objects()}
    assert {"Namespace", "Secret", "ServiceAccount", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget"} <= kinds


def test_object_names_are_unique_per_kind() -> None:
    seen = [(doc["kind"], doc["metadata"]["name"]) for _, doc in k8s_objects()]
    assert len(seen) == len(set(seen)), sorted(seen)


def the_controller() -> Invocation:
    (inv,) = [i for i in INVOCATIONS if i.family == "kubernetes" and i.command == "controller"]
    return inv


def the_k8s_agent() -> Invocation:
    (inv,) = [i for i in INVOCATIONS if i.family == "kubernetes" and i.command == "agent"]
    return inv


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']} has no port named {port!r}"
    return named[port]


def test_controller_deployment_is_highly_available_and_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = the_controller()
    workload, container, pod = inv.extra["workload"], inv.container, inv.pod
    assert workload["kind"] == "Deployment" and workload["spec"]["replicas"] == 2
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items() for t in terms
    ), "the two controllers must not share a node"
    settings = start_with_stub(inv, monkeypatch)
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and port_number(container, ready["port"]) == settings.http_port == 9200
    assert live["path"] == "/healthz" and port_number(container, live["port"]) == settings.http_port
    ports = {p["containerPort"] for p in container["ports"]}
    assert settings.http_port in ports
    if getattr(settings, "dashboard_port", None) is not None:
        assert settings.dashboard_port in ports
        # the dashboard binds loopback by default; in a pod the Service must reach it
        assert settings.dashboard_host == "0.0.0.0"
    # the controller id is the pod name: unique per replica
    assert settings.id == example_pod_name(workload)


def test_controller_service_exposes_dashboard_and_service_discovery() -> None:
    inv = the_controller()
    service = k8s_find("Service", "tfleet-controller")
    assert service is not None
    assert service["spec"]["selector"].items() <= inv.pod["metadata"]["labels"].items()
    targets = {port_number(inv.container, p["targetPort"]) for p in service["spec"]["ports"]}
    dashboard = int(inv.args[inv.args.index("--dashboard-port") + 1])
    assert {9200, dashboard} <= targets, "the Service must carry the dashboard and the ops port (/sd)"


def test_tf_serving_runs_with_the_agent_as_a_sidecar(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = the_k8s_agent()
    workload, pod = inv.extra["workload"], inv.pod
    assert workload["kind"] == "StatefulSet", "host names are pod names: they must be stable"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    (tfs,) = [c for c in containers.values() if c["image"].startswith("tensorflow/serving")]
    # the agent's host and advertised address come from the pod (downward API)
    env_sources = {e["name"]: e.get("valueFrom", {}) for e in inv.container["env"]}
    assert env_sources["TFLEET_HOST"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env_sources["TFLEET_ADVERTISE_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    settings = start_with_stub(inv, monkeypatch)
    grpc_port = int(settings.tfs_grpc.rpartition(":")[2])
    assert settings.tfs_grpc == "127.0.0.1:8500" and settings.tfs_rest == "127.0.0.1:8501"
    assert grpc_port in {p["containerPort"] for p in tfs["ports"]}
    assert settings.host == example_pod_name(workload) and settings.advertise_host == "10.1.2.3"
    assert settings.memory_mb == parse_quantity(tfs["resources"]["limits"]["memory"]) // 2**20
    # the same model volume at the same path in both containers
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c].get("volumeMounts", [])} for c in containers}
    assert mounts[inv.container["name"]].get("models") == mounts[tfs["name"]].get("models") == "/models"
    # probes on the agent's ops port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = inv.container[probe]["httpGet"]
        assert get["path"] == path and port_number(inv.container, get["port"]) == settings.http_port

    def read(container_path: str) -> str | None:
        for mount in tfs.get("volumeMounts", []):
            inner = PurePosixPath(container_path)
            if PurePosixPath(mount["mountPath"]) in inner.parents:
                volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
                if "configMap" in volume:
                    config_map = k8s_find("ConfigMap", volume["configMap"]["name"])
                    return (config_map or {}).get("data", {}).get(str(inner.relative_to(mount["mountPath"])))
        return None

    argv = as_list(tfs.get("command")) + as_list(tfs.get("args"))
    check_tf_serving(f"{inv.where.split(',')[0]}, container {tfs['name']}", tfs["image"], argv, read)


def volume_files(volume: dict[str, Any]) -> set[str] | None:
    """File names a secret/configMap/projected volume provides (None: not knowable here)."""

    def of(source: dict[str, Any], kind: str) -> set[str]:
        obj = k8s_find(kind, source["name"])
        assert obj is not None, f"volume refers to {kind} {source['name']}, which no manifest defines"
        keys = set(secret_data(obj)) if kind == "Secret" else set(obj.get("data", {}))
        if "items" in source:
            assert {item["key"] for item in source["items"]} <= keys, f"{kind} {source['name']} lacks {source['items']}"
            return {item["path"] for item in source["items"]}
        return keys

    if "secret" in volume:
        return of({"name": volume["secret"]["secretName"], **volume["secret"]}, "Secret")
    if "configMap" in volume:
        return of(volume["configMap"], "ConfigMap")
    if "projected" in volume:
        files: set[str] = set()
        for source in volume["projected"]["sources"]:
            if "secret" in source:
                files |= of(source["secret"], "Secret")
            elif "configMap" in source:
                files |= of(source["configMap"], "ConfigMap")
        return files
    return None


@pytest.mark.parametrize("inv", [i for i in INVOCATIONS if i.container is not None], ids=str)
def test_tls_files_named_by_variables_are_mounted(inv: Invocation) -> None:
    """TFLEET_ETCD_CA_CERT/CERT/KEY name files that a mounted Secret really provides (for
    the StatefulSet: for every ordinal, as each pod picks <pod name>.crt)."""
    pod_spec = inv.pod["spec"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    workload = inv.extra["workload"]
    pod_names = (
        [f"{workload['metadata']['name']}-{n}" for n in range(workload["spec"]["replicas"])]
        if workload["kind"] == "StatefulSet"
        else [example_pod_name(workload)]
    )
    checked = 0
    for pod_name in pod_names:
        env = k8s_env(inv.container, pod_spec, pod_name)
        for variable in ("TFLEET_ETCD_CA_CERT", "TFLEET_ETCD_CERT", "TFLEET_ETCD_KEY"):
            if variable not in env:
                continue
            path = PurePosixPath(env[variable])
            mount = next((m for m in inv.container.get("volumeMounts", []) if PurePosixPath(m["mountPath"]) == path.parent), None)
            assert mount is not None, f"{inv}: {variable}={path} is in no mounted directory"
            files = volume_files(volumes[mount["name"]])
            assert files is not None and path.name in files, f"{inv} ({pod_name}): {variable}={path}: the volume has {sorted(files or [])}"
            checked += 1
    assert checked, f"{inv}: the etcd client uses no TLS material (production etcd requires client certificates)"


def test_etcd_endpoints_secret_uses_tls() -> None:
    secret = k8s_find("Secret", "tfleet-etcd")
    assert secret is not None
    endpoints = secret_data(secret)["endpoints"].split(",")
    assert len(endpoints) >= 3 and all(e.startswith("https://") for e in endpoints)


def test_workload_references_resolve() -> None:
    """Services, PDBs, volumes and the service account point at things that exist."""
    objects = k8s_objects()
    pods = {(d["kind"], d["metadata"]["name"]): d["spec"]["template"] for _, d in objects if d["kind"] in {"Deployment", "StatefulSet"}}
    for _, doc in objects:
        if doc["kind"] in {"Service", "PodDisruptionBudget"}:
            selector = doc["spec"]["selector"] if doc["kind"] == "Service" else doc["spec"]["selector"]["matchLabels"]
            matched = [key for key, pod in pods.items() if selector.items() <= pod["metadata"]["labels"].items()]
            assert matched, f"{doc['kind']} {doc['metadata']['name']} selects no pod"
        if doc["kind"] == "StatefulSet":
            assert k8s_find("Service", doc["spec"]["serviceName"]) is not None, "a StatefulSet needs its headless Service"
    for (kind, name), pod in pods.items():
        spec = pod["spec"]
        assert k8s_find("ServiceAccount", spec["serviceAccountName"]) is not None
        assert spec.get("automountServiceAccountToken") is False, f"{kind} {name}: tfleet needs no Kubernetes API token"
        assert spec["securityContext"].get("runAsNonRoot") is True, f"{kind} {name}: run as non-root"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            volume_files(volume)  # asserts every referenced Secret/ConfigMap exists
            if "persistentVolumeClaim" in volume:
                assert k8s_find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) is not None
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{kind} {name}/{container['name']} mounts unknown volume {mount['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False and context.get("capabilities", {}).get("drop") == ["ALL"]
