"""Fixtures shared by all suites: a real etcd (never a mock) and a store on it.

Suite-specific fixtures belong in the suite's own conftest.py (e.g. tests/integration/).
"""

from __future__ import annotations

import itertools
import pathlib
import re
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


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    """One etcd for the whole run; tests keep apart through the `prefix` fixture.

    Tests that stop, pause, compact or reconfigure etcd must use etcd_factory instead.
    """
    server = LocalEtcd(tmp_path_factory.mktemp("etcd-session"), unsafe_no_fsync=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def etcd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalEtcd]]:
    """Start private etcd instances: etcd_factory(start=True, **LocalEtcd keyword args).

    Every instance made here is stopped at teardown, also after a failed test.
    """
    made: list[LocalEtcd] = []

    def make(start: bool = True, **kwargs: Any) -> LocalEtcd:
        kwargs.setdefault("unsafe_no_fsync", True)
        data_dir = kwargs.pop("data_dir", None) or tmp_path_factory.mktemp("etcd")
        server = LocalEtcd(pathlib.Path(data_dir), **kwargs)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.stop()


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
