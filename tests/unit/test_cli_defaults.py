"""One default per setting: a daemon's command-line option says the same default as the
settings model it fills. The CLI writes its defaults out (it imports a daemon's packages
only when that daemon starts), so the two could drift apart; the settings take theirs from
the modules that use them (controller/resync.py's FULL_PLAN_EVERY and RATE_MAX)."""

from __future__ import annotations

import click
import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tfleet.agent.settings import AgentSettings
from tfleet.cli.agent import agent
from tfleet.cli.controller import controller
from tfleet.controller.resync import FULL_PLAN_EVERY, RATE_MAX
from tfleet.controller.settings import ControllerSettings

_UNSET = getattr(click.core, "UNSET", None)  # (click 8.2+: an option without a default)


def _default(option: click.Option) -> object:
    return None if option.default is _UNSET else option.default


def drift(command: click.Command, settings: type[BaseModel]) -> list[str]:
    """Each option named like a settings field whose default says otherwise. An option
    without a default (None) leaves the field's own default to apply (the commands drop
    options that were not given); a field built by a factory (the machine's memory, a state
    directory) must have no default in the CLI."""
    fields = settings.model_fields
    found = []
    for param in command.params:
        if not isinstance(param, click.Option) or param.name not in fields:
            continue
        field, default, flag = fields[param.name], _default(param), param.opts[0]
        if field.default_factory is not None:
            if default not in (None, ()):
                found.append(f"{flag}: {default!r} in the CLI, a factory in {settings.__name__}")
        elif field.default is not PydanticUndefined and default is not None and default != field.default:
            found.append(f"{flag}: {default!r} in the CLI, {field.default!r} in {settings.__name__}")
    return found


@pytest.mark.parametrize(("command", "settings"), [(controller, ControllerSettings), (agent, AgentSettings)], ids=["controller", "agent"])
def test_each_option_defaults_to_its_setting(command: click.Command, settings: type[BaseModel]) -> None:
    assert drift(command, settings) == []


def test_the_comparison_covers_the_settings_and_sees_a_drift() -> None:
    # (most of the controller's settings have an option: the test is not vacuous)
    covered = {p.name for p in controller.params if isinstance(p, click.Option)} & ControllerSettings.model_fields.keys()
    assert {"lease_ttl", "full_plan_interval", "full_plan_rate", "history_keep", "tfs_unresponsive_grace"} <= covered
    drifted = click.Command("controller", params=[click.Option(["--full-plan-rate"], default=300.0), click.Option(["--history-keep"], default=100)])
    assert drift(drifted, ControllerSettings) == ["--full-plan-rate: 300.0 in the CLI, 250.0 in ControllerSettings"]


def test_the_nets_defaults_are_the_resync_modules() -> None:
    fields = ControllerSettings.model_fields
    assert (fields["full_plan_interval"].default, fields["full_plan_rate"].default) == (FULL_PLAN_EVERY, RATE_MAX)
