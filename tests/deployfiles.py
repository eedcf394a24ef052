"""What deploy/ holds, parsed: every file by kind, and every place that starts a tfleet daemon.

Shared by the tests that pin the manifests to the code they run (tests/unit/test_deploy_*.py,
tests/integration/test_deploy_kustomize.py). Nothing here starts a container: compose
services, Kubernetes containers and systemd units are read as files, and each `tfleet agent`
or `tfleet controller` they start becomes an Invocation (its argv and environment, as the
container runtime or systemd would build them), which start_with_stub runs through the real
click command with only the daemon replaced.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import shlex
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from tfleet.cli.agent import agent as agent_command
from tfleet.cli.controller import controller as controller_command
from tfleet.tfs.pb import model_server_config_pb2

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"

COMMANDS: dict[str, click.Command] = {"agent": agent_command, "controller": controller_command}
# Settings a deployment must give although click has a default for them: the default etcd
# endpoint (127.0.0.1:2379) is right for `tfleet dev` only.
MUST_SET = {"agent": {"etcd"}, "controller": {"etcd"}}

ETCD_IMAGES = re.compile(r"^(?:gcr\.io/etcd-development/etcd|quay\.io/coreos/etcd)(?::v?(?P<tag>[0-9][^@]*))?(?:@.*)?$")
ETCD_MIN = (3, 5, 3)  # 3.5.0-3.5.2 have a data-corruption bug (docs/operations.md)
FORBIDDEN_TFS_FLAG = "--model_config_file_poll_wait_seconds"
TFS_METRICS_PATH = "/monitoring/prometheus/metrics"
TFLEET_NAME = re.compile(r"\bTFLEET_[A-Z0-9_]*[A-Z0-9]\b")
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- parsing every file ---------------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def kind_of(path: Path) -> str | None:
    name = path.name
    if name == "Dockerfile" or (name.startswith("Dockerfile.") and not name.endswith(".dockerignore")):
        return "dockerfile"
    if name.endswith(".dockerignore") or name in {".gitkeep", ".gitignore"}:
        return "text"
    return {
        ".yml": "yaml",
        ".yaml": "yaml",
        ".json": "json",
        ".service": "systemd",
        ".timer": "systemd",
        ".socket": "systemd",
        ".config": "textproto",
        ".md": "text",
        ".txt": "text",
    }.get(path.suffix)


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def load_unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit as configparser sees it: repeated keys allowed (the last one wins)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"), empty_lines_in_values=False, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


def unit_values(path: Path, section: str, key: str) -> list[str]:
    """Every value of a (repeatable) key, which configparser would collapse to the last one."""
    values, current = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
        elif current == section and not stripped.startswith(("#", ";")) and "=" in stripped:
            name, _, value = stripped.partition("=")
            if name.strip() == key:
                values.append(value.strip())
    return values


@dataclass
class Instruction:
    keyword: str
    value: str


def load_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, continuation lines joined."""
    instructions, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, value = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip()))
    assert not pending, f"{rel(path)} ends inside a continued instruction"
    return instructions


