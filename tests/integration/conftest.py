"""Fixtures of the integration suite."""

from tests.simfixtures import models_dir, sim, sim_factory  # noqa: F401 (pytest fixtures)
