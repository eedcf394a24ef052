"""Reading the fleet with the CLI against real etcd: get, status, history, diff and rollback
(also after pruning and a gap), unknown names as bad input, etcd unreachable (exit 3).

Most commands run in-process through click's CliRunner (fast); the ones whose process-level
behaviour matters (exit codes, one stderr line, no traceback) run as real `python -m tfleet`
subprocesses (tests/e2e/cli_support.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from click.testing import CliRunner

from tfleet import schema
from tfleet.cli.main import cli
from tfleet.etcd_local import free_port
from tfleet.registry import Registry
from tests.e2e.cli_support import ROOT, Cli, error_lines, put_host


def test_get_status_history_diff_rollback(tf, store, keys, tmp_path) -> None:
    put_host(store, keys, "h1", zone="a")
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nspec: {base_path: /models/m, replicas: 1}\n")
    tf.ok("apply", "-f", str(path), "--author", "alice")
    path.write_text("name: m\nspec: {base_path: /models/m, replicas: 2, owner: vision}\n")
    tf.ok("apply", "-f", str(path), "--author", "bob")

    table = tf.ok("get", "models").splitlines()
    assert table[0].split() == ["NAME", "SERVING", "READY", "VERSIONS", "LABELS", "PHASE", "HEALTH", "ERROR"]
    assert table[1].split()[:5] == ["m", "-/2", "-/2", "latest", "1"]
    [row] = tf.json("get", "models")
    assert (row["name"], row["wanted"], row["health"], row["intent"]["owner"]) == ("m", 2, "unknown", "vision")
    [host] = tf.json("get", "hosts")
    assert (host["name"], host["state"], host["labels"]) == ("h1", "up", {"zone": "a"})
    assert "Models:    1: 0 ok, 0 degraded, 0 failing, 1 unknown" in tf.ok("status")
    assert tf.json("status")["leader"] is None

    entries = tf.json("history", "m")
    assert [(e["sequence"], e["author"], e["action"]) for e in entries] == [(1, "alice", "create"), (2, "bob", "update")]
    assert "replicas: 1 -> 2" in tf.ok("history", "m")
    assert tf.json("diff", "m", "1", "2") == [{"path": "owner", "old": "", "new": "vision"}, {"path": "replicas", "old": 1, "new": 2}]
    assert tf("diff", "m", "1", "7").exit_code == 2

    out = tf.ok("rollback", "m", "--author", "carol")
    assert out.startswith("m rolled back to history entry 1")
    intent, _ = Registry(store, keys).get_intent("m")
    assert intent.replicas == 1
    last = Registry(store, keys).history("m")[-1]
    assert (last.sequence, last.action, last.author) == (3, "rollback", "carol")
    yaml_out = tf.ok("get", "model", "m", "-o", "yaml")
    assert "name: m" in yaml_out and "replicas: 1" in yaml_out


def test_history_diff_rollback_after_pruning_and_a_gap(tf, store, keys, tmp_path) -> None:
    """Retention 4 (as a controller with --history-keep 4 publishes it): the CLI prunes in its
    own writes, says clearly when an entry is pruned, and still undoes the last change."""
    store.put(keys.history_cursor(), json.dumps({"revision": 0, "updated_at": "2026-11-27T15:00:00Z", "keep": 4}).encode())
    path = tmp_path / "m.yaml"
    for replicas in range(1, 9):
        path.write_text(f"name: m\nspec: {{base_path: /models/m, replicas: {replicas}}}\n")
        tf.ok("apply", "-f", str(path), "--author", "alice")
    assert [e["sequence"] for e in tf.json("history", "m")] == [5, 6, 7, 8]
    assert [e["sequence"] for e in tf.json("history", "m", "--limit", "2")] == [7, 8]
    assert [e["sequence"] for e in tf.json("history", "m", "--before", "7")] == [5, 6]

    for args in (("diff", "m", "3", "8"), ("rollback", "m", "--to", "3")):
        result = tf(*args)
        assert result.exit_code == 2
        assert error_lines(result)[-1].endswith("entry 3 was pruned: model m keeps entries 5..8 (retention 4); pick one of those")
    assert tf.json("diff", "m", "5", "8") == [{"path": "replicas", "old": 5, "new": 8}]
    assert tf.ok("rollback", "m").startswith("m rolled back to history entry 7")
    assert Registry(store, keys).get_intent("m")[0].replicas == 7
    assert [e["sequence"] for e in tf.json("history", "m")] == [6, 7, 8, 9]

    # A gap entry (written by the controller after etcd compaction) reads as such.
    previous = Registry(store, keys).history("m")[-1]
    gap = previous.model_copy(
        update={
            "sequence": 10,
            "action": "gap",
            "revisions": schema.RevisionSpan(first=40, last=90),
            "revision": 80,
            "author": None,
            "source": "etcd",
            "previous": previous.new,
            "new": {**previous.new, "replicas": 3},
        }
    )
    store.put(keys.history("m", 10), schema.encode(schema.HistoryEntry.model_validate(gap.model_dump())))
    row = tf.ok("history", "m").splitlines()[-1]
    assert " gap " in row and "gap: revisions 40..90 not recorded" in row and "replicas: 7 -> 3" in row


def test_unknown_names_are_bad_input(tf, store, keys) -> None:
    for args in (
        ("get", "models", "nope"),
        ("get", "versions", "nope"),
        ("describe", "model", "nope"),
        ("history", "nope"),
        ("explain", "nope"),
        ("rollout", "start", "nope", "--version", "1"),
        ("rollout", "status", "nope"),
        ("get", "hosts", "h9"),
        ("describe", "host", "h9"),
        ("predict", "nope", "--input", "[1]"),
        ("get", "nothing"),
        ("rollback", "bad/name"),
    ):
        result = tf(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        [line] = error_lines(result)
        assert line.startswith(f"tfleet {args[0]}"), line
    bad_prefix = CliRunner().invoke(cli, ["get", "models", "--prefix", "no-slash", "--etcd", tf.etcd_url])
    assert bad_prefix.exit_code == 2 and error_lines(bad_prefix)[0].startswith("tfleet get models: key prefix 'no-slash' is not allowed")


def test_etcd_unreachable_exit_3_one_line(tmp_path) -> None:
    tf = Cli(f"http://127.0.0.1:{free_port()}", "/tfleet")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tfleet", "get", "models", "--etcd", tf.etcd_url, "--etcd-timeout", "0.5"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 3
    assert time.monotonic() - started < 10
    [line] = error_lines(done)
    assert line.startswith("tfleet get models: etcd unreachable: ") and tf.etcd_url in line
    # every command goes through the same translation
    for args in (("status",), ("cordon", "h1"), ("history", "m")):
        result = CliRunner().invoke(cli, [*args, "--etcd", tf.etcd_url, "--etcd-timeout", "0.5"])
        assert result.exit_code == 3 and len(error_lines(result)) == 1, (args, result.stderr)
