"""Fixtures shared by all suites: a real etcd (never a mock) and a store on it.

Suite-specific fixtures belong in the suite's own conftest.py (e.g. tests/integration/).
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tfleet.etcd_local import LocalEtcd
from tfleet.store import EtcdSettings, EtcdStore

# Tests import shared code as `tests.helpers`; `python -m pytest` puts the repository root
# on sys.path, a bare `pytest` does not. This makes both behave the same.
_ROOT = str(pathlib.Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def pytest_configure(config: pytest.Config) -> None:
    # The CLI reads the context file of a running `tfleet dev` (tfleet/cli/context.py); a
    # developer's own fleet must never leak into the tests, nor the tests' into theirs. Set
    # in os.environ so that the subprocesses the tests start inherit it; tests that want a
    # context file point TFLEET_CONTEXT at their own tmp_path.
    os.environ["TFLEET_CONTEXT"] = "/nonexistent/tfleet-tests-use-no-context-file.json"


@pytest.fixture
def context_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A context file path of this test's own (TFLEET_CONTEXT), not written yet; no
    TFLEET_ETCD_ENDPOINTS, so the context file is what the CLI would go by."""
    path = tmp_path / "tfleet" / "context.json"
    monkeypatch.setenv("TFLEET_CONTEXT", str(path))
    monkeypatch.delenv("TFLEET_ETCD_ENDPOINTS", raising=False)
    return path


def _remove_data(server: LocalEtcd) -> None:
    """Delete a stopped etcd's data (its log stays, for failed tests): etcd preallocates a 64 MB
    WAL segment per member, so keeping them made one run of the suite leave ~1 GB behind."""
    shutil.rmtree(server.data_dir / "member", ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    """One etcd for the whole run; tests keep apart through the `prefix` fixture.

    Tests that stop, pause, compact or reconfigure etcd must use etcd_factory instead.
    """
    server = LocalEtcd(tmp_path_factory.mktemp("etcd-session"), unsafe_no_fsync=True)
    server.start()
    yield server
    server.stop()
    _remove_data(server)


@pytest.fixture
def etcd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalEtcd]]:
    """Start private etcd instances: etcd_factory(start=True, **LocalEtcd keyword args).

    Every instance made here is stopped at teardown, also after a failed test.
    """
    made: list[tuple[LocalEtcd, bool]] = []

    def make(start: bool = True, **kwargs: Any) -> LocalEtcd:
        kwargs.setdefault("unsafe_no_fsync", True)
        given = kwargs.pop("data_dir", None)
        server = LocalEtcd(pathlib.Path(given or tmp_path_factory.mktemp("etcd")), **kwargs)
        made.append((server, given is None))
        if start:
            server.start()
        return server

    yield make
    for server, ours in made:
        server.stop()
        if ours:  # a data_dir the test passed in is the test's to keep or remove
            _remove_data(server)


@pytest.fixture(scope="session")
def _prefix_numbers() -> Iterator[int]:
    return itertools.count(1)


@pytest.fixture
def prefix(request: pytest.FixtureRequest, _prefix_numbers: Iterator[int]) -> str:
    """A key prefix of this test alone, like "/t/test_crud-7/".

    It ends with "/" so that one test's prefix is never a prefix of another's
    ("/t/x-1/" does not cover "/t/x-10/").
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:60]
    return f"/t/{name}-{next(_prefix_numbers)}/"


@pytest.fixture
def store(etcd_server: LocalEtcd) -> Iterator[EtcdStore]:
    """An EtcdStore on the session etcd, closed at teardown."""
    etcd_store = EtcdStore(EtcdSettings((etcd_server.client_url,)))
    yield etcd_store
    etcd_store.close()
