"""Options shared by every command that talks to etcd, and the one way settings errors are shown.

Each option also reads a TFLEET_* environment variable; the names are part of the CLI
contract (docs/operations.md) and appear in --help.

Which etcd: ``--etcd`` > ``TFLEET_ETCD_ENDPOINTS`` > the context file of a running
`tfleet dev` (tfleet/cli/context.py; operator commands only) > ``http://127.0.0.1:2379``.
Where the endpoints came from is kept in the click context (``etcd_origin``), so that every
"etcd unreachable" error can say which etcd it talked to and why that one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from pydantic import ValidationError

if TYPE_CHECKING:
    from tfleet.store import EtcdSettings

DEFAULT_ETCD = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/tfleet"
_ORIGIN = "tfleet.etcd_origin"


def etcd_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --etcd, the TLS/auth options and --etcd-timeout to a click command."""
    decorators = [
        click.option(
            "--etcd",
            "etcd",
            envvar="TFLEET_ETCD_ENDPOINTS",
            show_envvar=True,
            show_default=f"the running `tfleet dev` (context file), else {DEFAULT_ETCD}",
            help="etcd endpoints, URL[,URL...]; https:// for TLS.",
        ),
        click.option(
            "--etcd-ca-cert",
            envvar="TFLEET_ETCD_CA_CERT",
            show_envvar=True,
            type=click.Path(dir_okay=False),
            help="CA bundle that signed the etcd server certificates.",
        ),
        click.option(
            "--etcd-cert",
            envvar="TFLEET_ETCD_CERT",
            show_envvar=True,
            type=click.Path(dir_okay=False),
            help="Client certificate (the primary way to authenticate).",
        ),
        click.option("--etcd-key", envvar="TFLEET_ETCD_KEY", show_envvar=True, type=click.Path(dir_okay=False), help="Private key of the client certificate."),
        click.option("--etcd-user", envvar="TFLEET_ETCD_USER", show_envvar=True, help="etcd user (password auth needs https)."),
        click.option(
            "--etcd-password",
            envvar="TFLEET_ETCD_PASSWORD",
            show_envvar=True,
            help="Password of --etcd-user. Prefer the variable, --etcd-password-file or the systemd credential "
            "'etcd-password': a value on the command line is visible to every local user (ps).",
        ),
        click.option(
            "--etcd-password-file",
            envvar="TFLEET_ETCD_PASSWORD_FILE",
            show_envvar=True,
            type=click.Path(dir_okay=False),
            help="File holding the password of --etcd-user (one line). Without any password option, "
            "$CREDENTIALS_DIRECTORY/etcd-password (systemd LoadCredential=) is used if it exists.",
        ),
        click.option("--etcd-timeout", envvar="TFLEET_ETCD_TIMEOUT", show_envvar=True, type=float, default=2.0, help="Deadline of every etcd call, seconds."),
    ]
    return functools.reduce(lambda cmd, decorate: decorate(cmd), reversed(decorators), command)


@dataclass(frozen=True)
class EtcdOrigin:
    """Which etcd a command talks to, where that came from, and the fleet prefix that goes with it."""

    endpoints: str
    source: str  # "--etcd", "TFLEET_ETCD_ENDPOINTS", "context file PATH ...", "default"
    prefix: str | None = None  # the context file's prefix (only when the endpoints came from it)

    def describe(self) -> str:
        if self.source == "default":
            return (
                f"etcd {self.endpoints} (the default: no --etcd, no TFLEET_ETCD_ENDPOINTS, no running `tfleet dev`; "
                "start one with `tfleet dev`, or pass --etcd)"
            )
        return f"etcd {self.endpoints} (from {self.source})"


