"""Every command of the `tfleet` tree answers --help with its usage and exit code 0.

Walks the whole click tree (lazy top-level commands, every group, every subcommand), so a
command added later is covered without touching this test. Pins issue item 1: `--help` on
the operator commands printed the help, then "unexpected error: Exit: 0", and exited 1.
`-h` in a fresh process is tests/integration/test_cli_help_process.py.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tfleet.cli.main import cli


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else "tfleet")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path + (name,))} is listed but cannot be loaded"
            paths += _walk(sub, path + (name,))
    return paths


ALL_PATHS = _walk(cli)


def test_the_tree_is_walked() -> None:
    names = {" ".join(p) for p in ALL_PATHS}
    # groups, leaves, and nested groups are all reached
    assert {"", "get", "get models", "rollout", "rollout promote", "alerts render", "routes render", "agent", "dev"} <= names
    assert len(ALL_PATHS) > 30


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: " ".join(p) or "tfleet")
def test_help_exits_zero_with_usage(path: tuple[str, ...]) -> None:
    _check_help(path, "--help")


def _check_help(path: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(cli, [*path, flag], prog_name="tfleet")
    assert result.exit_code == 0, f"tfleet {' '.join(path)} {flag} exited {result.exit_code}: {result.output}"
    assert result.output.startswith(f"Usage: tfleet {' '.join(path)}".rstrip()), result.output[:200]
    assert "error" not in result.stderr.lower(), result.stderr
