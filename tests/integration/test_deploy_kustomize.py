"""`kubectl kustomize` builds deploy/kubernetes/ into the objects the unit tests check
(tests/unit/test_deploy_kubernetes.py), in the kustomization's namespace, with its image
override applied. Here, not in tests/unit/, because it runs a process."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deployfiles import KUBERNETES, k8s_objects, load_yaml


# Debian's kubernetes-client (1.20, kustomize v2) cannot build the kustomization's `labels:`
# field ("json: unknown field"), so it is not installed for this test: it runs where a recent
# kubectl is on PATH, and says why it skipped elsewhere, like the other external-tool tests.
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH (Debian's kubernetes-client is too old for this kustomization)")
def test_kustomize_builds_the_manifests() -> None:
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
