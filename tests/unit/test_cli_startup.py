"""Start-up errors of the daemons (issue item 7): every missing or invalid flag at once, one
line each, named by flag, without click's Usage/Try block or pydantic's "(document)"."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tfleet.cli.main import cli


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), prog_name="tfleet", env={"TFLEET_HOST": None, "TFLEET_HTTP_PORT": None, **(env or {})})


def lines(result) -> list[str]:
    return result.stderr.strip().splitlines()


def test_agent_names_every_missing_flag_at_once() -> None:
    result = run("agent")
    assert result.exit_code == 2
    assert lines(result) == [
        "tfleet agent: missing --host (or TFLEET_HOST)",
        "tfleet agent: missing --tfs-grpc (or TFLEET_TFS_GRPC)",
        "tfleet agent: missing --tfs-rest (or TFLEET_TFS_REST)",
        "tfleet agent: missing --http-port (or TFLEET_HTTP_PORT)",
    ]


def test_missing_and_invalid_flags_are_reported_together() -> None:
    result = run("controller", "--http-port", "eighty", "--lease-ttl", "x")
    assert result.exit_code == 2
    assert sorted(lines(result)) == [
        "tfleet controller: invalid --http-port: 'eighty' is not a valid integer.",
        "tfleet controller: invalid --lease-ttl: 'x' is not a valid integer.",
        "tfleet controller: missing --id (or TFLEET_CONTROLLER_ID)",
    ], result.stderr


def test_settings_rules_are_one_line_each_without_document_noise() -> None:
    result = run("agent", "--host", "h", "--tfs-grpc", "x", "--tfs-rest", "y", "--http-port", "1")
    assert result.exit_code == 2
    assert lines(result) == ["tfleet agent: --tfs-grpc 'x' must have the form HOST:PORT", "tfleet agent: --tfs-rest 'y' must have the form HOST:PORT"]
    result = run("controller", "--id", "c", "--http-port", "0", "--lease-ttl", "3", "--etcd-timeout", "5")
    assert result.exit_code == 2
    [line] = lines(result)
    assert line.startswith("tfleet controller: the etcd call timeout (5 s) must be shorter than the lease renew interval"), line
    assert "(document)" not in result.stderr and "Usage:" not in result.stderr and "Try " not in result.stderr


@pytest.mark.parametrize("command", ["agent", "controller", "tfs-sim"])
def test_no_usage_block_on_any_daemon(command: str) -> None:
    result = run(command, "--no-such-flag")
    assert result.exit_code == 2
    assert len(lines(result)) == 1 and lines(result)[0].startswith(f"tfleet {command}: No such option"), result.stderr


def test_daemons_never_read_the_dev_context_file(tmp_path, monkeypatch) -> None:
    from tfleet.cli.options import resolve_etcd

    context = tmp_path / "context.json"
    context.write_text('{"endpoints": "http://127.0.0.1:1", "prefix": "/dev", "pid": 1, "run_dir": "/x"}')
    monkeypatch.setenv("TFLEET_CONTEXT", str(context))
    assert resolve_etcd(None).endpoints == "http://127.0.0.1:1"  # the operator commands do
    assert resolve_etcd(None, use_context=False).endpoints == "http://127.0.0.1:2379"


def test_password_source_problems_are_listed_with_the_missing_flags(tmp_path) -> None:
    """The etcd password sources (--etcd-password-file, TFLEET_ETCD_PASSWORD, the systemd
    credential) are checked with the flags: one start-up error lists them all."""
    empty = tmp_path / "pw"
    empty.write_text("")
    result = run("agent", "--etcd-password-file", str(empty), env={"CREDENTIALS_DIRECTORY": ""})
    assert result.exit_code == 2
    assert f"tfleet agent: the etcd password file {empty} is empty" in lines(result)
    assert "tfleet agent: missing --host (or TFLEET_HOST)" in lines(result), result.stderr
    result = run("controller", "--etcd-password-file", str(empty), env={"TFLEET_ETCD_PASSWORD": "x", "CREDENTIALS_DIRECTORY": ""})
    assert sorted(lines(result)) == [
        "tfleet controller: give the etcd password once: --etcd-password (TFLEET_ETCD_PASSWORD) or --etcd-password-file, not both",
        "tfleet controller: missing --http-port (or TFLEET_HTTP_PORT)",
        "tfleet controller: missing --id (or TFLEET_CONTROLLER_ID)",
    ], result.stderr
