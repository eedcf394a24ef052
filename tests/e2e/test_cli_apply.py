"""`tfleet apply` against real etcd: multi-document YAML with history and author, schema errors
in one line that write nothing, stdin, concurrent edits refused, dry runs.

Most commands run in-process through click's CliRunner (fast); the ones whose process-level
behaviour matters (exit codes, one stderr line, no traceback) run as real `python -m tfleet`
subprocesses (tests/e2e/cli_support.py).
"""

from __future__ import annotations

import json

import pytest

from tfleet import schema
from tfleet.registry import Registry
from tfleet.schema import HostControl, ModelIntent
from tests.e2e.cli_support import MODELS_YAML, error_lines, put_host


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
