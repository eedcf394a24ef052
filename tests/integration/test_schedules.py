"""Scheduled actions run by whichever controller leads, exactly when they fall due."""

from __future__ import annotations

import datetime as dt
import json

from tests.helpers import wait_until
from tests.integration.controller_harness import ControlledFleet, start_controller
from tfleet import schema
from tfleet.registry import Registry
from tfleet.schema import ScheduledAction


def intent(**extra) -> dict:
    return {"base_path": "/models/m", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 0, **extra}


def schedule(fleet: ControlledFleet, model: str, schedule_id: str, action: str, at: dt.datetime, **extra) -> None:
    doc = {"at": at.isoformat(), "action": action, "created_by": "test", **extra}
    fleet.store.put(fleet.keyspace.schedule(model, schedule_id), json.dumps(doc).encode())


def action(fleet: ControlledFleet, model: str, schedule_id: str) -> ScheduledAction:
    kv = fleet.store.get(fleet.keyspace.schedule(model, schedule_id))
    return schema.parse(ScheduledAction, kv.value, kv.key)


def test_promote_runs_when_due_and_is_recorded(store, prefix, etcd_server) -> None:
    fleet = ControlledFleet(store, prefix)
    controller = start_controller("c1", etcd_server.client_url, prefix)
    try:
        fleet.declare("m", intent(rollout={"strategy": "canary"}))
        at = schema.utc_now() + dt.timedelta(seconds=2)
        schedule(fleet, "m", "promote-1", "promote", at)
        done = wait_until(lambda: (a := action(fleet, "m", "promote-1")).done_at and a, 15, message="promote ran")
        assert done.done_at >= at and done.outcome == "set rollout.promote"
        kv = fleet.store.get(fleet.keyspace.model("m"))
        assert json.loads(kv.value)["rollout"]["promote"] is True
    finally:
        controller.stop()


def test_a_scheduled_action_wakes_the_loop_when_due_long_before_the_resync(store, prefix, etcd_server) -> None:
    """The pass's Outcome.requeue_after (tfleet/loop.py) is what wakes the leader: nothing else
    changes after the schedule is written, and the resync is a minute away."""
    fleet = ControlledFleet(store, prefix)
    controller = start_controller("c1", etcd_server.client_url, prefix, resync_interval=60.0)
    try:
        fleet.declare("m", intent(rollout={"strategy": "canary"}))
        wait_until(lambda: fleet.model_status("m") is not None, 15, message="intent seen")
        at = schema.utc_now() + dt.timedelta(seconds=3)
        schedule(fleet, "m", "promote-1", "promote", at)
        done = wait_until(lambda: (a := action(fleet, "m", "promote-1")).done_at and a, 20, message="promote ran")
        assert at <= done.done_at <= at + dt.timedelta(seconds=15)
    finally:
        controller.stop()


def test_rollback_restores_the_previous_intent(store, prefix, etcd_server) -> None:
    fleet = ControlledFleet(store, prefix)
    controller = start_controller("c1", etcd_server.client_url, prefix)
    try:
        fleet.declare("m", intent(description="first"))
        wait_until(lambda: fleet.model_status("m") is not None, 10, message="first intent seen")
        fleet.declare("m", intent(description="second"))
        wait_until(
            lambda: (s := fleet.model_status("m")) and s.intent_revision == fleet.store.get(fleet.keyspace.model("m")).mod_revision,
            10,
            message="second intent seen",
        )
        wait_until(lambda: len(Registry(fleet.store, fleet.keyspace).history("m")) == 2, 15, message="both intents recorded in the history")
        schedule(fleet, "m", "undo", "rollback", schema.utc_now())
        done = wait_until(lambda: (a := action(fleet, "m", "undo")).done_at and a, 15, message="rollback ran")
        assert done.outcome.startswith("rolled back to history entry") and done.to_sequence is not None
        assert json.loads(fleet.store.get(fleet.keyspace.model("m")).value)["description"] == "first"
    finally:
        controller.stop()
