"""Fixtures of the e2e suite."""

from tests.simfixtures import sim, sim_factory  # noqa: F401 (pytest fixtures)
