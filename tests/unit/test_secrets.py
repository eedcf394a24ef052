"""The etcd password never has to be on the command line (issue 8: it showed in ps), and is
never printed: it comes from TFLEET_ETCD_PASSWORD, --etcd-password-file, or the systemd
credential $CREDENTIALS_DIRECTORY/etcd-password."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tfleet.cli.options import etcd_options, etcd_settings

SECRET = "s3cret-Pa55"
HTTPS = "https://127.0.0.1:2379"


@click.command()
@etcd_options
def show(**options) -> None:
    settings = etcd_settings(options)
    click.echo(f"{settings!r} user={settings.user} same={settings.password == SECRET} none={settings.password is None}")


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(show, ["--etcd", HTTPS, "--etcd-user", "u", *args], env={"CREDENTIALS_DIRECTORY": "", **(env or {})})


def test_password_from_a_file(tmp_path) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET + "\n")
    result = run(["--etcd-password-file", str(path)])
    assert result.exit_code == 0, result.output
    assert "same=True" in result.output and SECRET not in result.output


def test_password_from_the_environment_without_a_warning() -> None:
    result = run([], env={"TFLEET_ETCD_PASSWORD": SECRET})
    assert result.exit_code == 0 and "same=True" in result.output
    assert "warning" not in result.output and SECRET not in result.output


def test_password_from_a_systemd_credential(tmp_path) -> None:
    (tmp_path / "etcd-password").write_text(SECRET)
    result = run([], env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "same=True" in result.output and SECRET not in result.output


def test_password_on_the_command_line_still_works_but_warns() -> None:
    result = run(["--etcd-password", SECRET])
    assert result.exit_code == 0 and "same=True" in result.output
    assert "visible to every local user" in result.output
    assert result.output.count(SECRET) == 0


@pytest.mark.parametrize("content, message", [("", "is empty"), (None, "cannot read")])
def test_unusable_password_files_are_usage_errors(tmp_path, content, message) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    result = run(["--etcd-password-file", str(path)])
    assert result.exit_code == 2 and message in result.output


def test_two_password_sources_are_refused(tmp_path) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET)
    result = run(["--etcd-password-file", str(path)], env={"TFLEET_ETCD_PASSWORD": SECRET})
    assert result.exit_code == 2 and "not both" in result.output and SECRET not in result.output


def test_no_password_without_a_source(tmp_path) -> None:
    result = CliRunner().invoke(show, ["--etcd", HTTPS], env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert result.exit_code == 0 and "none=True" in result.output
