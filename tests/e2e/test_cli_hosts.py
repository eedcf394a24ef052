"""`tfleet register`, `cordon` / `drain` / `uncordon`, `watch` and `predict` (from status
keys, without route tables) against real etcd and a simulator.

Most commands run in-process through click's CliRunner (fast); the ones whose process-level
behaviour matters (exit codes, one stderr line, no traceback) run as real `python -m tfleet`
subprocesses (tests/e2e/cli_support.py).
"""

from __future__ import annotations

import subprocess
import sys


from tfleet import schema
from tfleet.modelfs import checksum_version_dir
from tfleet.schema import Assignment, HostControl, HostRecord, ModelStatus, VersionReport
from tfleet.sim.fixtures import make_model
from tfleet.tfs.client import TfsClient
from tests.e2e.cli_support import ROOT, error_lines, put_host


def test_register_prints_checksum_and_missing_directory_is_bad_input(tf, store, keys, tmp_path) -> None:
    base = make_model(tmp_path / "models", "m", [1])
    checksum, size, _ = checksum_version_dir(base / "1")
    out = tf.ok("register", "m", "1", "--base-path", str(base), "--tag", "prod", "--source-commit", "9f1c2e7", "--author", "alice")
    assert out.startswith(f"m version 1 registered: {checksum} (")
    again = tf.ok("register", "m", "1", "--base-path", str(base))
    assert "already registered with the same files" in again
    missing = tf("register", "m", "2", "--base-path", str(base))
    assert missing.exit_code == 2
    [line] = error_lines(missing)
    assert line == f"tfleet register: version 2 of model m: directory {base}/2 does not exist (expected {base}/2/saved_model.pb)"
    [row] = tf.json("get", "versions", "m")
    assert (row["version"], row["checksum"], row["size_bytes"], row["registered_by"], row["tags"]) == (1, checksum, size, "alice", ["prod"])
    assert tf.ok("get", "versions", "m").splitlines()[1].split()[1] == checksum[:19]


def test_cordon_drain_uncordon_write_hostctl(tf, store, keys) -> None:
    put_host(store, keys, "h1")

    def control() -> HostControl | None:
        kv = store.get(keys.hostctl("h1"))
        return schema.parse(HostControl, kv.value, kv.key) if kv else None

    assert tf.ok("cordon", "h1", "--reason", "disk swap").startswith("h1 cordoned (reason: disk swap)")
    assert control() == HostControl(cordoned=True, reason="disk swap")
    assert "unchanged" in tf.ok("cordon", "h1")
    assert tf.ok("drain", "h1").startswith("h1 draining (reason: disk swap)")
    assert control() == HostControl(cordoned=True, draining=True, reason="disk swap")
    assert tf.json("get", "hosts", "h1")[0]["state"] == "up, draining"
    assert tf.ok("uncordon", "h1").startswith("h1 uncordoned")
    assert control() is None, "uncordon removes the key"
    unknown = tf("cordon", "h9")
    assert unknown.exit_code == 2 and "unknown host h9" in unknown.stderr
    assert tf.ok("cordon", "h9", "--force")
    assert store.get(keys.hostctl("h9")) is not None


def test_cordon_replaces_a_hostctl_value_only_a_lenient_reader_would_accept(tf, store, keys) -> None:
    """{"cordoned": 1} is invalid for every strict reader (the controller ignores it): cordon
    must write a valid value, not call it "unchanged"."""
    put_host(store, keys, "h1")
    store.put(keys.hostctl("h1"), b'{"cordoned": 1}')
    assert "unchanged" not in tf.ok("cordon", "h1")
    kv = store.get(keys.hostctl("h1"))
    assert schema.parse(HostControl, kv.value, kv.key) == HostControl(cordoned=True)


def test_watch_prints_one_line_per_event(tf, store, keys) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfleet", *tf.args("watch", "--count", "2", "--duration", "20", "--prefix-only", "models")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        header = proc.stderr.readline()  # the watch is open once this is printed
        assert header.startswith(f"watching {tf.prefix}/models/ from revision"), header
        store.put(keys.host("ignored"), b"{}")  # another section: not shown
        store.put(keys.model("a"), b'{"base_path": "/a"}')
        store.delete(keys.model("a"))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    put, delete = out.splitlines()
    assert put.split()[1:] == ["PUT", "models/a", '{"base_path":', '"/a"}']
    assert delete.split()[1:] == ["DELETE", "models/a"]


def test_predict_without_routes_uses_status_keys(tf, store, keys, sim, tmp_path) -> None:
    """No controller, so no routes key: the host comes from the status keys and host records."""
    base = make_model(tmp_path / "models", "m", [4], scale=3.0, bias=1.0)
    with TfsClient(sim.grpc_address) as client:
        client.reload_config([Assignment(base_path=str(base)).to_config("m")], timeout=10)  # returns once AVAILABLE
        client.reload_config([Assignment(base_path=str(base), version_labels={"stable": 4}).to_config("m")], timeout=10)
    record = HostRecord(host="h1", grpc_address=sim.grpc_address, rest_address=sim.rest_address, agent_version="test", started_at=schema.utc_now())
    store.put(keys.host("h1"), schema.encode(record))
    loading = ModelStatus(assignment_revision=1, versions={"4": VersionReport(state="LOADING")}, updated_at=schema.utc_now())
    store.put(keys.status("h1", "m"), schema.encode(loading))
    refused = tf("predict", "m", "--input", "[1]")
    assert refused.exit_code == 1 and "no host serves m (any version) AVAILABLE (from the agents status keys)" in refused.stderr
    available = ModelStatus(assignment_revision=1, versions={"4": VersionReport(state="AVAILABLE")}, version_labels={"stable": 4}, updated_at=schema.utc_now())
    store.put(keys.status("h1", "m"), schema.encode(available))
    for args in ((), ("--version", "4"), ("--label", "stable")):
        answer = tf.json("predict", "m", "--input", '{"x": [[1, 2]]}', *args)
        assert (answer["host"], answer["version"], answer["outputs"]) == ("h1", 4, {"y": [[4.0, 7.0]]})  # y = 3 x + 1
    wrong_label = tf("predict", "m", "--input", "[1]", "--label", "beta")
    assert wrong_label.exit_code == 1 and "no host serves m (label beta)" in wrong_label.stderr
    forced = tf("predict", "m", "--input", "[1]", "--label", "beta", "--host", "h1")
    assert forced.exit_code == 2, "TF Serving's INVALID_ARGUMENT for an unknown label is bad input"
    assert error_lines(forced)[0] == "tfleet predict: h1 is not listed as serving m (label beta); asking it anyway"
