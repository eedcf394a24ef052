"""The `tfleet` console script: one click group, one module per command family.

Every option also reads a TFLEET_* environment variable (shown in --help).
"""

from __future__ import annotations

import importlib

import click

from tfleet import __version__

# (module, attribute) of each subcommand, imported lazily so that `tfleet agent` does not
# pay for the simulator's or the controller's imports.
_COMMANDS: dict[str, tuple[str, str]] = {
    "tfs-sim": ("tfleet.cli.tfs_sim", "tfs_sim"),
    "agent": ("tfleet.cli.agent", "agent"),
    "controller": ("tfleet.cli.controller", "controller"),
    "dev": ("tfleet.cli.dev", "dev"),
    # operator commands (tfleet/cli/ops/, one module per subject)
    **{
        name: (f"tfleet.cli.ops.{module}", name.replace("-", "_"))
        for module, names in (
            ("models", ("apply", "get", "describe", "explain")),
            ("status", ("status",)),
            ("history", ("history", "diff", "rollback")),
            ("versions", ("register",)),
            ("rollout", ("rollout",)),
            ("hosts", ("cordon", "uncordon", "drain")),
            ("watch", ("watch",)),
            ("predict", ("predict",)),
        )
        for name in names
    },
    "wait": ("tfleet.cli.wait", "wait"),
    "alerts": ("tfleet.cli.alerts", "alerts"),
    "routes": ("tfleet.cli.routes", "routes"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        command = getattr(importlib.import_module(target[0]), target[1])
        if not isinstance(command, click.Command):
            raise TypeError(f"{target[0]}.{target[1]} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="tfleet")
def cli() -> None:
    """tfleet: run fleets of TensorFlow Serving hosts through etcd."""


def main() -> None:
    cli(auto_envvar_prefix=None)
