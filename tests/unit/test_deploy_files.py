"""Every file under deploy/ parses, names only TFLEET_* variables a daemon reads, runs etcd
>= 3.5.3, and never makes TF Serving poll its own config file (the agent pushes it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployfiles import (
    COMMANDS,
    ETCD_IMAGES,
    ETCD_MIN,
    FORBIDDEN_TFS_FLAG,
    TFLEET_NAME,
    deploy_files,
    kind_of,
    load_dockerfile,
    load_unit,
    load_yaml,
    parse_textproto,
    production_section,
    rel,
)


@pytest.mark.parametrize("path", deploy_files(), ids=rel)
def test_every_deploy_file_parses(path: Path) -> None:
    kind = kind_of(path)
    assert kind is not None, f"{rel(path)}: no parser for this kind of file; teach tests/deployfiles.py (kind_of) how to check it"
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
