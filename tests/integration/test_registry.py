"""The model registry against a real etcd: CAS writes, history, rollback, versions."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from tfleet.keyspace import Keyspace
from tfleet.jsondiff import FieldChange
from tfleet.modelfs import ChecksumError, checksum_version_dir
from tfleet.registry import ConflictError, Registry, RegistryError
from tfleet.schema import ModelIntent, encode
from tfleet.store import EtcdStore

START = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


class Interposed:
    """The store, but `before_txn` runs once just before the next transaction is sent:
    the window between a writer's read and its compare-and-swap."""

    def __init__(self, store: EtcdStore) -> None:
        self._store = store
        self.before_txn: Callable[[], None] | None = None

    def txn(self, *args: Any, **kwargs: Any) -> Any:
        hook, self.before_txn = self.before_txn, None
        if hook is not None:
            hook()
        return self._store.txn(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def keys(prefix: str) -> Keyspace:
    return Keyspace(prefix.rstrip("/"))


@pytest.fixture
def registry(store: EtcdStore, keys: Keyspace) -> Registry:
    return Registry(store, keys, Clock())


def intent(replicas: int = 1, versions: tuple[int, ...] = (3,), **fields: Any) -> ModelIntent:
    return ModelIntent.model_validate(
        {"base_path": "/models/resnet", "model_version_policy": {"specific": {"versions": list(versions)}}, "replicas": replicas, **fields}
    )


def doc(value: ModelIntent) -> dict[str, Any]:
    return value.model_dump(mode="json")


# -- apply, history, conflicts ----------------------------------------------------------------


def test_apply_creates_then_updates_with_history(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    first = registry.apply_intent("resnet", intent(1), author="alice")
    assert registry.get_intent("resnet") == (intent(1), first)
    second = registry.apply_intent("resnet", intent(2), author="bob", source="etcd")
    assert second > first

    entries = registry.history("resnet")
    assert [(e.sequence, e.action, e.revision, e.author) for e in entries] == [(1, "create", first, "alice"), (2, "update", second, "bob")]
    assert entries[0].previous is None and entries[0].new == doc(intent(1))
    assert entries[1].previous == doc(intent(1)) and entries[1].new == doc(intent(2))
    assert entries[1].source == "etcd" and entries[0].source == "cli"
    assert entries[1].at > entries[0].at
    # The entry is written in the intent's own transaction: same revision, zero-padded key.
    kv = store.get(keys.history("resnet", 2))
    assert kv is not None and kv.key.endswith("/history/resnet/000000000002")
    assert kv.mod_revision == second and json.loads(kv.value)["revision"] is None


def test_concurrent_writers_conflict_instead_of_losing_an_edit(store: EtcdStore, keys: Keyspace) -> None:
    alice, bob = Registry(store, keys, Clock()), Registry(store, keys, Clock())
    alice.apply_intent("resnet", intent(1), author="alice")
    _, read_by_alice = alice.get_intent("resnet")
    _, read_by_bob = bob.get_intent("resnet")
    bobs = bob.apply_intent("resnet", intent(5), author="bob", expected_revision=read_by_bob)

    with pytest.raises(ConflictError) as caught:
        alice.apply_intent("resnet", intent(2), author="alice", expected_revision=read_by_alice)
    message = str(caught.value)
    assert "bob" in message and f"current revision is {bobs}" in message and f"you read revision {read_by_alice}" in message
    assert (caught.value.current_revision, caught.value.expected_revision) == (bobs, read_by_alice)
    assert alice.get_intent("resnet") == (intent(5), bobs)
    assert len(alice.history("resnet")) == 2


def test_a_write_between_read_and_cas_is_detected(store: EtcdStore, keys: Keyspace) -> None:
    """expected_revision=None compares against what apply itself read, not "anything goes"."""
    interposed = Interposed(store)
    registry = Registry(interposed, keys, Clock())
    registry.apply_intent("resnet", intent(1), author="alice")
    interposed.before_txn = lambda: store.put(keys.model("resnet"), encode(intent(7)))  # etcdctl put
    with pytest.raises(ConflictError, match="outside tfleet"):
        registry.apply_intent("resnet", intent(2), author="alice")
    assert registry.get_intent("resnet")[0] == intent(7)
    assert len(registry.history("resnet")) == 1


def test_create_only_with_expected_revision_zero(registry: Registry) -> None:
    registry.apply_intent("resnet", intent(1), author="alice", expected_revision=0)
    with pytest.raises(ConflictError, match="expected it not to exist"):
        registry.apply_intent("resnet", intent(2), author="bob", expected_revision=0)


def test_a_taken_sequence_number_alone_is_retried(store: EtcdStore, keys: Keyspace) -> None:
    """The controller may record an etcdctl change between our read and our write: the intent
    is unchanged, so the write just takes the next number."""
    interposed = Interposed(store)
    registry = Registry(interposed, keys, Clock())
    registry.apply_intent("resnet", intent(1), author="alice")
    taken = registry.history("resnet")[0].model_copy(update={"sequence": 2, "source": "etcd", "author": None})
    interposed.before_txn = lambda: store.put(keys.history("resnet", 2), encode(taken))
    registry.apply_intent("resnet", intent(2), author="alice")
    assert [e.sequence for e in registry.history("resnet")] == [1, 2, 3]
    assert registry.history("resnet")[-1].author == "alice"


def test_unchanged_apply_writes_nothing(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    revision = registry.apply_intent("resnet", intent(1), author="alice")
    assert registry.apply_intent("resnet", intent(1), author="bob") == revision
    # also with a stale expected revision: nothing would be lost
    assert registry.apply_intent("resnet", intent(1), author="bob", expected_revision=revision - 1) == revision
    assert len(registry.history("resnet")) == 1
    # a hand-written value with the defaults left out is the same intent
    handwritten = store.put(keys.model("mnist"), b'{"base_path": "/models/mnist"}')
    assert registry.apply_intent("mnist", ModelIntent(base_path="/models/mnist"), author="alice") == handwritten
    assert registry.history("mnist") == []


def test_delete(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    revision = registry.apply_intent("resnet", intent(1), author="alice")
    with pytest.raises(ConflictError):
        registry.delete_intent("resnet", author="bob", expected_revision=revision - 1)
    registry.delete_intent("resnet", author="bob", expected_revision=revision)
    assert registry.get_intent("resnet") == (None, 0)
    last = registry.history("resnet")[-1]
    assert (last.action, last.author, last.previous, last.new) == ("delete", "bob", doc(intent(1)), None)
    assert last.revision is not None and last.revision > revision  # the delete's own revision
    with pytest.raises(RegistryError, match="no intent to delete"):
        registry.delete_intent("resnet", author="bob")
    assert "resnet" not in registry.models()


def test_rollback_default_and_to_a_sequence(registry: Registry) -> None:
    for replicas in (1, 2, 3):
        registry.apply_intent("resnet", intent(replicas), author="alice")
    registry.rollback("resnet", author="carol")  # undo the last change: back to entry 2
    assert registry.get_intent("resnet")[0] == intent(2)
    last = registry.history("resnet")[-1]
    assert (last.sequence, last.action, last.author, last.previous, last.new) == (4, "rollback", "carol", doc(intent(3)), doc(intent(2)))

    revision = registry.rollback("resnet", to_sequence=1, author="carol")
    assert registry.get_intent("resnet") == (intent(1), revision)
    assert registry.rollback("resnet", to_sequence=1, author="carol") == revision  # already there: no write
    assert len(registry.history("resnet")) == 5

    with pytest.raises(RegistryError, match="no history entry 42"):
        registry.rollback("resnet", to_sequence=42, author="carol")


def test_rollback_after_a_delete_and_to_a_delete(registry: Registry) -> None:
    registry.apply_intent("resnet", intent(2), author="alice")
    registry.delete_intent("resnet", author="alice")
    registry.rollback("resnet", author="bob")
    assert registry.get_intent("resnet")[0] == intent(2)
    with pytest.raises(RegistryError, match="records a delete"):
        registry.rollback("resnet", to_sequence=2, author="bob")
    with pytest.raises(RegistryError, match="nothing earlier"):
        registry.rollback("fresh", author="bob")


def test_diff_between_two_entries(registry: Registry) -> None:
    registry.apply_intent("resnet", intent(1, versions=(3,)), author="alice")
    registry.apply_intent("resnet", intent(2, versions=(3, 4), version_labels={"canary": 4}), author="alice")
    assert registry.diff("resnet", 1, 2) == [
        FieldChange("model_version_policy.specific.versions", [3], [3, 4]),
        FieldChange("replicas", 1, 2),
        FieldChange("version_labels.canary", None, 4),
    ]
    assert registry.diff("resnet", 2, 2) == []
    with pytest.raises(RegistryError, match="entries: 1..2"):
        registry.diff("resnet", 1, 9)


def test_prune_keeps_the_newest_and_numbering_continues(registry: Registry) -> None:
    for replicas in range(1, 6):
        registry.apply_intent("resnet", intent(replicas), author="alice")
    assert registry.prune_history("resnet", keep=2) == 3
    assert [e.sequence for e in registry.history("resnet")] == [4, 5]
    registry.apply_intent("resnet", intent(9), author="alice")
    assert [e.sequence for e in registry.history("resnet")] == [4, 5, 6]
    with pytest.raises(RegistryError, match="at least 1"):
        registry.prune_history("resnet", keep=0)


# -- bounded history: pages, retention in the write, pruned entries --------------------------------


def test_history_pages_newest_first_with_limit_and_before(registry: Registry) -> None:
    for replicas in range(1, 8):
        registry.apply_intent("resnet", intent(replicas), author="alice")
    assert [e.sequence for e in registry.history("resnet", limit=3)] == [5, 6, 7]
    assert [e.sequence for e in registry.history("resnet", limit=3, before=5)] == [2, 3, 4]
    assert [e.sequence for e in registry.history("resnet", before=3)] == [1, 2]
    assert registry.history_bounds("resnet") == (1, 7)
    assert registry.history_bounds("mnist") is None


def test_a_cli_write_prunes_beyond_the_published_retention(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    """The controller publishes --history-keep in the cursor; each write prunes in its own txn."""
    store.put(keys.history_cursor(), json.dumps({"revision": 0, "updated_at": "2026-11-27T15:00:00Z", "keep": 3}).encode())
    assert registry.retention() == 3
    for replicas in range(1, 7):
        registry.apply_intent("resnet", intent(replicas), author="alice")
    assert [e.sequence for e in registry.history("resnet")] == [4, 5, 6]
    with pytest.raises(RegistryError) as caught:
        registry.diff("resnet", 2, 6)
    assert str(caught.value) == "entry 2 was pruned: model resnet keeps entries 4..6 (retention 3); pick one of those"
    with pytest.raises(RegistryError, match=r"no history entry 9 \(entries: 4..6\)"):
        registry.rollback("resnet", to_sequence=9, author="bob")
    registry.rollback("resnet", author="bob")  # undo the last change: only the newest entries are needed
    assert registry.get_intent("resnet")[0] == intent(5)
    # a stray key under the model's history is neither read nor deleted by the ranges
    store.put(keys.history_prefix("resnet") + "notes", b"hand-written")
    registry.apply_intent("resnet", intent(9), author="alice")
    assert [e.sequence for e in registry.history("resnet")] == [6, 7, 8]
    assert store.get(keys.history_prefix("resnet") + "notes") is not None


def test_an_unrecorded_etcdctl_change_is_named_in_the_conflict(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    revision = registry.apply_intent("resnet", intent(1), author="alice")
    store.put(keys.model("resnet"), encode(intent(3)))
    with pytest.raises(ConflictError, match=r"outside tfleet \(etcdctl\?\).*you read revision"):
        registry.apply_intent("resnet", intent(2), author="alice", expected_revision=revision)


# -- invalid values in etcd ---------------------------------------------------------------------


def test_invalid_intent_in_etcd(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    key = keys.model("broken")
    store.put(key, b'{"base_path": "/m", "replicas": -1}')
    with pytest.raises(RegistryError) as caught:
        registry.get_intent("broken")
    assert key in str(caught.value) and "replicas" in str(caught.value)
    store.put(keys.model("typo"), b'{"base_path": "/m", "model_version_polcy": {}}')
    store.put(keys.model("garbage"), b"{not json")
    registry.apply_intent("good", intent(1), author="alice")

    found = registry.models()
    assert found["good"] == (intent(1), None)
    assert found["broken"][0] is None and "replicas" in (found["broken"][1] or "")
    assert "model_version_polcy: unknown field" in (found["typo"][1] or "")
    assert "invalid JSON" in (found["garbage"][1] or "")

    # The registry can repair a broken intent; the entry keeps what was there.
    registry.apply_intent("broken", ModelIntent(base_path="/m"), author="alice")
    entry = registry.history("broken")[0]
    assert (entry.action, entry.previous) == ("update", {"base_path": "/m", "replicas": -1})
    # (etcdctl writes of garbage and of schema-invalid objects: tests/integration/test_history.py)


# -- versions ---------------------------------------------------------------------------------------


def make_version(base: pathlib.Path, version: int, saved_model: bytes = b"graph") -> pathlib.Path:
    directory = base / str(version)
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(saved_model)
    (directory / "variables" / "variables.index").write_bytes(b"index")
    return directory


def test_register_version(registry: Registry, store: EtcdStore, keys: Keyspace, tmp_path: pathlib.Path) -> None:
    base = tmp_path / "resnet"
    directory = make_version(base, 3)
    registry.apply_intent("resnet", ModelIntent(base_path=str(base)), author="alice")

    record = registry.register_version("resnet", 3, source_uri="gs://b/resnet/3", tags=("prod",), registered_by="alice")
    checksum, size, created = checksum_version_dir(directory)
    assert (record.checksum, record.size_bytes, record.created_at) == (checksum, size, created)
    assert (record.path, record.tags, record.source_uri) == (f"{base}/3", ["prod"], "gs://b/resnet/3")
    stored = store.get(keys.version("resnet", 3))
    assert stored is not None

    again = registry.register_version("resnet", 3, registered_by="bob")  # same files: no-op
    assert again == record and store.get(keys.version("resnet", 3)).mod_revision == stored.mod_revision

    (directory / "saved_model.pb").write_bytes(b"retrained")
    with pytest.raises(ConflictError) as caught:
        registry.register_version("resnet", 3)
    assert str(caught.value).startswith(f"version 3 of resnet is already registered with checksum {checksum}, the directory now has sha256:")
    assert str(caught.value).endswith("register a new version number")

    make_version(base, 10)
    other = tmp_path / "elsewhere"
    make_version(other, 2)
    registry.register_version("resnet", 10)
    registry.register_version("resnet", 2, base_path=f"file://{other}")
    assert [(r.version, r.path) for r in registry.versions("resnet")] == [
        (2, f"file://{other}/2"),
        (3, f"{base}/3"),
        (10, f"{base}/10"),
    ]


def test_register_version_refuses_what_cannot_be_served(registry: Registry, tmp_path: pathlib.Path) -> None:
    with pytest.raises(RegistryError, match="has no intent, so its base_path is unknown"):
        registry.register_version("resnet", 1)
    with pytest.raises(RegistryError, match=r"directory .*/resnet/1 does not exist"):
        registry.register_version("resnet", 1, base_path=str(tmp_path / "resnet"))
    (tmp_path / "resnet" / "1").mkdir(parents=True)
    with pytest.raises(RegistryError, match="holds no saved_model.pb"):
        registry.register_version("resnet", 1, base_path=str(tmp_path / "resnet"))
    with pytest.raises(RegistryError, match="not a local path"):
        registry.register_version("resnet", 1, base_path="s3://bucket/resnet")
    assert registry.versions("resnet") == []


def test_a_directory_that_cannot_be_checksummed_is_a_registry_error(
    registry: Registry,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI reports RegistryError; a file still being copied must reach it as one, unrecorded."""
    base = tmp_path / "resnet"
    make_version(base, 1)

    def copying(path: pathlib.Path) -> Any:
        raise ChecksumError(f"saved_model.pb in {path} changed while it was being checksummed (5 bytes, then 9); wait until the copy is complete")

    monkeypatch.setattr("tfleet.registry.versions.checksum_version_dir", copying)
    with pytest.raises(RegistryError, match="changed while it was being checksummed"):
        registry.register_version("resnet", 1, base_path=str(base))
    assert registry.versions("resnet") == []


def test_invalid_model_names_are_registry_errors(registry: Registry) -> None:
    for call in (
        lambda: registry.get_intent("../etc"),
        lambda: registry.history("a/b"),
        lambda: registry.versions(""),
        lambda: registry.apply_intent("a b", intent(1), author="alice"),
        lambda: registry.register_version("resnet", -1, base_path="/m"),
    ):
        with pytest.raises(RegistryError):
            call()


def test_hand_written_keys_under_a_history_do_not_stop_reads_or_writes(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    for replicas in (1, 2):
        registry.apply_intent("resnet", intent(replicas), author="alice")
    store.put(keys.history_prefix("resnet") + "5", b"short key")  # sorts after every 12-digit key
    store.put(keys.history_prefix("resnet") + "0x", b"not a number")
    registry.apply_intent("resnet", intent(3), author="alice")
    assert [e.sequence for e in registry.history("resnet")] == [1, 2, 3]
    assert registry.history_bounds("resnet") == (1, 3)


def test_models_with_history_skips_over_each_models_entries(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    names = ["m", "m-x", "m.x", "m0", "n"]
    for name in names:
        for replicas in (1, 2, 3):
            registry.apply_intent(name, intent(replicas), author="alice")
    assert list(registry.models_with_history()) == sorted(names, key=lambda n: keys.history_prefix(n))


def test_a_leniently_equal_stored_intent_is_written_again(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    """ "replicas": "1" (an etcdctl put) is invalid for every strict reader; applying the same
    intent must replace it, not find it "unchanged" by a lenient comparison."""
    stored = doc(intent(1))
    stored["replicas"] = "1"
    store.put(keys.model("resnet"), json.dumps(stored).encode())
    before = store.get(keys.model("resnet")).mod_revision
    assert registry.apply_intent("resnet", intent(1), author="alice") > before
    assert registry.get_intent("resnet")[0] == intent(1)


def test_rollback_and_the_last_valid_intent_read_history_as_strictly_as_etcd(registry: Registry, store: EtcdStore, keys: Keyspace) -> None:
    """A history entry recording an etcdctl value such as "replicas": 2.0 (refused in etcd) is
    no intent to roll back to, nor one to keep serving."""
    registry.apply_intent("resnet", intent(1), author="alice")
    lenient = doc(intent(2))
    lenient["replicas"] = 2.0
    entry = registry.history("resnet")[-1].model_copy(update={"sequence": 2, "action": "update", "new": lenient, "revision": None})
    store.put(keys.history("resnet", 2), encode(entry))
    with pytest.raises(RegistryError, match="history entry 2 of model resnet does not hold a valid intent .*replicas"):
        registry.rollback("resnet", to_sequence=2, author="bob")
    assert registry.last_valid_intent("resnet") == intent(1)
