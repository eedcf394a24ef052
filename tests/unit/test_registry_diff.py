"""Pure parts of the registry: the intent diff and the version-directory checksum."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib

import pytest

from tfleet.registry import FieldChange, RegistryError, checksum_version_dir, diff_values

BASE = {
    "base_path": "/models/resnet",
    "model_version_policy": {"specific": {"versions": [3]}},
    "version_labels": {"stable": 3},
    "replicas": 2,
    "host_selector": {},
}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(BASE, dict(BASE), [], id="equal"),
        pytest.param(None, None, [], id="both-absent"),
        pytest.param(
            BASE,
            {**BASE, "replicas": 3},
            [FieldChange("replicas", 2, 3)],
            id="scalar",
        ),
        pytest.param(
            BASE,
            {**BASE, "model_version_policy": {"specific": {"versions": [3, 4]}}},
            [FieldChange("model_version_policy.specific.versions", [3], [3, 4])],
            id="list-is-one-leaf",
        ),
        pytest.param(
            BASE,
            {**BASE, "model_version_policy": {"latest": {"num_versions": 2}}},
            [
                FieldChange("model_version_policy.latest", None, {"num_versions": 2}),
                FieldChange("model_version_policy.specific", {"versions": [3]}, None),
            ],
            id="policy-kind-changes",
        ),
        pytest.param(
            BASE,
            {**BASE, "version_labels": {"stable": 3, "canary": 4}},
            [FieldChange("version_labels.canary", None, 4)],
            id="added-map-key",
        ),
        pytest.param(
            {"a": 1},
            {"b": 1},
            [FieldChange("a", 1, None), FieldChange("b", None, 1)],
            id="renamed-field",
        ),
        pytest.param(
            {"host_selector": {}},
            {"host_selector": {"topology.zone": "a"}},
            [FieldChange('host_selector["topology.zone"]', None, "a")],
            id="dotted-key-is-quoted",
        ),
        pytest.param({"x": 1}, {"x": 1.0}, [FieldChange("x", 1, 1.0)], id="json-type-change"),
        pytest.param({"x": 1}, {"x": True}, [FieldChange("x", 1, True)], id="bool-is-not-int"),
        pytest.param({"x": None}, {}, [], id="null-equals-missing"),
        pytest.param({"x": {}}, {"x": None}, [FieldChange("x", {}, None)], id="object-to-null"),
    ],
)
def test_diff_values(old: dict | None, new: dict | None, expected: list[FieldChange]) -> None:
    assert diff_values(old, new) == expected


def test_create_lists_every_top_level_field_and_delete_reverses_it() -> None:
    created = diff_values(None, BASE)
    assert [c.path for c in created] == sorted(BASE)
    assert all(c.old is None for c in created)
    deleted = diff_values(BASE, None)
    assert [(c.path, c.old, c.new) for c in deleted] == [(c.path, c.new, c.old) for c in created]


def test_diff_does_not_modify_its_inputs() -> None:
    old = {"a": {"b": [1]}}
    new = {"a": {"b": [2]}}
    diff_values(old, new)
    assert old == {"a": {"b": [1]}} and new == {"a": {"b": [2]}}


# -- checksum ------------------------------------------------------------------------------------


def make_version(root: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


FILES = {
    "saved_model.pb": b"graph",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": b"\x00" * 1000,
}


def test_checksum_is_deterministic_and_independent_of_creation_order(tmp_path: pathlib.Path) -> None:
    one = make_version(tmp_path / "a", FILES)
    two = make_version(tmp_path / "b", dict(reversed(list(FILES.items()))))
    digest, size, _ = checksum_version_dir(one)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert checksum_version_dir(one)[0] == digest
    assert checksum_version_dir(two)[0] == digest
    assert size == sum(len(content) for content in FILES.values())


def test_checksum_pins_its_format(tmp_path: pathlib.Path) -> None:
    """The digest is stored in etcd and compared across tfleet versions: its framing is a contract."""
    root = make_version(tmp_path / "v", {"b": b"22", "a/x": b"1"})
    expected = hashlib.sha256()
    for name, content in ((b"a/x", b"1"), (b"b", b"22")):
        expected.update(len(name).to_bytes(8, "big") + name + len(content).to_bytes(8, "big") + content)
    assert checksum_version_dir(root)[0] == f"sha256:{expected.hexdigest()}"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda root: (root / "saved_model.pb").write_bytes(b"graph2"), id="content"),
        pytest.param(lambda root: (root / "saved_model.pb").rename(root / "saved_model.pbtxt"), id="rename"),
        pytest.param(lambda root: (root / "extra").write_bytes(b""), id="new-empty-file"),
        pytest.param(lambda root: (root / "variables" / "variables.index").unlink(), id="removed-file"),
    ],
)
def test_checksum_changes_with_any_file_change(tmp_path: pathlib.Path, change) -> None:
    root = make_version(tmp_path / "v", FILES)
    before = checksum_version_dir(root)[0]
    change(root)
    assert checksum_version_dir(root)[0] != before


def test_framing_tells_file_boundaries_apart(tmp_path: pathlib.Path) -> None:
    """Bytes moved from one file's content into the next file's name must change the digest."""
    a = make_version(tmp_path / "a", {"x": b"ab", "y": b""})
    b = make_version(tmp_path / "b", {"x": b"a", "y": b"b"})
    assert checksum_version_dir(a)[0] != checksum_version_dir(b)[0]


def test_empty_directories_and_mtime(tmp_path: pathlib.Path) -> None:
    root = make_version(tmp_path / "v", FILES)
    digest = checksum_version_dir(root)[0]
    (root / "assets").mkdir()
    os.utime(root, (1_700_000_000, 1_700_000_000))
    again, _, created = checksum_version_dir(root)
    assert again == digest
    assert created == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)


def test_streams_a_file_larger_than_one_chunk(tmp_path: pathlib.Path) -> None:
    content = os.urandom(3 * (1 << 20) + 17)
    root = make_version(tmp_path / "v", {"big": content})
    digest, size, _ = checksum_version_dir(root)
    expected = hashlib.sha256(len(b"big").to_bytes(8, "big") + b"big" + len(content).to_bytes(8, "big") + content)
    assert (digest, size) == (f"sha256:{expected.hexdigest()}", len(content))


def test_symlinked_directories_are_not_entered(tmp_path: pathlib.Path) -> None:
    root = make_version(tmp_path / "v", FILES)
    digest = checksum_version_dir(root)[0]
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert checksum_version_dir(root)[0] == digest


def test_missing_or_not_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        checksum_version_dir(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(RegistryError, match="is not a directory"):
        checksum_version_dir(tmp_path / "file")
