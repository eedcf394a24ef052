"""`tfleet routes render`'s moving parts: the reload hook (a shell command with a deadline) and
the watch loop (coalesced renders, one reload per change, retry of a failed reload), the
latter on a fake store. Pure rendering is tests/unit/test_route_render.py; against etcd and a
real nginx, tests/e2e/test_routes_render.py and tests/e2e/test_nginx.py.
"""

from __future__ import annotations

import pathlib
import threading
import time

from tests.helpers import RecordingLog, route_endpoint, route_table, wait_until
from tfleet import schema
from tfleet.cli.routes import Output, RouteRenderer, run_reload
from tfleet.keyspace import Keyspace
from tfleet.store import KeyValue, Snapshot

H1 = route_endpoint("h1", "10.0.0.1")


# -- the reload hook -----------------------------------------------------------------------------------------


def test_run_reload_logs_the_exit_code(tmp_path: pathlib.Path) -> None:
    log = RecordingLog()
    assert run_reload(f"touch {tmp_path / 'ok'}", 10, log) is True
    assert (tmp_path / "ok").exists()
    assert run_reload("echo nope; exit 3", 10, log) is False
    (_, _, ok), (level, _, failed) = log.lines
    assert ok["exit_code"] == 0 and level == "warning"
    assert failed["exit_code"] == 3 and "nope" in failed["output"]


def test_run_reload_kills_a_command_past_its_deadline(tmp_path: pathlib.Path) -> None:
    log = RecordingLog()
    started = time.monotonic()
    assert run_reload(f"sleep 30; touch {tmp_path / 'late'}", 0.3, log) is False
    assert time.monotonic() - started < 10
    assert log.lines[-1][2]["result"] == "timeout"
    time.sleep(0.2)
    assert not (tmp_path / "late").exists()


# -- the watch loop, on a fake store ----------------------------------------------------------------------------


class FakeWatch:
    def __init__(self, on_events) -> None:
        self.on_events = on_events
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeStore:
    """list_prefix and watch_prefix of EtcdStore over a dict; counts reads."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.revision = 1
        self.reads = 0
        self.watch: FakeWatch | None = None
        self.lock = threading.Lock()

    def put(self, key: str, value: bytes) -> None:
        self.burst([(key, value)])

    def burst(self, writes: list[tuple[str, bytes]]) -> None:
        """Several writes that no read can come between (each one still notifies the watch)."""
        with self.lock:
            for key, value in writes:
                self.revision += 1
                self.values[key] = value
                if self.watch is not None:
                    self.watch.on_events([key])

    def list_prefix(self, prefix: str) -> Snapshot:
        with self.lock:
            self.reads += 1
            items = tuple(KeyValue(k, v, 1, self.revision, 1, 0) for k, v in self.values.items() if k.startswith(prefix))
            return Snapshot(self.revision, items)

    def watch_prefix(self, prefix, start_revision, on_events, on_reset, on_error=None) -> FakeWatch:
        self.watch = FakeWatch(on_events)
        return self.watch


def test_watch_loop_coalesces_bursts_and_retries_a_failed_reload(tmp_path: pathlib.Path) -> None:
    ks = Keyspace("/tfleet")
    store = FakeStore()
    store.put(ks.routes("m"), schema.encode(route_table("m", [H1])))
    reloads: list[bool] = []
    outcomes = iter([False, True, True, True])  # the first reload fails

    def reload(command, timeout, log) -> bool:
        reloads.append(True)
        return next(outcomes)

    out = tmp_path / "routes.conf"
    renderer = RouteRenderer(
        store=store, keyspace=ks, output=Output("nginx", out), log=RecordingLog(), reload_cmd="x", coalesce=0.3, resync_interval=0.5, reload=reload
    )
    thread = threading.Thread(target=renderer.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(reloads) == 2, 10.0, 0.01)  # failed at start, retried at the next resync
        assert "server 10.0.0.1:8500;" in out.read_text()
        reads = store.reads
        store.burst([(ks.routes("m"), schema.encode(route_table("m", [H1, route_endpoint("h2", f"10.0.0.{n}")]))) for n in range(3, 9)])
        wait_until(lambda: "server 10.0.0.8:8500;" in out.read_text(), 10.0, 0.01)
        time.sleep(0.2)
        assert len(reloads) == 3  # one render and one reload for the whole burst
        assert store.reads - reads <= 3  # not one per write (resyncs that found nothing new may add some)
        time.sleep(1.2)  # resyncs that find nothing new reload nothing
        assert len(reloads) == 3
    finally:
        renderer.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert store.watch is not None and store.watch.cancelled


def test_watch_loop_survives_an_unexpected_error_and_renders_again(tmp_path: pathlib.Path) -> None:
    """The one loop's pass guard (tfleet/loop.py): a pass that raises is logged once and
    retried after a backoff; the command does not exit."""
    ks = Keyspace("/tfleet")
    store = FakeStore()
    store.put(ks.routes("m"), schema.encode(route_table("m", [H1])))
    calls: list[int] = []

    def reload(command, timeout, log) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("hook exploded")
        return True

    log = RecordingLog()
    out = tmp_path / "routes.conf"
    renderer = RouteRenderer(store=store, keyspace=ks, output=Output("nginx", out), log=log, reload_cmd="x", coalesce=0.05, resync_interval=60.0, reload=reload)
    thread = threading.Thread(target=renderer.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(calls) >= 2, 10.0, 0.01, message="the pass after the failure did not run")
        assert thread.is_alive()
        failed = [fields for level, event, fields in log.lines if event == "pass_failed"]
        assert len(failed) == 1 and failed[0]["loop"] == "routes-watch" and "hook exploded" in failed[0]["error"]
        assert "server 10.0.0.1:8500;" in out.read_text()
    finally:
        renderer.stop()
        thread.join(5)
    assert not thread.is_alive()
