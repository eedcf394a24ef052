"""`tfleet dev` (the README's first command): it comes up, serves the samples, and Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from tests.helpers import wait_until
from tfleet.etcd_local import etcd_binary, free_port


def etcdctl(endpoint: str, *args: str) -> str:
    env = {**os.environ, "ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": endpoint}
    return subprocess.run([str(etcd_binary("etcdctl")), *args], capture_output=True, text=True, env=env, timeout=30, check=True).stdout


def test_dev_fleet_serves_samples_and_stops_cleanly(tmp_path) -> None:
    log = tmp_path / "dev.out"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tfleet", "dev", "--run-dir", str(tmp_path / "run"), "--etcd-port", str(free_port()), "--lease-ttl", "4"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "Press Ctrl-C" in log.read_text() or proc.poll() is not None, 90, message="tfleet dev printed its guide")
        assert proc.poll() is None, log.read_text()
        endpoint = re.search(r"ETCDCTL_ENDPOINTS=(\S+)", log.read_text()).group(1)

        def available(key: str) -> bool:
            out = etcdctl(endpoint, "get", "--print-value-only", key)
            return bool(out.strip()) and all(v["state"] == "AVAILABLE" for v in json.loads(out)["versions"].values())

        wait_until(lambda: available("/tfleet/status/h1/half_plus_two"), 60, message="hand-made assignment served")
        wait_until(lambda: '"ready_replicas":{"1":2}' in etcdctl(endpoint, "get", "--print-value-only", "/tfleet/modelstatus/resnet_lite"), 60,
                   message="controller placed resnet_lite on 2 hosts")
        assert '"id":"c' in etcdctl(endpoint, "get", "--print-value-only", "/tfleet/leader")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(60)
    assert "stopping the local fleet" in log.read_text()
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"processes left running: {leftovers}"
