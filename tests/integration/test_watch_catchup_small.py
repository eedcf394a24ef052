"""bench/watch_catchup, small enough for CI: a watch that starts 200 controller-sized
transactions behind catches up, every revision delivered whole (the benchmark's own exit
status says whether it caught up)."""

from __future__ import annotations

import json

import pytest

from bench import watch_catchup


def test_the_catchup_benchmark_delivers_every_event_without_splitting_a_revision(capsys: pytest.CaptureFixture[str]) -> None:
    assert watch_catchup.main(["--events", "20000", "--txn", "100", "--value-bytes", "600", "--timeout", "60"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["delivered"] == 20000 and result["revisions"] == 200
    assert result["revisions_split"] == 0 and result["restarts"] == 0 and result["errors"] == []
    assert result["deliveries"] > 1  # (etcd cut the 12 MB catch-up into fragments)
