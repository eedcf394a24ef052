"""The context file of a running `tfleet dev` (tfleet/cli/context.py): who may remove it, and
that its prefix applies only together with its endpoints. Which etcd the commands then dial
is tests/integration/test_cli_which_etcd.py.
"""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from tfleet.cli.context import FleetContext, remove_context, write_context


def test_remove_only_removes_its_own(context_file) -> None:
    write_context(FleetContext("http://127.0.0.1:1", "/tfleet", 111, "/a"), context_file)
    remove_context(222, context_file)
    assert json.loads(context_file.read_text())["pid"] == 111
    remove_context(111, context_file)
    assert not context_file.exists()


def test_the_context_prefix_is_used_only_with_the_context_endpoints(context_file) -> None:
    import click

    from tfleet.cli.options import etcd_options, etcd_settings, fleet_prefix

    write_context(FleetContext("http://127.0.0.1:1", "/devfleet", os.getpid(), "/r"), context_file)
    seen = {}

    @click.command()
    @etcd_options
    @click.option("--prefix", default="/tfleet")
    def probe(prefix: str, **options) -> None:
        settings = etcd_settings(options)
        seen["endpoints"], seen["prefix"] = settings.endpoints, fleet_prefix(prefix)

    CliRunner().invoke(probe, [], catch_exceptions=False)
    assert seen == {"endpoints": ("http://127.0.0.1:1",), "prefix": "/devfleet"}
    CliRunner().invoke(probe, ["--etcd", "http://127.0.0.1:2"], catch_exceptions=False)
    assert seen["prefix"] == "/tfleet"  # another etcd: the context's prefix does not apply
    CliRunner().invoke(probe, ["--prefix", "/mine"], catch_exceptions=False)
    assert seen["prefix"] == "/mine"


def test_any_bytes_in_the_context_file_give_a_context_or_none(context_file) -> None:
    """Read as strictly as a value in etcd: never a traceback, no coercion, no pid that would
    make os.kill ask about a process group (0, -1) or overflow."""
    from tfleet.cli.context import read_context

    context_file.parent.mkdir(parents=True, exist_ok=True)
    for text in [
        "[" * 100_000,
        '{"endpoints": "x", "pid": 1e400}',
        '{"endpoints": "x", "pid": -1}',
        '{"endpoints": "x", "pid": "12"}',
        '{"endpoints": "x", "pid": 99999999999}',
        '{"endpoints": "a\\u0000b"}',
        b'{"endpoints": "\xff"}',
        '{"endpoints": "x", "endpoints": "y"}',
    ]:
        if isinstance(text, bytes):
            context_file.write_bytes(text)
        else:
            context_file.write_text(text)
        assert read_context(context_file) is None, text[:40]
    context_file.write_text('{"endpoints": "http://127.0.0.1:1", "pid": 0}')
    context = read_context(context_file)
    assert context is not None and context.prefix == "/tfleet" and not context.alive
