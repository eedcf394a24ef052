"""`tfleet routes render`: proxy configuration from the route tables in etcd.

Reads ``<prefix>/routes/`` and writes nginx upstreams (one include file) or Envoy
ClusterLoadAssignments (one file per cluster, in a directory). Files are replaced atomically
(temporary file in the same directory, fsync, rename) and only when their content changes.
With --watch it keeps them current and runs --reload-cmd after each change. docs/routing.md
describes the formats and the reload hook.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from tfleet import logs
from tfleet.cli.options import DaemonCommand, etcd_options, etcd_settings, fleet_prefix, unreachable_message
from tfleet.cli.route_render import Rendered, envoy_bundle, render_envoy, render_nginx
from tfleet.backoff import Backoff
from tfleet.keyspace import InvalidName, Keyspace, validate_name
from tfleet.loop import Loop, Outcome
from tfleet.ports import Store
from tfleet.routing import read_route_tables
from tfleet.schema import RouteTable

FORMATS = ("nginx", "envoy")
_OUTPUT_TAIL = 500  # characters of the reload command's output kept in the log


# -- files -----------------------------------------------------------------------------------------


def write_if_changed(path: pathlib.Path, content: str) -> bool:
    """Replace path with content atomically; False (and nothing written) when it already holds it.

    The temporary file lives in the same directory so that the rename is atomic (a reader
    such as nginx or Envoy sees the old file or the new one, never a half-written one); the
    file and then the directory are fsynced so that a crash cannot leave an empty file behind.
    An existing file keeps its permission bits; a new one gets 0644.
    """
    data = content.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


@dataclass(frozen=True)
class Output:
    """Where and how to render: nginx to one file, Envoy to one file per cluster in a directory."""

    format: str
    path: pathlib.Path | None  # None: print to stdout
    models: tuple[str, ...] = ()
    envoy_encoding: str = "json"
    source: str = "/tfleet/routes/"

    def render(self, tables: dict[str, RouteTable]) -> Rendered:
        if self.format == "nginx":
            return render_nginx(tables, self.models, self.source)
        return render_envoy(tables, self.models, self.envoy_encoding, keep=self._existing_clusters())

    def _existing_clusters(self) -> list[str]:
        """Clusters whose file an earlier render left in the directory (kept, emptied if gone)."""
        if self.path is None or not self.path.is_dir():
            return []
        suffix = f".{self.envoy_encoding}"
        return sorted(p.name[: -len(suffix)] for p in self.path.glob(f"tfleet_*{suffix}") if p.is_file())

    def write(self, rendered: Rendered) -> list[pathlib.Path]:
        """Write what changed; returns the files written."""
        assert self.path is not None
        if self.format == "nginx":
            return [self.path] if write_if_changed(self.path, rendered.text) else []
        self.path.mkdir(parents=True, exist_ok=True)
        return [self.path / name for name, content in rendered.files.items() if write_if_changed(self.path / name, content)]

    def stdout_text(self, tables: dict[str, RouteTable]) -> tuple[str, list[str]]:
        """What to print without --out: the nginx file, or every Envoy assignment in one document."""
        rendered = render_nginx(tables, self.models, self.source) if self.format == "nginx" else render_envoy(tables, self.models)
        if self.format == "nginx":
            return rendered.text, rendered.problems
        return json.dumps(envoy_bundle(tables, self.models), indent=2) + "\n", rendered.problems


# -- the reload hook -------------------------------------------------------------------------------


def run_reload(command: str, timeout: float, log: Any) -> bool:
    """Run the shell command with a deadline; log its exit code; True when it exited 0.

    It runs in a session of its own so that, past the deadline, the whole process group
    (the shell and whatever it started) is killed.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        output, _ = process.communicate()
        log.warning("reload", command=command, result="timeout", timeout_s=timeout, output=output.decode(errors="replace")[-_OUTPUT_TAIL:])
        return False
    seconds = round(time.monotonic() - started, 3)
    text = output.decode(errors="replace")[-_OUTPUT_TAIL:]
    if process.returncode == 0:
        log.info("reload", command=command, result="ok", exit_code=0, duration_s=seconds)
        return True
    log.warning("reload", command=command, result="failed", exit_code=process.returncode, duration_s=seconds, output=text)
    return False


