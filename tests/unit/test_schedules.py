"""Which scheduled actions are due (pure)."""

import datetime as dt

from tfleet.controller.schedules import due_actions, next_due
from tfleet.controller.snapshot import FleetSnapshot, Parsed
from tfleet.schema import ScheduledAction

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def snap(**actions) -> FleetSnapshot:
    fleet = FleetSnapshot(1)
    for name, (minutes, done) in actions.items():
        value = ScheduledAction(at=NOW + dt.timedelta(minutes=minutes), action="promote", done_at=NOW if done else None)
        fleet.schedules[("m", name)] = Parsed(value, None, 5)
    fleet.schedules[("m", "broken")] = Parsed(None, "bad", 6)
    return fleet


def test_due_are_past_and_not_done_oldest_first() -> None:
    due = due_actions(snap(a=(-1, False), b=(-5, False), c=(3, False), d=(-2, True)), NOW)
    assert [d.schedule_id for d in due] == ["b", "a"]


def test_next_due_ignores_done_and_invalid() -> None:
    assert next_due(snap(a=(4, False), d=(1, True))) == NOW + dt.timedelta(minutes=4)
    assert next_due(snap(d=(1, True))) is None
