"""Which etcd the operator commands talk to (issue item 4): --etcd > TFLEET_ETCD_ENDPOINTS >
the context file of a running `tfleet dev` > the default, and every "etcd unreachable"
error names that etcd and where it came from.

Nothing listens on the ports used here: the commands dial them and fail fast with "connection
refused". How the context file is written and read is tests/unit/test_cli_context.py.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from tfleet.cli.context import FleetContext, read_context, write_context
from tfleet.cli.main import cli
from tfleet.etcd_local import free_port


def get_models(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["get", "models", "--etcd-timeout", "0.5", *args], prog_name="tfleet", env=env)


def test_default_when_nothing_says_otherwise(context_file) -> None:
    result = get_models()
    assert result.exit_code == 3
    [line] = result.stderr.splitlines()
    assert line.startswith("tfleet get models: etcd unreachable:")
    assert "talked to etcd http://127.0.0.1:2379 (the default: no --etcd, no TFLEET_ETCD_ENDPOINTS, no running `tfleet dev`" in line


def test_context_file_beats_default_and_names_itself(context_file) -> None:
    port = free_port()
    write_context(FleetContext(f"http://127.0.0.1:{port}", "/tfleet", os.getpid(), "/tmp/run-x"), context_file)
    line = get_models().stderr
    assert f"talked to etcd http://127.0.0.1:{port} (from context file {context_file}, written by `tfleet dev` (run dir /tmp/run-x))" in line


def test_environment_beats_context_file(context_file) -> None:
    env_port, context_port = free_port(), free_port()
    write_context(FleetContext(f"http://127.0.0.1:{context_port}", "/tfleet", os.getpid(), "/r"), context_file)
    line = get_models(env={"TFLEET_ETCD_ENDPOINTS": f"http://127.0.0.1:{env_port}"}).stderr
    assert f"talked to etcd http://127.0.0.1:{env_port} (from TFLEET_ETCD_ENDPOINTS)" in line


def test_flag_beats_environment(context_file) -> None:
    flag_port, env_port = free_port(), free_port()
    line = get_models("--etcd", f"http://127.0.0.1:{flag_port}", env={"TFLEET_ETCD_ENDPOINTS": f"http://127.0.0.1:{env_port}"}).stderr
    assert f"talked to etcd http://127.0.0.1:{flag_port} (from --etcd)" in line


def test_a_stale_context_file_says_its_fleet_is_gone(context_file) -> None:
    write_context(FleetContext(f"http://127.0.0.1:{free_port()}", "/tfleet", 2**22 + 12345, "/r"), context_file)
    assert "is no longer running" in get_models().stderr


@pytest.mark.parametrize("text", ["", "{", "[]", '{"prefix": "/x"}', '{"endpoints": ""}', '{"endpoints": "x", "pid": "abc"}'])
def test_unusable_context_file_is_ignored(context_file, text: str) -> None:
    context_file.parent.mkdir(parents=True)
    context_file.write_text(text)
    assert read_context(context_file) is None
    assert "(the default:" in get_models().stderr


@pytest.mark.parametrize("command", [["alerts", "render"], ["routes", "render", "--format", "nginx"], ["status"], ["rollout", "status", "m"]])
def test_every_command_names_the_etcd_it_could_not_reach(context_file, command: list[str]) -> None:
    port = free_port()
    write_context(FleetContext(f"http://127.0.0.1:{port}", "/tfleet", os.getpid(), "/tmp/run-y"), context_file)
    result = CliRunner().invoke(cli, [*command, "--etcd-timeout", "0.5"], prog_name="tfleet")
    assert result.exit_code != 0
    assert f"talked to etcd http://127.0.0.1:{port} (from context file {context_file}" in result.stderr, result.stderr