# -- one pass and the watch loop --------------------------------------------------------------------


class RouteRenderer:
    """Read the routes, render, write what changed, reload; again on every change (--watch)."""

    def __init__(
        self,
        *,
        store: Store,
        keyspace: Keyspace,
        output: Output,
        log: Any,
        reload_cmd: str | None = None,
        reload_timeout: float = 30.0,
        coalesce: float = 0.2,
        resync_interval: float = 30.0,
        reload: Callable[[str, float, Any], bool] = run_reload,
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._output = output
        self._log = log
        self._reload_cmd = reload_cmd
        self._reload_timeout = reload_timeout
        self._coalesce = coalesce
        self._resync = resync_interval
        self._reload = reload
        self._reload_pending = False
        self._watch: Any = None
        self.passes = 0
        # --watch: the one supervised loop (tfleet/loop.py): a change wakes it, a burst is one
        # render, every resync_interval a render anyway, and an etcd outage is retried after
        # a jittered backoff (0.4 s doubling up to 5 s) while the files stay as they are.
        self._loop = Loop(
            "routes-watch",
            self._step,
            log=log,
            coalesce=coalesce,
            idle=resync_interval,
            retry_backoff=Backoff(initial=0.4, cap=5.0),
        )

    def stop(self) -> None:
        """Ask run() to return (safe from a signal handler or another thread)."""
        self._loop.stop()

    def read(self) -> tuple[dict[str, RouteTable], int]:
        """The readable route tables and the revision they were read at (raises StoreError)."""
        snapshot = self._store.list_prefix(self._ks.routes_prefix())
        stored, problems = read_route_tables(snapshot, self._ks)
        for problem in problems:
            self._log.warning("route_table_unreadable", problem=problem)
        return {model: table for model, table in stored.items() if table is not None}, snapshot.revision

    def render_once(self, tables: dict[str, RouteTable]) -> list[pathlib.Path]:
        """Render and write; runs the reload command when a file changed (or a reload is owed)."""
        rendered = self._output.render(tables)
        for problem in rendered.problems:
            self._log.warning("route_render_problem", problem=problem)
        written = self._output.write(rendered)
        self.passes += 1
        if written:
            self._log.info("routes_rendered", result="changed", format=self._output.format, models=len(tables), files=[str(p) for p in written])
            self._reload_pending = self._reload_cmd is not None
        else:
            self._log.debug("routes_rendered", result="unchanged", format=self._output.format, models=len(tables))
        if self._reload_pending and self._reload_cmd is not None:
            # a failed reload is tried again at the next pass (change or resync), not forgotten
            self._reload_pending = not self._reload(self._reload_cmd, self._reload_timeout, self._log)
        return written

    def run(self) -> None:
        """Watch ``<prefix>/routes/`` until stop(); etcd outages keep the files as they are."""
        try:
            self._loop.run()
        finally:
            if self._watch is not None:
                self._watch.cancel()

    def _step(self, woke: bool) -> Outcome:
        """One pass of --watch: read, render, write what changed; the watch starts after the
        first read, from its revision, so no change after it is missed."""
        from tfleet.store import StoreError

        try:
            tables, revision = self.read()
        except StoreError as exc:
            self._log.warning("routes_read", result="etcd_unavailable", error=str(exc))
            return Outcome("etcd_unavailable", retry=True)
        self.render_once(tables)
        if self._watch is None:
            self._watch = self._store.watch_prefix(
                self._ks.routes_prefix(),
                revision + 1,
                on_events=lambda events: self._loop.wake(),
                on_reset=lambda snapshot: self._loop.wake(),
            )
        return Outcome("ok")


# -- the command ------------------------------------------------------------------------------------


@click.group("routes")
def routes() -> None:
    """Where requests go: render the route tables for load balancers."""


@routes.command("render", cls=DaemonCommand, context_settings={"show_default": True})
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(FORMATS),
    envvar="TFLEET_ROUTES_FORMAT",
    show_envvar=True,
    help="nginx: one include file of upstreams; envoy: one ClusterLoadAssignment file per cluster.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    envvar="TFLEET_ROUTES_MODELS",
    show_envvar=True,
    help="Render only these models (repeatable); each always gets its model-level upstream, empty if unserved.",
)
@click.option(
    "--out",
    type=click.Path(path_type=pathlib.Path),
    envvar="TFLEET_ROUTES_OUT",
    show_envvar=True,
    help="nginx: the file to write; envoy: the directory of the cluster files. Default: print to stdout.",
)
@click.option(
    "--envoy-encoding",
    type=click.Choice(("json", "yaml")),
    default="json",
    envvar="TFLEET_ROUTES_ENVOY_ENCODING",
    show_envvar=True,
    help="Encoding (and file extension) of the Envoy files.",
)
@click.option(
    "--watch", is_flag=True, envvar="TFLEET_ROUTES_WATCH", show_envvar=True, help="Keep running: re-render on every change of the routes (needs --out)."
)
@click.option(
    "--reload-cmd",
    envvar="TFLEET_ROUTES_RELOAD_CMD",
    show_envvar=True,
    help="Shell command run after each change of the files, e.g. 'nginx -s reload' (needs --out).",
)
@click.option(
    "--reload-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    envvar="TFLEET_ROUTES_RELOAD_TIMEOUT",
    show_envvar=True,
    help="Seconds the reload command may run before it is killed.",
)
@click.option(
    "--coalesce",
    type=click.FloatRange(min=0),
    default=0.2,
    envvar="TFLEET_ROUTES_COALESCE",
    show_envvar=True,
    help="Seconds to wait after a change for more changes, so that a burst gives one render.",
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    envvar="TFLEET_ROUTES_RESYNC_INTERVAL",
    show_envvar=True,
    help="Seconds between full re-reads when nothing changes (and retries of a failed reload).",
)
@click.option("--prefix", default="/tfleet", envvar="TFLEET_PREFIX", show_envvar=True, help="etcd key prefix of this fleet.")
@etcd_options
@click.option("--log-level", default="info", type=click.Choice(logs.LEVELS), envvar="TFLEET_LOG_LEVEL", show_envvar=True)
def render(
    fmt: str,
    models: Sequence[str],
    out: pathlib.Path | None,
    envoy_encoding: str,
    watch: bool,
    reload_cmd: str | None,
    reload_timeout: float,
    coalesce: float,
    resync_interval: float,
    prefix: str,
    log_level: str,
    **options: Any,
) -> None:
    """Write proxy configuration from <prefix>/routes/ (once, or continuously with --watch)."""
    from tfleet.store import EtcdStore, StoreError

    if (watch or reload_cmd) and out is None:
        raise click.UsageError("--watch and --reload-cmd need --out (the file or directory to keep current)")
    settings = etcd_settings(options)
    prefix = fleet_prefix(prefix)
    try:
        keyspace = Keyspace(prefix.rstrip("/") or prefix)
        for model in models:
            validate_name("model", model)
    except InvalidName as exc:
        raise click.UsageError(str(exc)) from None
    if out is not None and fmt == "nginx" and out.is_dir():
        raise click.UsageError(f"--out {out} is a directory; nginx output is one file")
    if out is not None and fmt == "envoy" and out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} is a file; Envoy output is a directory of one file per cluster")
    logs.configure(log_level)
    log = logs.get("routes")
    output = Output(fmt, out, tuple(models), envoy_encoding, keyspace.routes_prefix())
    store = EtcdStore(settings)
    renderer = RouteRenderer(
        store=store,
        keyspace=keyspace,
        output=output,
        log=log,
        reload_cmd=reload_cmd,
        reload_timeout=reload_timeout,
        coalesce=coalesce,
        resync_interval=resync_interval,
    )
    try:
        if not watch:
            try:
                tables, _ = renderer.read()
            except StoreError as exc:
                raise click.ClickException(unreachable_message(exc)) from None
            if out is None:
                text, problems = output.stdout_text(tables)
                for problem in problems:
                    log.warning("route_render_problem", problem=problem)
                click.echo(text, nl=False)
            else:
                renderer.render_once(tables)
            return
        signal.signal(signal.SIGTERM, lambda *_: renderer.stop())
        signal.signal(signal.SIGINT, lambda *_: renderer.stop())
        log.info("routes_watch", result="started", format=fmt, out=str(out), prefix=keyspace.routes_prefix())
        renderer.run()
        log.info("routes_watch", result="stopped")
    finally:
        store.close()