def resolve_etcd(value: str | None, *, use_context: bool = True) -> EtcdOrigin:
    """The endpoints to use and their origin; ``value`` is the --etcd option's value."""
    from tfleet.cli.context import context_path, read_context

    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("etcd") if ctx is not None else None
    if value and source == ParameterSource.ENVIRONMENT:
        return EtcdOrigin(value, "TFLEET_ETCD_ENDPOINTS")
    if value:
        return EtcdOrigin(value, "--etcd")
    if use_context:
        path = context_path()
        context = read_context(path)
        if context is not None:
            state = "" if context.alive else f"; its `tfleet dev` (pid {context.pid}) is no longer running"
            return EtcdOrigin(context.endpoints, f"context file {path}, written by `tfleet dev` (run dir {context.run_dir}){state}", context.prefix)
    return EtcdOrigin(DEFAULT_ETCD, "default")


def etcd_origin(ctx: click.Context | None = None) -> EtcdOrigin | None:
    """The origin recorded by etcd_settings for this command, if any."""
    ctx = ctx or click.get_current_context(silent=True)
    return ctx.meta.get(_ORIGIN) if ctx is not None else None


def unreachable_message(exc: BaseException, ctx: click.Context | None = None) -> str:
    """ "etcd unreachable: <what failed> -- talked to etcd URL (from SOURCE)"."""
    origin = etcd_origin(ctx)
    where = f" -- talked to {origin.describe()}" if origin is not None else ""
    return f"etcd unreachable: {exc}{where}"


def etcd_settings(options: dict[str, Any], *, use_context: bool = True) -> EtcdSettings:
    """Build EtcdSettings from the etcd_options values, or exit with one clear line.

    use_context=False for daemons: they never read the context file of `tfleet dev`.
    """
    from tfleet.store import EtcdSettings

    origin = resolve_etcd(options.pop("etcd"), use_context=use_context)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_ORIGIN] = origin
    try:
        return EtcdSettings(
            endpoints=EtcdSettings.parse_endpoints(origin.endpoints),
            call_timeout=options.pop("etcd_timeout"),
            ca_cert=options.pop("etcd_ca_cert"),
            cert=options.pop("etcd_cert"),
            key=options.pop("etcd_key"),
            user=options.pop("etcd_user"),
            password=etcd_password(options.pop("etcd_password"), options.pop("etcd_password_file")),
        )
    except ValueError as exc:
        raise click.UsageError(f"invalid etcd settings: {exc} (from {origin.source})") from None


def fleet_prefix(value: str) -> str:
    """The --prefix to use: the option's value, or the context file's prefix when the option was
    left at its default and the endpoints came from that file too (call after etcd_settings)."""
    ctx = click.get_current_context(silent=True)
    origin = etcd_origin(ctx)
    if ctx is not None and origin is not None and origin.prefix and ctx.get_parameter_source("prefix") == ParameterSource.DEFAULT:
        return origin.prefix
    return value


# -- daemons: every start-up problem at once, one line each ---------------------------------------


class StartupError(click.ClickException):
    """Start-up problems of a daemon: ``tfleet agent: <problem>`` per line, exit code 2."""

    exit_code = 2

    def __init__(self, command: str, problems: list[str]) -> None:
        self.command = command
        self.problems = [" ".join(p.split()) for p in problems] or ["invalid start-up settings"]
        super().__init__("; ".join(self.problems))

    def show(self, file: IO[Any] | None = None) -> None:
        for problem in self.problems:
            click.echo(f"{self.command}: {problem}", err=True, file=file)


_PROBLEMS = "tfleet.startup_problems"


class _CollectingOption(click.Option):
    """An option that records a missing or invalid value instead of stopping at the first."""

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:  # MissingParameter is a BadParameter
            if ctx.resilient_parsing:
                raise
            ctx.meta.setdefault(_PROBLEMS, []).append(_option_problem(self, exc))
            return None


def _option_problem(option: click.Option, exc: click.BadParameter) -> str:
    flag = max(option.opts, key=len)
    envvar = f" (or {option.envvar})" if isinstance(option.envvar, str) else ""
    if isinstance(exc, click.MissingParameter):
        return f"missing {flag}{envvar}"
    return f"invalid {flag}: {exc.message}"


