"""The operator CLI (`tfleet apply`, `get`, `rollout`, `predict`, ...) against real etcd.

Most commands run in-process through click's CliRunner (fast); the ones whose process-level
behaviour matters (exit codes, one stderr line, no traceback, watch until it stops, Predict
over gRPC) run as real `python -m tfleet` subprocesses. predict/describe/explain/rollout use a
small real fleet: simulators, agents and a controller (tests/integration/controller_harness.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from tests.helpers import wait_until
from tests.integration.controller_harness import ControlledFleet, add_host, start_controller
from tests.simfixtures import FAST
from tfleet import schema
from tfleet.cli.main import cli
from tfleet.etcd_local import free_port
from tfleet.keyspace import Keyspace
from tfleet.modelfs import checksum_version_dir
from tfleet.registry import Registry
from tfleet.schema import Assignment, HostControl, HostRecord, ModelIntent, ModelStatus, VersionReport
from tfleet.sim.fixtures import make_model
from tfleet.sim.server import SimServer
from tfleet.store import EtcdSettings, EtcdStore
from tfleet.tfs.client import TfsClient

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    """Runs `tfleet` commands against one etcd and prefix."""

    etcd_url: str
    prefix: str  # without the trailing "/"

    def args(self, *args: str) -> list[str]:
        return [*args, "--etcd", self.etcd_url, "--prefix", self.prefix, "--etcd-timeout", "1"]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, self.args(*args), input=input, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, f"tfleet {' '.join(args)} exited {result.exit_code}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> object:
        return json.loads(self.ok(*args, "-o", "json"))

    def process(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tfleet", *self.args(*args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
def tf(etcd_server, prefix) -> Cli:
    return Cli(etcd_server.client_url, prefix.rstrip("/"))


@pytest.fixture
def keys(tf) -> Keyspace:
    return Keyspace(tf.prefix)


def error_lines(result: Result | subprocess.CompletedProcess[str]) -> list[str]:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return lines


def put_host(store: EtcdStore, keys: Keyspace, name: str, memory_mb: int = 1024, **labels: str) -> None:
    record = HostRecord(
        host=name, grpc_address="127.0.0.1:1", rest_address="127.0.0.1:2", memory_mb=memory_mb, labels=labels, agent_version="test", started_at=schema.utc_now()
    )
    store.put(keys.host(name), schema.encode(record))


MODELS_YAML = """\
name: resnet
spec:
  base_path: /models/resnet
  model_version_policy: {specific: {versions: [3]}}
  version_labels: {stable: 3}
  replicas: 2
  memory_mb: 256
