"""Options shared by every command that talks to etcd, and the one way settings errors are shown.

Each option also reads a TFLEET_* environment variable; the names are part of the CLI
contract (docs/operations.md) and appear in --help.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from tfleet.schema import explain


def etcd_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --etcd, the TLS/auth options and --etcd-timeout to a click command."""
    decorators = [
        click.option("--etcd", "etcd", envvar="TFLEET_ETCD_ENDPOINTS", show_envvar=True, default="http://127.0.0.1:2379",
                     help="etcd endpoints, URL[,URL...]; https:// for TLS."),
        click.option("--etcd-ca-cert", envvar="TFLEET_ETCD_CA_CERT", show_envvar=True, type=click.Path(dir_okay=False),
                     help="CA bundle that signed the etcd server certificates."),
        click.option("--etcd-cert", envvar="TFLEET_ETCD_CERT", show_envvar=True, type=click.Path(dir_okay=False),
                     help="Client certificate (the primary way to authenticate)."),
        click.option("--etcd-key", envvar="TFLEET_ETCD_KEY", show_envvar=True, type=click.Path(dir_okay=False),
                     help="Private key of the client certificate."),
        click.option("--etcd-user", envvar="TFLEET_ETCD_USER", show_envvar=True, help="etcd user (password auth needs https)."),
        click.option("--etcd-password", envvar="TFLEET_ETCD_PASSWORD", show_envvar=True,
                     help="Password of --etcd-user. Prefer the variable, --etcd-password-file or the systemd credential "
                          "'etcd-password': a value on the command line is visible to every local user (ps)."),
        click.option("--etcd-password-file", envvar="TFLEET_ETCD_PASSWORD_FILE", show_envvar=True, type=click.Path(dir_okay=False),
                     help="File holding the password of --etcd-user (one line). Without any password option, "
                          "$CREDENTIALS_DIRECTORY/etcd-password (systemd LoadCredential=) is used if it exists."),
        click.option("--etcd-timeout", envvar="TFLEET_ETCD_TIMEOUT", show_envvar=True, type=float, default=2.0,
                     help="Deadline of every etcd call, seconds."),
    ]
    return functools.reduce(lambda cmd, decorate: decorate(cmd), reversed(decorators), command)


def etcd_settings(options: dict[str, Any]):
    """Build EtcdSettings from the etcd_options values, or exit with one clear line."""
    from tfleet.store import EtcdSettings

    try:
        return EtcdSettings(
            endpoints=EtcdSettings.parse_endpoints(options.pop("etcd")),
            call_timeout=options.pop("etcd_timeout"),
            ca_cert=options.pop("etcd_ca_cert"),
            cert=options.pop("etcd_cert"),
            key=options.pop("etcd_key"),
            user=options.pop("etcd_user"),
            password=etcd_password(options.pop("etcd_password"), options.pop("etcd_password_file")),
        )
    except ValueError as exc:
        raise click.UsageError(f"invalid etcd settings: {exc}") from None


CREDENTIAL_NAME = "etcd-password"


def etcd_password(value: str | None, path: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The etcd password, from (in this order) --etcd-password / TFLEET_ETCD_PASSWORD,
    --etcd-password-file / TFLEET_ETCD_PASSWORD_FILE, or the systemd credential
    ``$CREDENTIALS_DIRECTORY/etcd-password``; None without any.

    A password given as a command-line flag works, with a warning: it shows in ps and in
    /proc/<pid>/cmdline to every local user. The password itself is never printed.
    """
    if value is not None and path is not None:
        raise click.UsageError("give the etcd password once: --etcd-password (TFLEET_ETCD_PASSWORD) or --etcd-password-file, not both")
    if value is not None:
        if _from_command_line("etcd_password"):
            click.echo("warning: --etcd-password on the command line is visible to every local user (ps); "
                       "use TFLEET_ETCD_PASSWORD, --etcd-password-file or a systemd credential", err=True)
        return value
    if path is None and environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        path = str(credential) if credential.is_file() else None
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"cannot read the etcd password file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise click.UsageError(f"the etcd password file {path} is empty")
    return password


def _from_command_line(name: str) -> bool:
    context = click.get_current_context(silent=True)
    if context is None:
        return False
    return context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def settings_error(exc: ValidationError) -> click.UsageError:
    return click.UsageError(f"invalid settings: {explain(exc)}")


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--label {pair!r} must have the form KEY=VALUE")
        labels[key] = value
    return labels
