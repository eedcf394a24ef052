"""The simulator's state machine, driven by hand: no thread of its own, no real waiting.

The manager gets a fake clock and a fake sleep (which only records and advances the clock),
the file-system source is polled explicitly, and `drive()` runs the manage-state loop until
it has nothing left to do (tests/simhand.py). What is checked here is the decision logic;
reloads that wait for their versions are tests/integration/test_sim_reload_labels.py, the
threads and the wire tests/integration/simulator/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.simhand import FakeTime, core_parts, drive, events, fake_time, manager, reload_request, states  # noqa: F401 (pytest fixtures)
from tfleet.sim.fixtures import make_model, write_version
from tfleet.sim.manager import ModelManager
from tfleet.sim.modeldir import aspired_versions, parse_version, read_version
from tfleet.sim.policy import Action, HarnessState, Snapshot, model_action, next_action
from tfleet.sim.source import FileSystemSource, ServableToMonitor
from tfleet.sim.status import INVALID_ARGUMENT, NOT_FOUND, UNKNOWN, SimError
from tfleet.tfs.pb import model_management_pb2
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy, VersionState

N, L, R, D, E = HarnessState.NEW, HarnessState.LOADING, HarnessState.READY, HarnessState.DISABLED, HarnessState.ERROR


# ---------------------------------------------------------------------------- policy
@pytest.mark.parametrize(
    ("snapshots", "expected"),
    [
        ([], None),
        ([Snapshot(1, N, True)], Action("load", "m", 1)),
        ([Snapshot(1, N, True), Snapshot(3, N, True), Snapshot(2, N, True)], Action("load", "m", 3)),
        # a new version is loaded before the old one goes
        ([Snapshot(1, R, False), Snapshot(2, N, True)], Action("load", "m", 2)),
        ([Snapshot(1, R, False), Snapshot(2, L, True)], None),
        ([Snapshot(1, R, False), Snapshot(2, R, True)], Action("unload", "m", 1)),
        # the new version failed: the old one keeps serving
        ([Snapshot(1, R, False), Snapshot(2, E, True)], None),
        # nothing aspired any more: unload, lowest first
        ([Snapshot(2, R, False), Snapshot(1, R, False)], Action("unload", "m", 1)),
        # two un-aspired versions serve: one may go even though the new one is not ready
        ([Snapshot(1, R, False), Snapshot(2, R, False), Snapshot(3, L, True)], Action("unload", "m", 1)),
        ([Snapshot(1, D, False), Snapshot(2, R, True)], None),
    ],
)
def test_availability_preserving_policy(snapshots: list[Snapshot], expected: Action | None) -> None:
    assert model_action("m", snapshots) == expected


def test_unloads_go_before_loads_across_models() -> None:
    chosen = next_action({"a": [Snapshot(1, N, True)], "b": [Snapshot(1, R, False)]})
    assert chosen == Action("unload", "b", 1)


# ---------------------------------------------------------------------------- disk
@pytest.mark.parametrize(
    ("name", "version"),
    [("1", 1), ("007", 7), (" 3 ", 3), ("-2", -2), ("1a", None), ("v1", None), ("", None), ("9" * 30, None)],
)
def test_version_directory_names(name: str, version: int | None) -> None:
    assert parse_version(name) == version


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), [10]),
        (VersionPolicy("latest", num_versions=2), [10, 9]),
        (VersionPolicy("latest", num_versions=0), [10]),
        (VersionPolicy("all"), [1, 2, 9, 10]),
        (VersionPolicy("specific", versions=(2, 5)), [2]),
    ],
)
def test_aspired_versions_per_policy(policy: VersionPolicy, expected: list[int]) -> None:
    children = ["1", "2", "9", "10", "tmp", "checkpoint-3"]
    assert sorted(aspired_versions(policy, children), reverse=policy.kind == "latest") == expected


def test_read_version(tmp_path: Path) -> None:
    path = write_version(tmp_path, 1, load_seconds=0.5, scale=2.0, memory_mb=64)
    spec = read_version(path)
    assert (spec.load_seconds, spec.scale, spec.memory_mb, spec.fail) == (0.5, 2.0, 64, False)
    (tmp_path / "2").mkdir()
    with pytest.raises(SimError) as missing:
        read_version(tmp_path / "2")
    assert missing.value.status.code == NOT_FOUND
    (path / "sim.json").write_text(json.dumps({"laod_seconds": 1}))
    with pytest.raises(SimError) as typo:
        read_version(path)
    assert typo.value.status.code == INVALID_ARGUMENT and "laod_seconds" in typo.value.status.message


# ---------------------------------------------------------------------------- source
def test_missing_base_path_fails_the_whole_poll(tmp_path: Path) -> None:
    calls: list[tuple[str, dict]] = []
    problems: list[str] = []
    source = FileSystemSource(lambda name, versions: calls.append((name, dict(versions))), problems.append)
    make_model(tmp_path, "ok", [1])
    source.update_config([ServableToMonitor("ok", str(tmp_path / "ok"), VersionPolicy()), ServableToMonitor("late", str(tmp_path / "late"), VersionPolicy())])
    assert source.poll() is False
    assert calls == [], "one missing base_path: nothing is emitted for any model"
    assert len(problems) == 1 and "late" in problems[0]
    assert source.poll() is False and len(problems) == 1, "the same problem is reported once"
    make_model(tmp_path, "late", [4])
    assert source.poll() is True
    assert calls == [("ok", {1: tmp_path / "ok" / "1"}), ("late", {4: tmp_path / "late" / "4"})]


def test_left_out_model_is_unaspired_at_once_and_empty_dir_emits_nothing(tmp_path: Path) -> None:
    calls: list[tuple[str, dict]] = []
    source = FileSystemSource(lambda name, versions: calls.append((name, dict(versions))))
    (tmp_path / "empty").mkdir()
    source.update_config([ServableToMonitor("gone", "/x", VersionPolicy()), ServableToMonitor("empty", str(tmp_path / "empty"), VersionPolicy())])
    source.update_config([ServableToMonitor("empty", str(tmp_path / "empty"), VersionPolicy())])
    assert calls == [("gone", {})]
    assert source.poll() is True
    assert calls[-1] == ("empty", {})


# ---------------------------------------------------------------------------- manager
def test_load_then_rollover_keeps_a_version_available(manager: ModelManager, events: list, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1, 2], load_seconds=2.0)
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    assert states(manager, "m") == {1: "AVAILABLE"}
    events.clear()
    manager.set_aspired("m", {2: model / "2"})
    drive(manager)
    assert events == [
        ("m", 2, VersionState.START),
        ("m", 2, VersionState.LOADING),
        ("m", 2, VersionState.AVAILABLE),  # the new version serves ...
        ("m", 1, VersionState.UNLOADING),  # ... before the old one goes
        ("m", 1, VersionState.END),
    ]
    assert manager.serving("m").version == 2  # type: ignore[union-attr]
    assert manager.serving("m", 1) is None


def test_failed_load_is_retried_then_left_in_end(manager: ModelManager, fake_time: FakeTime, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1], fail_versions=[1], fail_code=13)
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    entry = manager.version_states("m")[1]
    assert entry.state is VersionState.END
    assert (entry.status.code, entry.status.message) == (13, "simulated load failure of version 1")
    assert fake_time.sleeps == [60.0, 60.0], "1 attempt + max_load_retries=2 retries, 60 s apart"
    manager.set_aspired("m", {1: model / "1"})  # the same aspired set again
    drive(manager)
    assert fake_time.sleeps == [60.0, 60.0], "a failed version is not retried while it stays aspired"
    manager.set_aspired("m", {})
    drive(manager)
    write_version(model, 1)  # repaired
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    assert states(manager, "m") == {1: "AVAILABLE"}, "un-aspired then re-aspired: loaded again"


def test_failed_new_version_leaves_the_old_one_serving(manager: ModelManager, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1, 2], fail_versions=[2])
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    manager.set_aspired("m", {2: model / "2"})
    drive(manager)
    assert states(manager, "m") == {1: "AVAILABLE", 2: "END"}
    assert manager.serving("m").version == 1  # type: ignore[union-attr]


def test_version_recovering_within_its_retries(manager: ModelManager, fake_time: FakeTime, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1], fail_attempts=2)
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    assert states(manager, "m") == {1: "AVAILABLE"}
    assert fake_time.sleeps == [60.0, 60.0]


def test_wait_models_reports_like_the_real_server(manager: ModelManager, tmp_path: Path) -> None:
    good = make_model(tmp_path, "good", [1])
    bad = make_model(tmp_path, "bad", [3], fail_versions=[3], fail_message="corrupt")
    since = manager.seq()
    assert manager.wait_models(["good"], since, timeout=0) is None, "nothing happened yet"
    manager.set_aspired("good", {1: good / "1"})
    manager.set_aspired("bad", {3: bad / "3"})
    drive(manager)
    assert manager.wait_models(["good"], since, timeout=0).ok  # type: ignore[union-attr]
    failed = manager.wait_models(["good", "bad"], since, timeout=0)
    assert failed is not None and failed.code == UNKNOWN
    assert failed.message == ("1 model(s) did not become available: {{{name: bad version: 3} due to error: UNKNOWN: corrupt}, }")
    assert manager.wait_models(["good"], manager.seq(), timeout=0) is None, "only changes after `since` count"


def test_reaspired_version_waits_until_torn_down(manager: ModelManager, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1, 2], fail_versions=[2])
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    manager.set_aspired("m", {2: model / "2"})  # 2 fails; 1 is kept serving, un-aspired
    drive(manager)
    manager.set_aspired("m", {1: model / "1"})  # 1 is re-aspired while still loaded
    drive(manager)
    # Like the real manager, the request waits for version 1 to go first, which the
    # availability-preserving policy never allows: version 1 keeps serving, as in TF Serving.
    assert states(manager, "m") == {1: "AVAILABLE", 2: "END"}


def test_monitor_times_come_from_the_injected_clock(manager: ModelManager, fake_time: FakeTime, tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", [1], load_seconds=5.0)
    manager.set_aspired("m", {1: model / "1"})
    drive(manager)
    assert manager.version_states("m")[1].time == 1005.0


# ---------------------------------------------------------------------------- core (reload rules)
def test_reload_rejections(core_parts) -> None:
    core, _, _ = core_parts
    no_config = core.reload(model_management_pb2.ReloadConfigRequest())
    assert no_config.code == INVALID_ARGUMENT and "Only ModelConfigList" in no_config.message
    twice = core.reload(reload_request(ModelConfigSpec("m", "/a"), ModelConfigSpec("m", "/b")))
    assert (twice.code, twice.message) == (INVALID_ARGUMENT, "Illegal to list model m multiple times in config list")
    relative = core.reload(reload_request(ModelConfigSpec("m", "models/m")))
    assert relative.code == INVALID_ARGUMENT and "absolute path" in relative.message
    platform = core.reload(reload_request(ModelConfigSpec("m", "/m", model_platform="pytorch")))
    assert (platform.code, platform.message) == (INVALID_ARGUMENT, "Model m requests unsupported platform pytorch")
