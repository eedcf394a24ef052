"""How the operator commands finish: exit codes, one-line errors, tables, JSON and YAML.

Exit codes (a contract, documented in docs/cli.md):

    0  ok
    1  the operation was refused or failed (compare-and-swap conflict, rollout refused,
       Predict failed, ...)
    2  bad input (usage, missing file, YAML/JSON/schema error, unknown model/host/version)
    3  etcd unreachable (or any other etcd error)

Every error is printed as ONE line on stderr, ``tfleet <command>: <what is wrong>`` (one line
per problem when a command reports several, e.g. every bad document of ``apply``), and never
as a traceback: ``OpsCommand``/``OpsGroup`` translate the core's exceptions at the edge.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import click
import yaml
from pydantic import BaseModel
from tabulate import tabulate

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3

FORMATS = ("table", "json", "yaml")

# Longest cell of a table column holding free text (errors, reasons); -o json has it all.
MAX_CELL = 70


def one_line(text: object) -> str:
    """Collapse any whitespace run (newlines included) to one space."""
    return " ".join(str(text).split())


class CommandError(click.ClickException):
    """An error of an operator command: one line per problem, and an exit code."""

    def __init__(self, message: str | Sequence[str], exit_code: int = EXIT_FAILED) -> None:
        lines = [message] if isinstance(message, str) else list(message)
        self.lines = [one_line(line) for line in lines if str(line).strip()] or ["failed"]
        super().__init__("; ".join(self.lines))
        # click declares exit_code a ClassVar (one code per exception class); a CommandError
        # carries the code of what went wrong, so it is set per instance (click reads e.exit_code).
        self.exit_code = exit_code  # type: ignore[misc]
        self.command_path = "tfleet"

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.lines:
            click.echo(f"{self.command_path}: {line}", err=True, file=file)


def refused(message: str | Sequence[str]) -> CommandError:
    return CommandError(message, EXIT_FAILED)


def bad_input(message: str | Sequence[str]) -> CommandError:
    return CommandError(message, EXIT_BAD_INPUT)


def command_path(ctx: click.Context | None, info_name: str | None = None) -> str:
    """``tfleet rollout start``, whatever the root was called (``python -m tfleet``, ``cli``)."""
    names = [info_name] if info_name else []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["tfleet", *reversed([n for n in names if n])])


def translate(exc: BaseException, path: str, ctx: click.Context | None = None) -> CommandError | None:
    """The CommandError for an exception of the core, or None to let it through."""
    # Imported here: `tfleet --help` must not pay for the etcd client.
    from tfleet.keyspace import InvalidName
    from tfleet.registry import ConflictError, RegistryError
    from tfleet.schema import SchemaError
    from tfleet.store import StoreError

    if isinstance(exc, click.exceptions.Exit | click.Abort):
        # --help, --version and ctx.exit(): click's normal ways out, not errors. They derive
        # from RuntimeError, so they must be let through before the catch-all below.
        return None
    if isinstance(exc, CommandError):
        error = exc
    elif isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return None  # click shows the help for `tfleet rollout` without a subcommand
    elif isinstance(exc, click.UsageError):
        hint = f" (see {path} --help)" if "--help" not in exc.format_message() else ""
        error = bad_input(exc.format_message() + hint)
    elif isinstance(exc, StoreError):
        from tfleet.cli.options import unreachable_message

        error = CommandError(unreachable_message(exc, ctx), EXIT_UNREACHABLE)  # names the etcd and its origin
    elif isinstance(exc, ConflictError):
        error = refused(str(exc))
    elif isinstance(exc, RegistryError | SchemaError | InvalidName):
        error = bad_input(str(exc))
    elif isinstance(exc, click.ClickException):
        error = CommandError(exc.format_message(), exc.exit_code)
    elif isinstance(exc, Exception):
        if os.environ.get("TFLEET_DEBUG"):
            return None  # let the traceback through
        error = refused(f"unexpected error: {type(exc).__name__}: {exc} (set TFLEET_DEBUG=1 for the traceback)")
    else:
        return None  # KeyboardInterrupt, SystemExit
    error.command_path = path
    return error


class _Translating(click.Command):
    """Mixin: errors in argument parsing and in the command body become one-line errors."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except Exception as exc:
            error = translate(exc, command_path(parent, info_name))
            if error is None or error is exc:
                raise
            raise error from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if isinstance(exc, CommandError) and exc.command_path != "tfleet":
                raise  # already translated by a subcommand
            error = translate(exc, command_path(ctx), ctx)
            if error is None or error is exc:
                raise
            raise error from None


class OpsCommand(_Translating, click.Command):
    pass


class OpsGroup(_Translating, click.Group):
    """A command group whose subcommands translate errors too; singular names work as well
    (``tfleet get model`` is ``tfleet get models``)."""

    command_class = OpsCommand

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or super().get_command(ctx, name + "s")


OpsGroup.group_class = OpsGroup


# -- values for people and for scripts ------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON types: pydantic models dumped, datetimes as RFC 3339 UTC, tuples as lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    return value


def format_time(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_size(size: int) -> str:
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover


def short(text: object, limit: int = MAX_CELL) -> str:
    flat = one_line(text) if text not in (None, "") else "-"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain table, kubectl style: upper-case headers, columns separated by spaces."""
    rows = [["-" if cell in (None, "") else cell for cell in row] for row in rows]
    return tabulate(rows, headers=[h.upper() for h in headers], tablefmt="plain", disable_numparse=True)


def emit(output: str, data: Any, human: Callable[[], str]) -> None:
    """Print ``data`` as JSON or YAML, or ``human()`` for ``-o table``."""
    if output == "json":
        click.echo(json.dumps(jsonable(data), indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(jsonable(data), sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n"))
    else:
        text = human()
        if text:
            click.echo(text)


def note(message: str) -> None:
    """A remark for people on stderr (never mixed into -o json output)."""
    click.echo(message, err=True)


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True, help="table for people; json or yaml for scripts.")(
        command
    )