class DaemonCommand(click.Command):
    """A long-running command (agent, controller, simulator, dev): its start-up errors name
    every missing or invalid flag at once, one line each, without click's Usage/Try block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is click.Option:
                param.__class__ = _CollectingOption  # same state, one overridden method

    def _path(self, ctx: click.Context) -> str:
        from tfleet.cli.output import command_path

        return command_path(ctx)  # "tfleet routes render", however the root was called

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            rest = super().parse_args(ctx, args)
        except click.UsageError as exc:  # an unknown option, an extra argument
            raise StartupError(self._path(ctx), [*ctx.meta.get(_PROBLEMS, []), exc.format_message()]) from None
        problems = ctx.meta.get(_PROBLEMS, [])
        if "etcd_password_file" in ctx.params:  # the password sources are checked with the flags
            problems = [*problems, *password_problems(ctx.params.get("etcd_password"), ctx.params.get("etcd_password_file"))[1]]
        if problems:
            raise StartupError(self._path(ctx), problems)
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StartupError:
            raise
        except click.UsageError as exc:
            raise StartupError(self._path(ctx), exc.format_message().splitlines()) from None


CREDENTIAL_NAME = "etcd-password"


def etcd_password(value: str | None, path: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The etcd password, from (in this order) --etcd-password / TFLEET_ETCD_PASSWORD,
    --etcd-password-file / TFLEET_ETCD_PASSWORD_FILE, or the systemd credential
    ``$CREDENTIALS_DIRECTORY/etcd-password``; None without any.

    A password given as a command-line flag works, with a warning: it shows in ps and in
    /proc/<pid>/cmdline to every local user. The password itself is never printed.
    """
    password, problems = password_problems(value, path, environ)
    if problems:
        raise click.UsageError("\n".join(problems))
    if value is not None and _from_command_line("etcd_password"):
        click.echo(
            "warning: --etcd-password on the command line is visible to every local user (ps); "
            "use TFLEET_ETCD_PASSWORD, --etcd-password-file or a systemd credential",
            err=True,
        )
    return password


def password_problems(value: str | None, path: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str | None, list[str]]:
    """(the password, what is wrong with its sources): what etcd_password decides, without
    raising, so that a daemon (DaemonCommand) lists these problems with its other flags'."""
    if value is not None and path is not None:
        return None, ["give the etcd password once: --etcd-password (TFLEET_ETCD_PASSWORD) or --etcd-password-file, not both"]
    if value is not None:
        return value, []
    if path is None and environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        path = str(credential) if credential.is_file() else None
    if path is None:
        return None, []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"cannot read the etcd password file {path}: {getattr(exc, 'strerror', None) or exc}"]
    password = text.rstrip("\r\n")
    if not password:
        return None, [f"the etcd password file {path} is empty"]
    return password, []


def _from_command_line(name: str) -> bool:
    context = click.get_current_context(silent=True)
    if context is None:
        return False
    return context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def settings_error(exc: ValidationError) -> click.UsageError:
    """The problems of a settings model, one per line, named by flag (never "(document)")."""
    return click.UsageError("\n".join(settings_problems(exc)))


def settings_problems(exc: ValidationError) -> list[str]:
    problems = []
    for item in exc.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        loc = [str(part) for part in item["loc"]]
        flag = "--" + "-".join(loc).replace("_", "-") if loc else ""
        if loc[:1] == ["etcd"]:
            rest = "-".join(loc[1:2]).replace("call_timeout", "timeout").replace("_", "-")
            flag = "--etcd" if rest in ("", "endpoints") else f"--etcd-{rest}"
        if item["type"] == "missing":
            problems.append(f"missing {flag}")
        else:
            problems.append(message if not flag or flag in message else f"invalid {flag}: {message}")
    return problems


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--label {pair!r} must have the form KEY=VALUE")
        labels[key] = value
    return labels
