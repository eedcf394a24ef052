"""Pure parts of the hardening: one model that crashes a planner is that model's error (the
others are planned as before); the problems document; bad values never vanish from the
snapshot; the pass guard's backoff and log-once behaviour."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tfleet.agent import planner as agent_planner
from tfleet.agent.planner import ModelInput, PlanInput
from tfleet.controller import planner as controller_planner
from tfleet.controller.problems import MAX_LISTED, compute, same
from tfleet.controller.snapshot import FleetSnapshot, Parsed, read
from tfleet.keyspace import Keyspace
from tfleet.modelfs import DiskFacts
from tfleet.passguard import PassGuard
from tfleet.schema import Assignment, HostRecord, ModelIntent
from tfleet.store import KeyValue, Snapshot
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
KS = Keyspace("/tfleet")


# -- per-model isolation ------------------------------------------------------------------------


def test_a_model_that_crashes_the_controller_planner_is_reported_and_the_others_are_planned(monkeypatch) -> None:
    snap = FleetSnapshot(revision=5)
    snap.hosts = {"h1": HostRecord(host="h1", grpc_address="x:1", rest_address="x:2", memory_mb=4096, agent_version="t", started_at=NOW)}
    for name in ("bad", "good"):
        snap.intents[name] = Parsed(ModelIntent.model_validate({"base_path": f"/m/{name}"}), None, 9)
    real = controller_planner.plan_rollout

    def rollout(intent, *args, **kwargs):
        if intent.base_path == "/m/bad":
            raise ZeroDivisionError("a bug")
        return real(intent, *args, **kwargs)

    monkeypatch.setattr(controller_planner, "plan_rollout", rollout)
    result = controller_planner.plan(snap, {}, NOW)
    assert ("h1", "good") in result.puts and ("h1", "bad") not in result.puts and not result.deletes
    assert "ZeroDivisionError: a bug" in result.reports["bad"].error
    assert result.reports["good"].error is None


def test_a_model_that_crashes_the_agent_planner_keeps_its_last_config_and_reports_why(monkeypatch) -> None:
    def model(name: str) -> ModelInput:
        return ModelInput(name, 7, Assignment.model_validate({"base_path": f"/m/{name}"}), disk=DiskFacts(versions=(1,)))

    previous = ModelConfigSpec("bad", "/m/bad-old", "tensorflow", VersionPolicy(), ())
    real = agent_planner._labels_to_send

    def labels(spec, *args):
        if spec.name == "bad":
            raise KeyError("a bug")
        return real(spec, *args)

    monkeypatch.setattr(agent_planner, "_labels_to_send", labels)
    result = agent_planner.plan(PlanInput({"bad": model("bad"), "good": model("good")}, {"bad": previous}, {}))
    config = result.config_by_name()
    assert config["bad"] == previous  # nothing unloaded because of the crash
    assert config["good"].base_path == "/m/good"
    assert "KeyError" in result.reports["bad"].error and "still serving the last valid assignment" in result.reports["bad"].error
    assert result.reports["good"].error is None


# -- the problems document -------------------------------------------------------------------------


def test_problems_are_bounded_sorted_counted_by_section_and_keep_their_since() -> None:
    bad = {f"/tfleet/hostctl/h{i:04d}": "bad" for i in range(MAX_LISTED + 50)} | {"/tfleet/leader": "garbage"}
    first = compute(bad, KS, None, NOW)
    assert first.total == MAX_LISTED + 51 and len(first.problems) == MAX_LISTED
    assert first.by_section == {"hostctl": MAX_LISTED + 50, "leader": 1}
    assert [p.key for p in first.problems] == sorted(bad)[:MAX_LISTED]
    later = NOW + dt.timedelta(minutes=5)
    again = compute(bad, KS, first, later)
    assert same(first, again) and again.problems[0].since == NOW
    changed = compute({**bad, "/tfleet/hostctl/h0000": "other"}, KS, first, later)
    assert not same(first, changed) and changed.problems[0].since == later


def test_the_snapshot_keeps_every_bad_value_with_its_error() -> None:
    values = {
        "/tfleet/hostctl/h1": b'{"cordoned": "yes"}',
        "/tfleet/schedules/m/s1": b"[]",
        "/tfleet/schedules/m/a/b": b"{}",
        "/tfleet/versions/m/3": b"{}",
        "/tfleet/versions/m/\u00b2": b"{}",
        "/tfleet/status/h1/m": b"{}",
        "/tfleet/hosts/h1": b"{",
        "/tfleet/models/m": b'{"base_path": 1}',
        "/tfleet/models/bad name": b"{}",
        "/tfleet/assignments/h1/m": b'{"base_path": "/m", "base_path": "/n"}',
        "/tfleet/leader": b"xyz",
    }
    items = tuple(KeyValue(key, value, 2, 2, 1, 0) for key, value in sorted(values.items()))
    fleet = read(Snapshot(3, items), KS)
    assert set(fleet.bad_values) == set(values)
    assert "cordoned" in fleet.bad_values["/tfleet/hostctl/h1"]
    assert fleet.intents["m"].error is not None  # still filed for the planner's modelstatus


# -- the pass guard ----------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.events.append((level, event))


class Count:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def set(self, value) -> None:
        self.value = value


def test_pass_guard_logs_a_repeated_error_once_backs_off_with_a_cap_and_recovers() -> None:
    log, errors, failing = Log(), Count(), Count()
    guard = PassGuard("loop", log, errors, failing, rng=random.Random(1))
    delays = [guard.failed(RuntimeError("same")) for _ in range(12)]
    assert [level for level, _ in log.events].count("error") == 1
    assert errors.value == 12 and failing.value == 1
    assert delays[1] > delays[0] / 2 and max(delays) <= 30.0 and min(delays) >= 0.5
    guard.failed(ValueError("another"))
    assert [level for level, _ in log.events].count("error") == 2
    guard.succeeded()
    assert failing.value == 0 and guard.failures == 0 and ("info", "pass_recovered") in log.events


@pytest.mark.parametrize("key, section", [("/tfleet/models/m", "models"), ("/tfleet/leader", "leader"), ("/other/x", "")])
def test_section_of(key: str, section: str) -> None:
    assert KS.section_of(key) == section
    assert KS.problems() == "/tfleet/problems"


def test_problems_json_shape_is_the_contract() -> None:
    import json

    from tfleet.schema import encode

    doc = json.loads(encode(compute({"/tfleet/hostctl/h1": "bad"}, KS, None, NOW)))
    assert set(doc) == {"total", "by_section", "problems", "updated_at"}
    assert doc["problems"] == [{"key": "/tfleet/hostctl/h1", "section": "hostctl", "error": "bad", "since": "2026-12-06T12:00:00Z"}]
    assert doc["total"] == 1 and doc["by_section"] == {"hostctl": 1}


def test_the_health_a_status_report_may_hold_is_what_health_decides() -> None:
    """ModelStatusReport.health is strict (a Literal): it must list exactly tfleet/health.py's states."""
    import typing

    from tfleet import health, schema

    assert set(typing.get_args(schema.HealthState)) == set(health.STATES)