def _monitoring_config_class() -> type:
    """TF Serving's MonitoringConfig (monitoring_config.proto), built here: the project's
    generated subset does not include it."""
    proto = descriptor_pb2.FileDescriptorProto(name="tfleet_tests/monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()


def parse_textproto(path_name: str, text: str) -> Any:
    """A TF Serving text-format config: monitoring config or model server config, by name."""
    message = MonitoringConfig() if "monitoring" in path_name else model_server_config_pb2.ModelServerConfig()
    return text_format.Parse(text, message)


def production_section() -> str:
    """The "## Production setup" section of docs/operations.md ("" when it is missing)."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.find("\n## Production setup")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


# -- every place that starts a daemon ----------------------------------------------------------


@dataclass
class Invocation:
    family: str  # "compose", "kubernetes" or "systemd"
    where: str
    command: str  # "agent" or "controller"
    args: list[str]
    env: dict[str, str]
    # for the Kubernetes checks: the container and the objects around it
    container: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.where


def dockerfile_entrypoint() -> list[str]:
    for instruction in reversed(load_dockerfile(DOCKERFILE)):
        if instruction.keyword == "ENTRYPOINT":
            return json.loads(instruction.value)
    raise AssertionError("deploy/docker/Dockerfile has no ENTRYPOINT")


def split_tfleet(argv: list[str]) -> tuple[str, list[str]] | None:
    """("agent", args) when argv runs `tfleet agent ...` (or controller), else None."""
    if len(argv) >= 2 and PurePosixPath(argv[0]).name == "tfleet" and argv[1] in COMMANDS:
        return argv[1], argv[2:]
    return None


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE)[0]["services"]


def builds_our_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    dockerfile = (COMPOSE.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()
    return dockerfile == DOCKERFILE.resolve()


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def compose_argv(service: dict[str, Any]) -> list[str]:
    entrypoint = as_list(service.get("entrypoint"))
    if not entrypoint and builds_our_image(service):
        entrypoint = dockerfile_entrypoint()
    return entrypoint + as_list(service.get("command"))


def compose_invocations() -> Iterator[Invocation]:
    for name, service in compose_services().items():
        found = split_tfleet(compose_argv(service))
        if found:
            yield Invocation("compose", f"compose service {name}", found[0], found[1], compose_env(service), extra={"service": service, "name": name})


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in load_yaml(path)]


def k8s_find(kind: str, name: str) -> dict[str, Any] | None:
    return next((doc for _, doc in k8s_objects() if doc["kind"] == kind and doc["metadata"]["name"] == name), None)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def parse_quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match and match.group(2) in {"", *units}, f"cannot read quantity {text!r}"
    return int(float(match.group(1)) * units.get(match.group(2), 1))


def example_pod_name(workload: dict[str, Any]) -> str:
    name = workload["metadata"]["name"]
    return f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-6d4cf56db6-x7k2p"


def k8s_env(container: dict[str, Any], pod_spec: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it, with example pod facts."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            # $(VAR) refers to a variable defined earlier in the list; anything else stays as is
            env[name] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = {"metadata.name": pod_name, "metadata.namespace": "tfleet", "status.podIP": "10.1.2.3", "spec.nodeName": "node-a"}[
                source["fieldRef"]["fieldPath"]
            ]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = k8s_find("Secret", ref["name"])
            assert secret is not None, f"env {name} refers to Secret {ref['name']}, which no manifest defines"
            data = secret_data(secret)
            assert ref["key"] in data, f"env {name} refers to key {ref['key']!r} of Secret {ref['name']}, which it lacks"
            env[name] = data[ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            config_map = k8s_find("ConfigMap", ref["name"])
            assert config_map is not None and ref["key"] in config_map.get("data", {}), f"env {name}: no {ref}"
            env[name] = config_map["data"][ref["key"]]
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            target = next(c for c in pod_spec["containers"] if c["name"] == ref.get("containerName", container["name"]))
            section, _, resource = ref["resource"].partition(".")
            value = parse_quantity(target["resources"][section][resource])
            env[name] = str(value // parse_quantity(ref.get("divisor", "1")))
        else:
            raise AssertionError(f"env {name}: unknown valueFrom {source}")
    return env


def workloads() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_objects() if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}]


def k8s_invocations() -> Iterator[Invocation]:
    for path, workload in workloads():
        pod = workload["spec"]["template"]
        for container in pod["spec"]["containers"]:
            argv = as_list(container.get("command")) + as_list(container.get("args"))
            if not container.get("command") and container["image"].split(":")[0].endswith("tfleet"):
                argv = dockerfile_entrypoint() + argv
            found = split_tfleet(argv)
            if found:
                yield Invocation(
                    "kubernetes",
                    f"{rel(path)}: {workload['kind']} {workload['metadata']['name']}, container {container['name']}",
                    found[0],
                    found[1],
                    k8s_env(container, pod["spec"], example_pod_name(workload)),
                    container=container,
                    pod=pod,
                    extra={"workload": workload},
                )


def systemd_invocations() -> Iterator[Invocation]:
    """A unit's ExecStart, with the env file as its header comment shows it (the example
    operators copy) plus its Environment= lines."""
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        argv = [arg for arg in shlex.split(unit_values(path, "Service", "ExecStart")[-1]) if not arg.startswith("$")]
        found = split_tfleet(argv)
        if not found:
            continue
        env = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"#\s+(TFLEET_[A-Z0-9_]+)=(.*)$", line)
            if match:
                env[match.group(1)] = match.group(2).strip()
        for value in unit_values(path, "Service", "Environment"):
            for assignment in shlex.split(value):
                key, _, val = assignment.partition("=")
                env[key] = val
        yield Invocation("systemd", rel(path), found[0], found[1], env, extra={"unit": path})


INVOCATIONS = [*compose_invocations(), *k8s_invocations(), *systemd_invocations()]


def given(inv: Invocation, param: click.Parameter) -> bool:
    opts = [o for o in param.opts if o.startswith("--")]
    in_args = any(arg == opt or arg.startswith(opt + "=") for arg in inv.args for opt in opts)
    return in_args or (isinstance(param.envvar, str) and param.envvar in inv.env)


class _Started(Exception):
    """Raised by the stub daemon: the command got as far as starting it."""


def start_with_stub(inv: Invocation, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the real click command (flags, variables, settings validation); the daemon class
    is a stub that records its settings. Returns the settings."""
    command = COMMANDS[inv.command]
    args = list(inv.args)
    captured: dict[str, Any] = {}

    class Stub:
        def __init__(self, settings: Any, **_: Any) -> None:
            captured["settings"] = settings

        def run(self) -> None:
            raise _Started

        def stop(self) -> None:
            pass

    if inv.command == "agent":
        monkeypatch.setattr("tfleet.agent.app.Agent", Stub)
    else:
        monkeypatch.setattr("tfleet.controller.app.Controller", Stub)
    monkeypatch.setattr(signal, "signal", lambda *a, **k: None)
    monkeypatch.setattr("tfleet.logs.configure", lambda *a, **k: None)
    clean = {key: None for key in os.environ if key.startswith("TFLEET_")}
    result = CliRunner().invoke(command, args, env={**clean, **inv.env}, prog_name=f"tfleet {inv.command}")
    assert isinstance(result.exception, _Started), f"{inv}: `tfleet {inv.command}` would not start (exit {result.exit_code}):\n{result.output}" + (
        f"\n{result.exception!r}" if result.exception and not isinstance(result.exception, SystemExit) else ""
    )
    return captured["settings"]


