"""The simulator's reload rules for version labels, which only a reload that waits for its
versions can show: the reload runs in a thread while the test plays the file-system poller and
the manager's loop by hand (tests/simhand.py), so nothing waits for real time.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tests.simhand import core_parts, drive, events, fake_time, manager, reload_request  # noqa: F401 (pytest fixtures)
from tfleet.sim.core import SimCore
from tfleet.sim.fixtures import make_model
from tfleet.sim.manager import ModelManager
from tfleet.sim.source import FileSystemSource
from tfleet.sim.status import FAILED_PRECONDITION
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy


def reload_driven(core: SimCore, source: FileSystemSource, manager: ModelManager, request) -> object:
    """Run a reload in a thread while playing the poller and the manage-state loop by hand."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(core.reload(request)))
    thread.start()
    for _ in range(500):
        source.poll()
        drive(manager)
        thread.join(0.01)
        if not thread.is_alive():
            return result[0]
    manager.stop()
    raise AssertionError("reload did not finish")


def test_labels_need_available_versions_and_a_failed_check_changes_nothing(core_parts, tmp_path: Path) -> None:
    core, source, manager = core_parts
    make_model(tmp_path, "m", [1, 2])
    base = str(tmp_path / "m")
    labelled = ModelConfigSpec("m", base, model_version_policy=VersionPolicy("specific", versions=(1,)), version_labels=(("stable", 1),))
    refused = core.reload(reload_request(labelled))
    assert refused.code == FAILED_PRECONDITION
    assert refused.message == ("Request to assign label to version 1 of model m, which is not currently available for inference")
    assert source.names() == set(), "the refused reload did not touch the models"
    plain = ModelConfigSpec("m", base, model_version_policy=VersionPolicy("specific", versions=(1,)))
    assert reload_driven(core, source, manager, reload_request(plain)).ok  # type: ignore[attr-defined]
    assert core.reload(reload_request(labelled)).ok
    assert core.label_version("m", "stable") == 1
    both = ModelConfigSpec("m", base, model_version_policy=VersionPolicy("specific", versions=(1, 2)), version_labels=(("stable", 2),))
    assert core.reload(reload_request(both)).code == FAILED_PRECONDITION
    assert core.label_version("m", "stable") == 1


def test_labels_for_unavailable_models_flag(manager: ModelManager, tmp_path: Path) -> None:
    source = FileSystemSource(manager.set_aspired)
    core = SimCore(manager, source, allow_labels_for_unavailable=True)
    make_model(tmp_path, "m", [1, 2])
    spec = ModelConfigSpec("m", str(tmp_path / "m"), model_version_policy=VersionPolicy("all"), version_labels=(("stable", 1),))
    assert reload_driven(core, source, manager, reload_request(spec)).ok  # type: ignore[attr-defined]
    # Moving an EXISTING label still needs the target to be AVAILABLE: version 7 is not.
    moved = ModelConfigSpec("m", str(tmp_path / "m"), model_version_policy=VersionPolicy("all"), version_labels=(("stable", 7),))
    assert core.reload(reload_request(moved)).code == FAILED_PRECONDITION
