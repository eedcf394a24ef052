"""The disk checks that keep a reload from hanging TF Serving, and the version-directory checksum."""

import datetime as dt
import hashlib
import os
import pathlib

import pytest

from tfleet.modelfs import ChecksumError, DiskFacts, checksum_version_dir, inspect


def version(base: pathlib.Path, n: int, saved_model: bool = True) -> None:
    (base / str(n)).mkdir(parents=True)
    if saved_model:
        (base / str(n) / "saved_model.pb").write_bytes(b"")


def test_lists_numeric_version_dirs_with_a_saved_model(tmp_path: pathlib.Path) -> None:
    for n in (3, 10, 1):
        version(tmp_path, n)
    version(tmp_path, 7, saved_model=False)  # half-copied: not a version yet
    (tmp_path / "tmp").mkdir()
    (tmp_path / "5").write_text("a file, not a directory")
    assert inspect(str(tmp_path)) == DiskFacts(versions=(1, 3, 10))
    assert inspect(f"file://{tmp_path}") == DiskFacts(versions=(1, 3, 10))


def test_missing_base_path(tmp_path: pathlib.Path) -> None:
    facts = inspect(str(tmp_path / "nope"))
    assert facts.error == f"base_path {tmp_path / 'nope'} does not exist"


def test_no_version_directory(tmp_path: pathlib.Path) -> None:
    assert "has no version directory" in (inspect(str(tmp_path)).error or "")


def test_base_path_is_a_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "f").write_text("")
    assert "is not a directory" in (inspect(str(tmp_path / "f")).error or "")


def test_remote_schemes_are_passed_through_unchecked() -> None:
    assert inspect("s3://bucket/models/resnet") == DiskFacts(unchecked=True)
    assert inspect("gs://b/m").unchecked


# -- checksum of a version directory (what the registry records) ------------------------------------------------------------------------------------


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
    with pytest.raises(ChecksumError, match="does not exist"):
        checksum_version_dir(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ChecksumError, match="is not a directory"):
        checksum_version_dir(tmp_path / "file")
