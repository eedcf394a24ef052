"""Fixtures of the integration suite."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.integration.store_support import private_etcd, private_store  # noqa: F401 (pytest fixtures of test_store_*.py)
from tests.simfixtures import models_dir, sim, sim_factory  # noqa: F401 (pytest fixtures)
from tfleet.etcd_local import LocalEtcdCluster


@pytest.fixture
def etcd_cluster3() -> Iterator[LocalEtcdCluster]:
    """A private 3-member etcd cluster; its data dirs (WAL files are large) go at teardown."""
    base = tempfile.mkdtemp(prefix="tfleet-etcd3-")
    cluster = LocalEtcdCluster(base, 3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
