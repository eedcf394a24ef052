"""Every place that starts `tfleet agent` or `tfleet controller` (compose services, Kubernetes
containers, systemd units) gives every required setting, by flag or TFLEET_* variable, and
would start: the real click command and settings validation run, with only the daemon
replaced by a stub. So a typo'd variable, a missing required setting or a timing rule the
daemon would refuse at start-up fails here, not on a production host."""

from __future__ import annotations

import pytest

from tests.deployfiles import COMMANDS, INVOCATIONS, MUST_SET, Invocation, given, start_with_stub
from tfleet.cli.agent import agent as agent_command


def test_every_kind_of_deployment_starts_both_daemons() -> None:
    seen = {(inv.family, inv.command) for inv in INVOCATIONS}
    assert {(family, command) for family in ("compose", "kubernetes", "systemd") for command in COMMANDS} <= seen, sorted(seen)


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


def test_the_controller_unit_runs_the_controller() -> None:
    (inv,) = [i for i in INVOCATIONS if i.where == "deploy/systemd/tfleet-controller.service"]
    assert inv.command == "controller"
