"""Fixtures of the e2e suite."""

from tests.e2e.cli_support import keys, tf  # noqa: F401 (pytest fixtures of the test_cli_*.py files)
from tests.simfixtures import sim, sim_factory  # noqa: F401 (pytest fixtures)
