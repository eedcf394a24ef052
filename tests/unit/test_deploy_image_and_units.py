"""The container image installs the project and runs tfleet unprivileged; the systemd units
are hardened and stop the daemons with SIGTERM (the agent revokes its lease, the controller
resigns)."""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

import pytest

from tests.deployfiles import DEPLOY, DOCKERFILE, ROOT, dockerfile_entrypoint, load_dockerfile, load_unit, rel

# -- Dockerfile -----------------------------------------------------------------------------


def test_the_image_installs_the_project_and_runs_tfleet_unprivileged() -> None:
    instructions = load_dockerfile(DOCKERFILE)
    stages = [i.value.split()[0] for i in instructions if i.keyword == "FROM"]
    assert stages and all(s == "python:3.11-slim" for s in stages), stages
    assert dockerfile_entrypoint() == ["tfleet"]
    users = [i.value for i in instructions if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "the image must not run as root"
    runs = " ".join(i.value for i in instructions if i.keyword == "RUN")
    assert "pip install" in runs and ("pip wheel" in runs or "pip install ." in runs)
    # everything the distribution is built from is copied into the build stage
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {source.split("/")[0] for source in project["tool"]["setuptools"]["package-dir"].values()}
    copied = set()
    for i in instructions:
        if i.keyword == "COPY" and not i.value.startswith("--from"):
            copied |= {PurePosixPath(src).parts[0] for src in i.value.split()[:-1] if not src.startswith("--")}
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    for src in copied:
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which does not exist"


# -- systemd --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((DEPLOY / "systemd").glob("*.service")), ids=rel)
def test_systemd_units_are_hardened_and_stop_cleanly(path: Path) -> None:
    unit = load_unit(path)
    service = unit["Service"]
    assert service.get("EnvironmentFile", "").startswith("/etc/tfleet/"), f"{rel(path)}: EnvironmentFile"
    assert service.get("KillSignal") == "SIGTERM", "SIGTERM revokes the agent's lease / resigns leadership"
    assert service.get("Restart") in {"always", "on-failure"}
    assert service.get("NoNewPrivileges") == "yes" and service.get("ProtectSystem") == "strict"
    assert service.get("DynamicUser") == "yes" or service.get("User") not in {None, "root", "0"}
    assert unit["Install"].get("WantedBy") == "multi-user.target"
