"""The local memory of what TF Serving accepted survives a restart and tolerates damage."""

import pathlib

from tfleet.agent.applied import AppliedStateFile
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy


def test_round_trip(tmp_path: pathlib.Path) -> None:
    specs = {
        "a": ModelConfigSpec("a", "/m/a", "tensorflow", VersionPolicy("specific", versions=(3, 4)), (("stable", 3),)),
        "b": ModelConfigSpec("b", "s3://x/b", "tensorflow", VersionPolicy("latest", num_versions=2)),
    }
    state = AppliedStateFile(tmp_path / "sub" / "agent-h1.json")
    state.save(specs)
    assert state.load() == (specs, None)
    assert list(tmp_path.joinpath("sub").iterdir()) == [state.path]  # no temp files left


def test_missing_file_is_unknown_not_an_error(tmp_path: pathlib.Path) -> None:
    assert AppliedStateFile(tmp_path / "x.json").load() == ({}, None)


def test_corrupt_file_is_ignored_with_a_warning(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": 1, "models": [{"name": 1}]}')
    applied, warning = AppliedStateFile(path).load()
    assert applied == {} and warning is not None and "corrupt" in warning
    path.write_text("not json")
    assert "corrupt" in (AppliedStateFile(path).load()[1] or "")
