"""The suite cleans up after itself (issue item 8): each etcd's data (a 64 MB preallocated WAL
segment) is removed when its fixture ends, and passed tests keep no temp dir.

The first test leaves a private etcd behind for the fixture to tear down; the second, which
runs after it (tests run in file order), checks what the teardown left.
"""

from __future__ import annotations

import pathlib

import pytest

_made: dict[str, pathlib.Path] = {}


def test_a_private_etcd_writes_data(etcd_factory) -> None:
    server = etcd_factory()
    server.etcdctl("put", "/k", "v")
    assert (server.data_dir / "member" / "wal").is_dir()
    _made["data_dir"] = server.data_dir


def test_its_data_is_gone_after_the_fixture_and_its_log_stays(request: pytest.FixtureRequest) -> None:
    data_dir = _made.get("data_dir")
    if data_dir is None:
        pytest.skip("runs after test_a_private_etcd_writes_data (run the whole file)")
    assert not (data_dir / "member").exists(), "etcd data left behind by etcd_factory"
    assert (data_dir / "etcd.log").exists(), "the log is kept, for failed tests"


def test_passed_tests_keep_no_temp_dir(request: pytest.FixtureRequest) -> None:
    assert request.config.getini("tmp_path_retention_policy") == "failed"
