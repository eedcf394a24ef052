"""Everything under deploy/ parses, and the manifests agree with the code they run.

Nothing here starts a container (there may be no Docker engine or cluster): every file is
parsed, and every place that starts `tfleet agent` or `tfleet controller` (compose services,
Kubernetes containers, systemd units) is run through the real click command with the real
settings validation, with only the daemon itself replaced by a stub. So a typo'd TFLEET_*
variable, a missing required setting or a timing rule the daemon would refuse at start-up
fails here, not on a production host.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tomllib
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
from tfleet.keyspace import Keyspace
from tfleet.tfs.pb import model_server_config_pb2

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("path", deploy_files(), ids=rel)
def test_every_deploy_file_parses(path: Path) -> None:
    kind = kind_of(path)
    assert kind is not None, f"{rel(path)}: no parser for this kind of file; teach tests/unit/test_deploy_manifests.py (kind_of) how to check it"
    if kind == "yaml":
        assert load_yaml(path), f"{rel(path)} holds no YAML document"
    elif kind == "json":
        json.loads(path.read_text(encoding="utf-8"))
    elif kind == "systemd":
        unit = load_unit(path)
        assert {"Unit", "Service", "Install"} <= set(unit.sections()), f"{rel(path)} sections: {unit.sections()}"
    elif kind == "dockerfile":
        keywords = [i.keyword for i in load_dockerfile(path)]
        assert keywords[0] in {"FROM", "ARG"} and "FROM" in keywords, f"{rel(path)} must start with FROM"
        assert "ENTRYPOINT" in keywords, f"{rel(path)} has no ENTRYPOINT"
    elif kind == "textproto":
        parse_textproto(path.name, path.read_text(encoding="utf-8"))
    else:
        path.read_text(encoding="utf-8")


# -- TFLEET_* variables are real ------------------------------------------------------------


def tfleet_variables() -> dict[str, set[str]]:
    """Every TFLEET_* variable a daemon reads, introspected from the click commands."""
    names: dict[str, set[str]] = {}
    for name, command in COMMANDS.items():
        for param in command.params:
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            for envvar in envvars:
                names.setdefault(envvar, set()).add(name)
    return names


def test_the_introspected_variable_list_is_the_documented_one() -> None:
    names = tfleet_variables()
    assert {"TFLEET_HOST", "TFLEET_ETCD_ENDPOINTS", "TFLEET_TFS_GRPC", "TFLEET_TFS_REST", "TFLEET_HTTP_PORT", "TFLEET_CONTROLLER_ID"} <= set(names)
    assert all(name.startswith("TFLEET_") for name in names)


def production_section() -> str:
    """The "## Production setup" section of docs/operations.md ("" when it is missing)."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.find("\n## Production setup")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def texts_naming_variables() -> dict[str, str]:
    texts = {rel(p): p.read_text(encoding="utf-8") for p in deploy_files() if kind_of(p) != "textproto"}
    texts["docs/operations.md#production-setup"] = production_section()
    return texts


@pytest.mark.parametrize("where", sorted(texts_naming_variables()))
def test_every_tfleet_variable_named_is_one_a_daemon_reads(where: str) -> None:
    """Comments count too: operators copy the env-file examples in them."""
    known = tfleet_variables()
    unknown = sorted({name for name in TFLEET_NAME.findall(texts_naming_variables()[where]) if name not in known})
    assert not unknown, f"{where} names {unknown}, which no tfleet daemon reads (known: {sorted(known)})"


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


def _as_list(value: Any) -> list[str]:
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
    entrypoint = _as_list(service.get("entrypoint"))
    if not entrypoint and builds_our_image(service):
        entrypoint = dockerfile_entrypoint()
    return entrypoint + _as_list(service.get("command"))


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
            argv = _as_list(container.get("command")) + _as_list(container.get("args"))
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


def test_every_kind_of_deployment_starts_both_daemons() -> None:
    seen = {(inv.family, inv.command) for inv in INVOCATIONS}
    assert {(family, command) for family in ("compose", "kubernetes", "systemd") for command in COMMANDS} <= seen, sorted(seen)


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


@pytest.mark.parametrize("inv", INVOCATIONS, ids=str)
def test_every_required_setting_is_given_by_flag_or_variable(inv: Invocation) -> None:
    command = COMMANDS[inv.command]
    required = {p.name for p in command.params if getattr(p, "required", False)} | MUST_SET[inv.command]
    missing = sorted(f"--{name.replace('_', '-')} / {p.envvar}" for p in command.params for name in [p.name] if name in required and not given(inv, p))
    assert not missing, f"{inv}: `tfleet {inv.command}` is not given {missing}"


