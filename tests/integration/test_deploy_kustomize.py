"""`kubectl kustomize` builds deploy/kubernetes/ into the objects the unit tests check
(tests/unit/test_deploy_kubernetes.py), in the kustomization's namespace, with its image
override applied. Here, not in tests/unit/, because it runs a process."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.deployfiles import KUBERNETES, k8s_objects, load_yaml


def test_kustomize_builds_the_manifests() -> None:
    assert shutil.which("kubectl"), "kubectl is needed (scripts/ensure-system-deps installs Debian's kubernetes-client)"
    out = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")[0]
    assert len(docs) == len(k8s_objects())
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == kustomization["namespace"], doc["metadata"]
    images = [c["image"] for d in docs if d["kind"] in {"Deployment", "StatefulSet"} for c in d["spec"]["template"]["spec"]["containers"]]
    override = kustomization["images"][0]
    assert f"{override['newName']}:{override['newTag']}" in images, images