---
kind: Model
name: bert
spec: {base_path: /models/bert, replicas: 1}
---
kind: HostControl
name: h1
spec: {cordoned: true, reason: disk swap}
"""


# -- apply ----------------------------------------------------------------------------------------


def test_apply_multi_document_yaml_records_history_with_author(tf, store, keys, tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(MODELS_YAML)
    done = tf.process("apply", "-f", str(path), "--author", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"model resnet created (revision {store.get(keys.model('resnet')).mod_revision})",
        f"model bert created (revision {store.get(keys.model('bert')).mod_revision})",
        f"hostctl h1 created (revision {store.get(keys.hostctl('h1')).mod_revision})",
    ]
    registry = Registry(store, keys)
    intent, _ = registry.get_intent("resnet")
    assert intent is not None and intent.replicas == 2 and intent.version_labels == {"stable": 3}
    [entry] = registry.history("resnet")
    assert (entry.action, entry.author, entry.source) == ("create", "alice", "cli")
    assert schema.parse(HostControl, store.get(keys.hostctl("h1")).value, "hostctl") == HostControl(cordoned=True, reason="disk swap")

    again = tf("apply", "-f", str(path), "--author", "bob")
    assert again.exit_code == 0 and again.stdout.count("unchanged") == 3
    assert len(registry.history("resnet")) == 1, "an unchanged document adds no history entry"

    path.write_text(MODELS_YAML.replace("replicas: 2", "replicas: 3"))
    changed = json.loads(tf.ok("apply", "-f", str(path), "--author", "carol", "-o", "json"))
    assert [(r["name"], r["action"]) for r in changed] == [("resnet", "updated"), ("bert", "unchanged"), ("h1", "unchanged")]
    assert registry.history("resnet")[-1].author == "carol"


def test_apply_schema_error_is_one_line_and_writes_nothing(tf, store, keys, tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("name: bert\nspec: {base_path: /models/bert}\n---\nname: resnet\nspec:\n  base_path: /models/resnet\n  replicas: many\n")
    done = tf.process("apply", "-f", str(path))
    assert done.returncode == 2
    [line] = error_lines(done)
    assert line.startswith(f"tfleet apply: {path} document 2 (resnet): replicas: Input should be a valid integer")
    assert done.stdout == ""
    assert store.list_prefix(tf.prefix + "/").items == (), "no document is applied when one is bad"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["missing.yaml"], "tfleet apply: {dir}/missing.yaml: no such file"),
        (["syntax.yaml"], "tfleet apply: {dir}/syntax.yaml: invalid YAML at line 2 column 1"),
        (["twice.yaml"], "tfleet apply: {dir}/twice.yaml: invalid YAML at line 4 column 3: key 'base_path' appears twice in one mapping"),
        (["bad.json"], "tfleet apply: {dir}/bad.json document 1 (x): model_version_policy: must hold exactly one of"),
    ],
)
def test_apply_bad_input_exit_2_one_line(tf, store, tmp_path, files, expected) -> None:
    (tmp_path / "syntax.yaml").write_text("name: x\n- spec\n")
    (tmp_path / "twice.yaml").write_text("name: x\nspec:\n  base_path: /a\n  base_path: /b\n")
    (tmp_path / "bad.json").write_text('{"name": "x", "spec": {"base_path": "/x", "model_version_policy": {}}}')
    result = tf("apply", *[arg for f in files for arg in ("-f", str(tmp_path / f))])
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert line.startswith(expected.format(dir=tmp_path)), line
    assert store.list_prefix(tf.prefix + "/").items == ()


def test_apply_reads_stdin(tf, store, keys) -> None:
    result = tf("apply", "-f", "-", input='{"name": "m", "spec": {"base_path": "/m"}}')
    assert result.exit_code == 0, result.stderr
    assert store.get(keys.model("m")) is not None


def test_apply_concurrent_edit_is_refused_and_not_overwritten(tf, store, keys, tmp_path, monkeypatch) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("name: resnet\nspec: {base_path: /models/resnet, replicas: 2}\n")
    tf.ok("apply", "-f", str(path), "--author", "alice")
    read_at = store.get(keys.model("resnet")).mod_revision
    other = Registry(store, keys)
    original = Registry.apply_intent

    def concurrent(self, model, intent, **kwargs):
        # bob's edit lands between the CLI's read and its write
        monkeypatch.setattr(Registry, "apply_intent", original)
        other.apply_intent(model, ModelIntent(base_path="/models/resnet", replicas=5), author="bob")
        return original(self, model, intent, **kwargs)

    monkeypatch.setattr(Registry, "apply_intent", concurrent)
    path.write_text("name: resnet\nspec: {base_path: /models/resnet, replicas: 3}\n")
    result = tf("apply", "-f", str(path), "--author", "alice")
    assert result.exit_code == 1
    now = store.get(keys.model("resnet")).mod_revision
    assert error_lines(result) == [f"tfleet apply: resnet changed since it was read (revision {read_at} -> {now} by bob via cli); re-run apply"]
    intent, _ = Registry(store, keys).get_intent("resnet")
    assert intent.replicas == 5, "bob's change is kept"


def test_dry_run_writes_nothing_and_shows_the_placement(tf, store, keys, tmp_path) -> None:
    put_host(store, keys, "h1", zone="a")
    put_host(store, keys, "h2", zone="b")
    put_host(store, keys, "h3", memory_mb=100, zone="a")
    path = tmp_path / "models.yaml"
    path.write_text(MODELS_YAML.replace("name: h1", "name: h2"))
    before = store.list_prefix(tf.prefix + "/")
    result = tf.process("apply", "-f", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    after = store.list_prefix(tf.prefix + "/")
    assert after.revision == before.revision and after.items == before.items, "a dry run writes nothing"
    lines = result.stdout.splitlines()
    assert lines[0] == "model resnet: create (versions 3, 2 replicas)"
    # h2 is cordoned by the same file, h3 has 100 MB for a 256 MB replica: one replica fits
    assert "  placement: h1 (1 of 2 wanted)" in lines
    assert "  writes:    put h1 (versions 3; labels stable=3)" in lines
    assert any(line.startswith("  reason:    1 of 2 replicas not placed") for line in lines), lines
    assert "host h2: create, cordoned (reason: disk swap)" in lines
    data = json.loads(tf.ok("apply", "-f", str(path), "--dry-run", "-o", "json"))
    resnet = data["models"][0]
    assert resnet["hosts"] == ["h1"] and resnet["rollout"]["phase"] == "stable" and resnet["rollout"]["to_versions"] == [3]


# -- reading, history, diff, rollback ----------------------------------------------------------------


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


# -- register, hosts, watch ---------------------------------------------------------------------------


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


# -- a real fleet: predict, describe, explain, rollouts ----------------------------------------------


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


def one_line_of(text: str) -> str:
    return " ".join(text.split())