@pytest.mark.parametrize("inv", INVOCATIONS, ids=str)
def test_every_daemon_would_start_with_its_settings(inv: Invocation, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = start_with_stub(inv, monkeypatch)
    assert settings.etcd.endpoints and all(e.startswith(("http://", "https://")) for e in settings.etcd.endpoints)
    if inv.command == "agent":
        assert settings.host and settings.tfs_grpc and settings.tfs_rest and settings.http_port


def test_the_agent_in_every_deployment_gets_the_required_five() -> None:
    """The issue's list, spelled out: host, etcd, tfs-grpc, tfs-rest, http-port."""
    params = {p.name: p for p in agent_command.params}
    for inv in (i for i in INVOCATIONS if i.command == "agent"):
        for name in ("host", "etcd", "tfs_grpc", "tfs_rest", "http_port"):
            assert given(inv, params[name]), f"{inv}: the agent is not given --{name.replace('_', '-')} or {params[name].envvar}"


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


def test_compose_runs_tf_serving_for_the_agent() -> None:
    services = compose_services()
    tfs = [(n, s) for n, s in services.items() if str(s.get("image", "")).startswith(("tensorflow/serving", "docker.io/tensorflow/serving"))]
    assert len(tfs) == 1, f"compose: expected one TF Serving service, found {[n for n, _ in tfs]}"
    name, service = tfs[0]
    argv = _as_list(service.get("entrypoint")) + _as_list(service.get("command"))
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
        config = next(a.split("=", 1)[1] for a in _as_list(service.get("command")) if a.startswith("--config.file="))
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
    test = " ".join(_as_list(service["healthcheck"]["test"]))
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


# -- images, tags and flags everywhere ----------------------------------------------------------


def parsed_strings(path: Path) -> Iterator[str]:
    """What a file *uses*: parsed values (YAML/JSON) or non-comment lines, comments left out."""
    kind = kind_of(path)

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield str(key)
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)
        elif node is not None:
            yield str(node)

    if kind == "yaml":
        for doc in load_yaml(path):
            yield from walk(doc)
    elif kind == "json":
        yield from walk(json.loads(path.read_text(encoding="utf-8")))
    elif kind in {"systemd", "dockerfile", "textproto"}:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.lstrip().startswith(("#", ";")):
                yield line


def version_tuple(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tag)[:3])


def test_every_etcd_image_is_at_least_3_5_3() -> None:
    found = []
    for path in deploy_files():
        for value in parsed_strings(path):
            for word in value.split():
                match = ETCD_IMAGES.match(word.strip("\"'"))
                if match:
                    tag = match.group("tag")
                    assert tag, f"{rel(path)}: {word} has no version tag"
                    assert version_tuple(tag) >= ETCD_MIN, f"{rel(path)}: {word}: etcd 3.5.0-3.5.2 can corrupt data; use >= 3.5.3"
                    found.append(word)
    assert found, "no etcd image found under deploy/ (the compose file runs one)"


def test_no_manifest_makes_tf_serving_poll_its_config_file() -> None:
    for path in deploy_files():
        for value in parsed_strings(path):
            assert FORBIDDEN_TFS_FLAG not in value, f"{rel(path)} uses {FORBIDDEN_TFS_FLAG}: {value!r}"


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


def test_the_controller_unit_runs_the_controller() -> None:
    (inv,) = [i for i in INVOCATIONS if i.where == "deploy/systemd/tfleet-controller.service"]
    assert inv.command == "controller"


# -- Kubernetes -----------------------------------------------------------------------------


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

    argv = _as_list(tfs.get("command")) + _as_list(tfs.get("args"))
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


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed: `kubectl kustomize` not run (optional: CI's scripts/ensure-system-deps does not "
    "install it; the other tests here parse the same manifests without it)",
)
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


# -- the production walk-through (docs/operations.md) ---------------------------------------------


def etcdctl_grants(text: str) -> dict[str, list[tuple[str, bool, str]]]:
    """role -> [(permission, prefix?, key)] from the `etcdctl role grant-permission` lines."""
    grants: dict[str, list[tuple[str, bool, str]]] = {}
    for line in text.splitlines():
        if "role grant-permission" not in line or "$" in line:
            continue  # shell variables: a template, not the literal example checked here
        words = shlex.split(line.split("#", 1)[0])
        words = words[words.index("grant-permission") + 1 :]
        prefix = any(w in {"--prefix", "--prefix=true"} for w in words)
        rest = [w for w in words if not w.startswith("--")]
        role, permission, key = rest[0], rest[1], rest[2]
        grants.setdefault(role, []).append((permission, prefix, key))
    return grants


def test_the_production_walkthrough_grants_each_agent_only_its_own_keys() -> None:
    """The doc's example agent role is pinned to the keyspace module: exactly its host key,
    its status prefix (write) and its assignments prefix (read)."""
    section = production_section()
    assert section, "docs/operations.md has no '## Production setup' section"
    grants = etcdctl_grants(section)
    agent_roles = [role for role in grants if any("/hosts/" in key for _, _, key in grants[role])]
    assert agent_roles, "the walk-through shows no agent role"
    for role in agent_roles:
        host = next(key for _, _, key in grants[role] if "/hosts/" in key).rsplit("/", 1)[1]
        ks = Keyspace()
        assert sorted(grants[role]) == sorted(
            [
                ("readwrite", False, ks.host(host)),
                ("readwrite", True, ks.status_prefix(host)),
                ("read", True, ks.assignments_prefix(host)),
            ]
        ), f"role {role}: {grants[role]}"
    controller = grants.get("tfleet-controller", [])
    assert ("read", True, "/tfleet/") in controller or ("readwrite", True, "/tfleet/") in controller
    for needed in ("snapshot save", "--client-cert-auth", "auth enable", "user grant-role"):
        assert needed in section, f"the walk-through does not show {needed!r}"