# -- TF Serving under the agent ------------------------------------------------------------------


def tfs_flags(argv: list[str]) -> dict[str, str]:
    flags = {}
    for arg in argv:
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            flags[key] = value
    return flags


def check_tf_serving(where: str, image: str, argv: list[str], read: Any) -> None:
    """read(container path) -> the file's text, or None when nothing is mounted there."""
    assert image.split(":")[0] in {"tensorflow/serving", "docker.io/tensorflow/serving"}, f"{where}: {image} is not the official image"
    assert PurePosixPath(argv[0]).name == "tensorflow_model_server", (
        f"{where}: run tensorflow_model_server directly; the image's entrypoint script adds a single --model_name/--model_base_path model. argv: {argv}"
    )
    flags = tfs_flags(argv)
    assert FORBIDDEN_TFS_FLAG not in flags, f"{where}: the file poller would overwrite what the agent pushed"
    assert flags.get("--port") == "8500" and flags.get("--rest_api_port") == "8501", f"{where}: {flags}"
    poll = float(flags.get("--file_system_poll_wait_seconds", "1"))
    assert poll > 0, f"{where}: --file_system_poll_wait_seconds=0 scans once at start-up, later models never load"
    monitoring = read(flags.get("--monitoring_config_file", ""))
    assert monitoring is not None, f"{where}: --monitoring_config_file must name a file mounted into the container"
    config = parse_textproto("monitoring", monitoring)
    assert config.prometheus_config.enable and config.prometheus_config.path == TFS_METRICS_PATH, f"{where}: {config}"
    if "--model_config_file" in flags:
        models = read(flags["--model_config_file"])
        assert models is not None, f"{where}: --model_config_file {flags['--model_config_file']} is not mounted"
        parse_textproto("models", models)


def compose_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of every bind mount (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append(((COMPOSE.parent / volume["source"]).resolve(), volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def compose_read(service: dict[str, Any], container_path: str) -> str | None:
    for host, target in compose_mounts(service):
        inner = PurePosixPath(container_path)
        if inner == PurePosixPath(target) or PurePosixPath(target) in inner.parents:
            path = host / inner.relative_to(target)
            return path.read_text(encoding="utf-8") if path.is_file() else None
    return None
