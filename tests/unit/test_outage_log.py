"""OutageLog: a controller whose etcd is unreachable logs the retries at warning, rate-limited
(issue item 7), and everything else unchanged."""

from __future__ import annotations

from tests.helpers import FakeClock, RecordingLog
from tfleet.logs import CONTROLLER_OUTAGE_EVENTS, OutageLog


def test_outage_retries_are_warnings_at_most_once_per_interval() -> None:
    lines: list = []
    clock = FakeClock(0.0)
    log = OutageLog(RecordingLog(lines), CONTROLLER_OUTAGE_EVENTS, interval=30, clock=clock).bind(candidate="c1")
    for second in range(0, 70, 2):  # a retry every 2 s for 70 s
        clock.now = float(second)
        log.info("campaign_failed", error="unavailable")
        log.warning("reconcile", result="etcd_unavailable", error="unavailable")
    campaign = [line for line in lines if line[1] == "campaign_failed"]
    assert [line[0] for line in campaign] == ["warning"] * 3  # at 0, 30 and 60 s
    assert campaign[0][2] == {"candidate": "c1", "error": "unavailable"}
    assert campaign[1][2]["left_out"] == 14 and campaign[1][2]["per_seconds"] == 30
    assert len([line for line in lines if line[1] == "reconcile"]) == 3


def test_other_events_pass_through_at_their_level() -> None:
    lines: list = []
    log = OutageLog(RecordingLog(lines), CONTROLLER_OUTAGE_EVENTS, clock=FakeClock(0.0))
    for _ in range(3):
        log.info("leadership_won")
        log.warning("reconcile", result="lost_leadership")
        log.debug("reconcile", result="ok")
    assert [line[0] for line in lines] == ["info", "warning", "debug"] * 3
