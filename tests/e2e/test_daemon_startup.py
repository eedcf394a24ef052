"""Daemons as real processes (issue item 7): start-up errors are one line per problem, all at
once; a controller whose etcd is unreachable warns about it, rate-limited, instead of one
info line per retry forever."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import wait_until
from tfleet.etcd_local import free_port
from tfleet.procs import Daemon


def test_agent_start_up_errors_are_one_line_each(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tfleet", "agent", "--http-port", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TFLEET_CONTEXT": str(tmp_path / "none.json")},
    )
    assert result.returncode == 2
    assert sorted(result.stderr.splitlines()) == [
        "tfleet agent: invalid --http-port: 'x' is not a valid integer.",
        "tfleet agent: missing --host (or TFLEET_HOST)",
        "tfleet agent: missing --tfs-grpc (or TFLEET_TFS_GRPC)",
        "tfleet agent: missing --tfs-rest (or TFLEET_TFS_REST)",
    ], result.stderr


def test_controller_without_etcd_warns_rate_limited(tmp_path) -> None:
    dead_etcd = f"http://127.0.0.1:{free_port()}"
    daemon = Daemon(
        "c1",
        [
            "controller",
            "--id",
            "c1",
            "--etcd",
            dead_etcd,
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(free_port()),
            "--lease-ttl",
            "3",
            "--etcd-timeout",
            "0.5",
            "--resync-interval",
            "1",
        ],
        tmp_path / "c1.log",
    ).start()

    def events(name: str) -> list[dict]:
        lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == name]

    try:
        wait_until(lambda: events("campaign_failed"), 30, message="the controller reports that it cannot campaign")
        # without the limit a retry is logged every renew interval (1 s here): give it time to repeat
        repeated = wait_until(lambda: len(events("campaign_failed")) > 1, 8, raise_on_timeout=False)
        assert daemon.running
    finally:
        daemon.stop()
    failed = events("campaign_failed")
    assert not repeated, f"{len(failed)} campaign_failed lines within seconds"
    assert [line["level"] for line in failed] == ["warning"]
    assert dead_etcd in failed[0]["error"]
