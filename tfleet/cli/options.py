"""Options shared by every command that talks to etcd, and the one way settings errors are shown.

Each option also reads a TFLEET_* environment variable; the names are part of the CLI
contract (docs/operations.md) and appear in --help.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
        click.option("--etcd-password", envvar="TFLEET_ETCD_PASSWORD", show_envvar=True, help="Password of --etcd-user."),
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
            password=options.pop("etcd_password"),
        )
    except ValueError as exc:
        raise click.UsageError(f"invalid etcd settings: {exc}") from None


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
