"""The disk checks that keep a reload from hanging TF Serving."""

import pathlib

from tfleet.modelfs import DiskFacts, inspect


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
