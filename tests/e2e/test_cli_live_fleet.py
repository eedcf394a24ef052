"""The CLI on a small real fleet (simulators, agents and a controller,
tests/integration/controller_harness.py): predict, describe and explain, and rollouts that
start, promote, abort, and fail on a version with no directory, as every view says.

Most commands run in-process through click's CliRunner (fast); the ones whose process-level
behaviour matters (exit codes, one stderr line, no traceback) run as real `python -m tfleet`
subprocesses (tests/e2e/cli_support.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from tests.helpers import wait_until
from tests.integration.controller_harness import ControlledFleet, add_host, start_controller
from tests.simfixtures import FAST
from tfleet import schema
from tfleet.registry import Registry
from tfleet.schema import Assignment
from tfleet.sim.fixtures import make_model
from tfleet.sim.server import SimServer
from tfleet.store import EtcdSettings, EtcdStore
from tests.e2e.cli_support import Cli, error_lines, one_line_of


@dataclass
class LiveFleet:
    fleet: ControlledFleet
    tf: Cli
    models: Path


@pytest.fixture(scope="module")
def live(etcd_server, tmp_path_factory) -> Iterator[LiveFleet]:
    tmp = tmp_path_factory.mktemp("cli-fleet")
    prefix = f"/t/cli-fleet-{os.getpid()}/"
    # Unconfigured structlog prints to whatever sys.stdout is at each call, and CliRunner swaps
    # sys.stdout while a command runs: bind the in-process daemons' logs to a fixed stream.
    logging_config = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    store = EtcdStore(EtcdSettings((etcd_server.client_url,)))
    fleet = ControlledFleet(store, prefix)
    sims: list[SimServer] = []

    def sim_factory() -> SimServer:
        sims.append(SimServer(**FAST).start())
        return sims[-1]

    models = tmp / "models"
    make_model(models, "aff", [1, 2], scale=2.0, bias=0.5)
    make_model(models, "ro", [1, 2, 3])
    for name, zone in (("h1", "a"), ("h2", "a"), ("h3", "b")):
        add_host(fleet, name, sim_factory, etcd_server.client_url, prefix, tmp, labels={"zone": zone})
    controller = start_controller("c1", etcd_server.client_url, prefix)
    try:
        yield LiveFleet(fleet, Cli(etcd_server.client_url, prefix.rstrip("/")), models)
    finally:
        controller.stop()
        for agent in fleet.agents.values():
            agent.stop()
        for sim in sims:
            sim.stop(0)
        store.close()
        structlog.configure(**logging_config)


def test_predict_describe_explain_on_a_live_fleet(live) -> None:
    fleet, tf = live.fleet, live.tf
    path = live.models / "aff.yaml"
    path.write_text(
        f"name: aff\nspec:\n  base_path: {live.models / 'aff'}\n  model_version_policy: {{specific: {{versions: [1]}}}}\n"
        "  version_labels: {stable: 1}\n  replicas: 2\n  host_selector: {zone: a}\n"
    )
    tf.ok("apply", "-f", str(path), "--author", "alice")
    fleet.wait_ready("aff", 1, 2)
    wait_until(lambda: (s := fleet.model_status("aff")) and sum(r.ready for r in s.replicas) == 2, 15, message="controller reports 2 ready")

    done = tf.process("predict", "aff", "--input", '{"x": [1, 2]}', "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("aff version 1 on h")
    assert done.stdout.splitlines()[1] == "  y: [2.5, 4.5]"  # y = 2 x + 0.5
    answer = tf.json("predict", "aff", "--label", "stable", "--input", "[[1], [3]]", "--host", "h2")
    assert (answer["host"], answer["version"], answer["outputs"]) == ("h2", 1, {"y": [[2.5], [6.5]]})
    assert tf("predict", "aff", "--version", "9", "--input", "[1]").exit_code == 2
    assert tf("predict", "aff", "--input", "not json").exit_code == 2
    assert tf("predict", "aff", "--version", "2", "--input", "[1]").exit_code == 2, "version 2 is only on disk: unknown"
    tf.ok("register", "aff", "2")
    not_served = tf("predict", "aff", "--version", "2", "--input", "[1]")
    assert not_served.exit_code == 1 and "no host serves aff (version 2) AVAILABLE" in not_served.stderr

    text = tf.ok("describe", "model", "aff")
    assert "Health:       ok" in text and "Rollout:      stable (versions 1)" in text
    assert any(line.split()[:3] == ["h1", "1", "AVAILABLE"] for line in text.splitlines()), text
    assert "alice" in text.split("History")[1]
    data = tf.json("describe", "model", "aff")
    assert sorted(r["host"] for r in data["replicas"]) == ["h1", "h2"] and all(r["ready"] for r in data["replicas"])

    explanation = tf.ok("explain", "aff")
    assert "aff wants 2 replicas of version 1 with labels stable=1" in explanation
    assert "Its host selector zone=a matches 2 of 3 live hosts (h1, h2); not h3 (zone=b)." in explanation
    assert "The placement puts it on h1, h2." in explanation
    assert "h1 is assigned version 1 with labels stable=1; its agent reports 1 AVAILABLE." in explanation

    status = tf.ok("status")
    assert "Leader:    c1" in status and "Hosts:     3 up" in status
    hosts = {h["name"]: h for h in tf.json("get", "hosts")}
    assert hosts["h1"]["models"] == ["aff"] and hosts["h3"]["models"] == []


def assignment_versions(fleet: ControlledFleet, host: str, model: str) -> list[int]:
    kv = fleet.store.get(fleet.keyspace.assignment(host, model))
    specific = schema.parse(Assignment, kv.value, kv.key).model_version_policy.specific if kv else None
    return list(specific.versions) if specific else []


def test_rollout_start_promote_abort_change_the_intent(live) -> None:
    fleet, tf = live.fleet, live.tf
    registry = Registry(fleet.store, fleet.keyspace)
    path = live.models / "ro.yaml"
    path.write_text(
        f"name: ro\nspec:\n  base_path: {live.models / 'ro'}\n  model_version_policy: {{specific: {{versions: [1]}}}}\n"
        "  version_labels: {stable: 1, old: 1}\n  replicas: 2\n  host_selector: {zone: a}\n"
    )
    tf.ok("apply", "-f", str(path))
    for version in (1, 2, 3):
        tf.ok("register", "ro", str(version))
    fleet.wait_ready("ro", 1, 2)
    assert tf("rollout", "start", "ro", "--version", "7").exit_code == 2, "not a registered version"

    out = tf.ok("rollout", "start", "ro", "--version", "2", "--canary", "1", "--author", "alice")
    assert out.startswith("rollout of ro started: version 1 -> 2 (canary on 1 replica")
    assert "labels dropped (their versions are no longer served): old=1" in out
    intent, _ = registry.get_intent("ro")
    assert intent.model_version_policy.specific.versions == [2] and intent.version_labels == {"stable": 2}
    assert (intent.rollout.strategy, intent.rollout.canary_replicas, intent.rollout.promote) == ("canary", 1, False)
    assert registry.history("ro")[-1].author == "alice"
    wait_until(lambda: (s := fleet.model_status("ro")) and s.rollout.phase == "canary" and s.ready_replicas.get("2") == 1, 20, message="canary on one replica")
    status = tf.json("rollout", "status", "ro")
    assert (status["phase"], status["from"], status["to"], len(status["canary_hosts"])) == ("canary", [1], [2], 1)
    refused = tf("rollout", "start", "ro", "--version", "3")
    assert refused.exit_code == 1 and "in the middle of a rollout" in refused.stderr

    assert tf.ok("rollout", "promote", "ro").startswith("ro: canary promoted")
    assert registry.get_intent("ro")[0].rollout.promote is True
    wait_until(
        lambda: (
            (s := fleet.model_status("ro"))
            and s.rollout.phase == "stable"
            and s.ready_replicas.get("2") == 2
            and all(assignment_versions(fleet, h, "ro") == [2] for h in fleet.replica_hosts("ro"))
        ),
        30,
        message="version 2 everywhere",
    )

    tf.ok("rollout", "start", "ro", "--version", "3", "--canary", "1")
    assert registry.get_intent("ro")[0].rollout.promote is False, "a new rollout starts unpromoted"
    wait_until(lambda: (s := fleet.model_status("ro")) and s.rollout.phase == "canary", 20, message="second canary")
    assert tf.ok("rollout", "abort", "ro").startswith("ro: rollout aborted")
    assert registry.get_intent("ro")[0].rollout.abort is True
    wait_until(lambda: all(3 not in assignment_versions(fleet, h, "ro") for h in fleet.replica_hosts("ro")), 20, message="version 3 taken away")
    assert tf.ok("rollout", "abort", "ro") == "ro: rollout.abort is already set: nothing written\n"
    assert [e.action for e in registry.history("ro")] == ["create", "update", "update", "update", "update"]


def test_rollout_to_a_version_with_no_directory_is_refused_then_aborts_and_every_view_says_failing(live) -> None:
    """The issue: `rollout start mnist --version 3` for a version no host has. The CLI refuses
    it; forced, the agents report "version 3 not found", the controller aborts back to
    version 2 by itself, and get models, describe, status and modelstatus agree it is failing."""
    fleet, tf = live.fleet, live.tf
    make_model(live.models, "mnist", [1, 2])
    path = live.models / "mnist.yaml"
    path.write_text(
        f"name: mnist\nspec:\n  base_path: {live.models / 'mnist'}\n  model_version_policy: {{specific: {{versions: [2]}}}}\n"
        "  version_labels: {stable: 2}\n  replicas: 2\n  host_selector: {zone: a}\n"
    )
    tf.ok("apply", "-f", str(path))
    fleet.wait_ready("mnist", 2, 2)
    wait_until(lambda: (s := fleet.model_status("mnist")) and s.health == "ok", 15, message="mnist ok")
    assert [r["health"] for r in tf.json("get", "models", "mnist")] == ["ok"]

    refused = tf.process("rollout", "start", "mnist", "--version", "3")
    assert refused.returncode == 2 and "neither registered (none is registered) nor found under its base_path" in error_lines(refused)[0]
    forced = tf.process("rollout", "start", "mnist", "--version", "3", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "starting anyway (--force)" in forced.stderr

    def aborted() -> bool:
        s = fleet.model_status("mnist")
        return (
            s is not None
            and s.rollout.phase == "backoff"
            and bool(s.failures)
            and all(assignment_versions(fleet, h, "mnist") == [2] for h in fleet.replica_hosts("mnist"))
        )

    wait_until(aborted, 30, message=f"automatic abort back to version 2 (report {fleet.model_status('mnist')})")
    # the labels came back with the version, and the agents no longer report an error
    for host in fleet.replica_hosts("mnist"):
        fleet.wait_available(host, "mnist", {2})
        assert fleet.status(host, "mnist").version_labels == {"stable": 2}
    report = wait_until(
        lambda: (s := fleet.model_status("mnist")) and sum(r.ready for r in s.replicas) == 2 and s,
        15,
        message="the controller reports both replicas ready again",
    )
    assert (report.health, report.failures[0].version) == ("failing", 3) and "version 3 not found" in report.failures[0].error
    [row] = tf.json("get", "models", "mnist")
    assert (row["health"], row["error"]) == (report.health, report.health_reason)
    table = tf.ok("get", "models", "mnist").splitlines()
    assert table[1].split()[:3] == ["mnist", "2/2", "2/2"] and "failing" in table[1].split()
    described = tf.ok("describe", "model", "mnist")
    assert f"Health:       failing: {one_line_of(report.health_reason)}" in described
    assert "Rollout:      backoff, 2 -> 3" in described
    status = tf.ok("status")
    assert "  mnist failing: version 3 failed to load on h" in status
    assert [p["health"] for p in tf.json("status")["problems"] if p["model"] == "mnist"] == ["failing"]
