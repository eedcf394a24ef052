"""The load-balancer path, for real: a real nginx in front of two simulated hosts, configured by
`tfleet routes render --watch --reload-cmd`, keeps answering while a host dies.

Everything is a process, as in production: two `tfleet tfs-sim`, their two agents, a
controller, the route renderer, and nginx (Debian's package, installed by
scripts/ensure-system-deps) running in the foreground with its own prefix, config, pid and
temp paths under tmp_path, on free loopback ports. Requests go through nginx for the model
and for its `stable` label, over gRPC (Predict) and REST. Then one host is SIGKILLed: its
lease expires, the controller drops it from the routes, the renderer rewrites the upstreams
and reloads nginx. The failed requests from the kill until the reload are counted and
reported (printed with -s, and recorded as the user property `failed_during_switch` in --junitxml); once the
routes have changed, every request must succeed.
"""

from __future__ import annotations

import getpass
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.helpers import nginx_binary, wait_until
from tfleet import schema
from tfleet.etcd_local import free_port
from tfleet.keyspace import Keyspace
from tfleet.procs import Daemon
from tfleet.schema import RouteTable
from tfleet.sim.fixtures import make_model
from tfleet.tfs.predict import predict

TTL = 4
MODEL = "m"


@dataclass
class Nginx:
    """nginx as a foreground child: `-p` prefix, `-c` config and `-e` error log in its own dir."""

    binary: str
    root: pathlib.Path
    routes_file: pathlib.Path
    grpc_model_port: int = field(default_factory=free_port)
    grpc_label_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def conf(self) -> pathlib.Path:
        return self.root / "nginx.conf"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.root}/", "-c", str(self.conf), "-e", str(self.root / "error.log"), *extra]

    def write_conf(self) -> None:
        temp = "\n".join(f"    {kind}_temp_path {self.root}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        rest = f"tfleet_{MODEL}"
        self.conf.write_text(f"""
daemon off;
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log info;
{"user " + getpass.getuser() + ";" if os.geteuid() == 0 else ""}
events {{ worker_connections 256; }}
http {{
    access_log {self.root}/access.log;
{temp}
    include {self.routes_file};
    # nginx's defaults otherwise (proxy/grpc_next_upstream "error timeout": a refused
    # connection is retried on the next server); a short connect timeout for hung hosts
    proxy_connect_timeout 1s;
    grpc_connect_timeout 1s;
    server {{
        listen 127.0.0.1:{self.grpc_model_port} http2;
        location / {{ grpc_pass grpc://tfleet_{MODEL}_grpc; }}
    }}
    server {{
        listen 127.0.0.1:{self.grpc_label_port} http2;
        location / {{ grpc_pass grpc://tfleet_{MODEL}_label_stable_grpc; }}
    }}
    server {{
        listen 127.0.0.1:{self.rest_port};
        location /v1/models/{MODEL}/labels/stable {{ proxy_pass http://tfleet_{MODEL}_label_stable_rest; }}
        location /v1/models/{MODEL} {{ proxy_pass http://{rest}_rest; }}
    }}
}}
""")

    def reload_command(self) -> str:
        test, reload = " ".join(self.command("-t", "-q")), " ".join(self.command("-s", "reload"))
        return f"{test} && {reload} && touch {self.root}/reloaded"

    def start(self) -> None:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.write_conf()
        checked = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr.log", "ab"), start_new_session=True
        )  # noqa: SIM115

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then all exit
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


class Load:
    """Sequential requests through nginx, round robin over the four kinds, until stopped."""

    KINDS = ("grpc-model", "grpc-label", "rest-model", "rest-label")

    def __init__(self, nginx: Nginx) -> None:
        self.nginx = nginx
        self.results: list[tuple[float, str, str | None]] = []  # (monotonic time, kind, error or None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def one(self, kind: str) -> None:
        """One request; raises on any failure or wrong answer."""
        if kind.startswith("grpc"):
            port = self.nginx.grpc_model_port if kind == "grpc-model" else self.nginx.grpc_label_port
            result = predict(f"127.0.0.1:{port}", MODEL, {"x": [1.0, 2.0]}, label="stable" if kind == "grpc-label" else None, timeout=5)
            assert result.outputs["y"] == [3.0, 5.0], result.outputs
            return
        path = f"/v1/models/{MODEL}/labels/stable:predict" if kind == "rest-label" else f"/v1/models/{MODEL}:predict"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.nginx.rest_port}{path}", data=b'{"instances": [1.0, 2.0]}', headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert json.loads(reply.read())["predictions"] == [3.0, 5.0]

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            kind = self.KINDS[index % len(self.KINDS)]
            index += 1
            try:
                self.one(kind)
                error = None
            except Exception as exc:  # noqa: BLE001 (every failure counts, whatever it is)
                error = f"{type(exc).__name__}: {exc}"
            self.results.append((time.monotonic(), kind, error))

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def ok_since(self, since: float) -> Counter:
        return Counter(kind for at, kind, error in list(self.results) if at >= since and error is None)

    def failures(self, start: float, end: float = float("inf")) -> list[tuple[float, str, str | None]]:
        return [r for r in list(self.results) if start <= r[0] < end and r[2] is not None]


@pytest.fixture
def nginx_binary_path() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/ensure-system-deps installs Debian's nginx-light as root)")
    return binary


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in reversed(started):
        daemon.stop()


def route_hosts(store, ks: Keyspace) -> set[str]:
    kv = store.get(ks.routes(MODEL))
    if kv is None:
        return set()
    table = schema.parse(RouteTable, kv.value, kv.key)
    return {e.host for e in table.endpoints} & {e.host for e in table.labels.get("stable", [])}


def test_nginx_keeps_serving_through_a_host_loss(tmp_path, etcd_server, store, prefix, nginx_binary_path, daemons, record_property) -> None:
    ks = Keyspace(prefix.rstrip("/"))
    common = ["--etcd", etcd_server.client_url, "--prefix", ks.prefix, "--etcd-timeout", "0.5"]
    models = tmp_path / "models"
    make_model(models, MODEL, [1], scale=2.0, bias=1.0)  # y = 2x + 1
    hosts = {}
    for name in ("h1", "h2"):
        grpc, rest = free_port(), free_port()
        tfs = Daemon(
            f"tfs-{name}",
            ["tfs-sim", "--grpc-port", str(grpc), "--rest-port", str(rest), "--file-system-poll-wait-seconds", "0.2"],
            tmp_path / f"tfs-{name}.log",
        ).start()
        daemons.append(tfs)
        agent = Daemon(
            f"agent-{name}",
            [
                "agent",
                "--host",
                name,
                *common,
                "--tfs-grpc",
                f"127.0.0.1:{grpc}",
                "--tfs-rest",
                f"127.0.0.1:{rest}",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(free_port()),
                "--lease-ttl",
                str(TTL),
                "--reload-timeout",
                "2",
                "--status-timeout",
                "1",
                "--resync-interval",
                "1",
                "--state-dir",
                str(tmp_path / "state"),
            ],
            tmp_path / f"agent-{name}.log",
        ).start()
        daemons.append(agent)
        hosts[name] = (tfs, agent)
    daemons.append(
        Daemon(
            "controller",
            [
                "controller",
                "--id",
                "c1",
                *common,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(free_port()),
                "--lease-ttl",
                str(TTL),
                "--resync-interval",
                "1",
            ],
            tmp_path / "controller.log",
        ).start()
    )
    store.put(
        ks.model(MODEL),
        json.dumps(
            {"base_path": str(models / MODEL), "model_version_policy": {"specific": {"versions": [1]}}, "version_labels": {"stable": 1}, "replicas": 2}
        ).encode(),
    )
    wait_until(lambda: route_hosts(store, ks) == {"h1", "h2"}, 60, message="routes list both hosts for the model and its label")

    nginx = Nginx(nginx_binary_path, tmp_path / "nginx", tmp_path / "nginx" / "tfleet-routes.conf")
    nginx.root.mkdir()
    renderer = Daemon(
        "routes",
        [
            "routes",
            "render",
            "--format",
            "nginx",
            "--model",
            MODEL,
            "--watch",
            "--out",
            str(nginx.routes_file),
            "--reload-cmd",
            nginx.reload_command(),
            "--coalesce",
            "0.05",
            *common,
        ],
        tmp_path / "routes.log",
    ).start()
    daemons.append(renderer)
    h2_grpc = hosts["h2"][0].args[2]
    wait_until(
        lambda: nginx.routes_file.exists() and f"127.0.0.1:{h2_grpc}" in nginx.routes_file.read_text(),
        30,
        message=f"the renderer wrote both hosts; log:\n{renderer.log_tail()}",
    )
    nginx.start()
    try:
        wait_until(lambda: _answers(nginx), 30, message=f"nginx answers; its log:\n{_tail(nginx.root / 'error.log')}")
        load = Load(nginx).start()
        try:
            started = time.monotonic()
            wait_until(lambda: min(load.ok_since(started)[k] for k in Load.KINDS) >= 10, 60, message="requests of every kind succeed")
            assert not load.failures(started), load.failures(started)[:5]

            (nginx.root / "reloaded").unlink(missing_ok=True)
            killed = time.monotonic()
            for daemon in hosts["h2"]:  # a host dies: its TF Serving and its agent, without a goodbye
                daemon.kill()
            wait_until(lambda: route_hosts(store, ks) == {"h1"}, TTL + 20, message="the controller dropped h2 from the routes")
            wait_until(
                lambda: f"127.0.0.1:{h2_grpc}" not in nginx.routes_file.read_text() and (nginx.root / "reloaded").exists(),
                20,
                message=f"the renderer rewrote the upstreams and reloaded nginx; log:\n{renderer.log_tail()}",
            )
            switched = time.monotonic()
            # nginx finishes reloading (old workers drain) shortly after the command returns:
            # from then on every request must succeed.
            settled = switched + 2.0
            wait_until(lambda: min(load.ok_since(settled)[k] for k in Load.KINDS) >= 10, 60, message="requests of every kind succeed after the switch")
        finally:
            load.stop()
    finally:
        nginx.stop()

    during = load.failures(killed, settled)
    after = load.failures(settled)
    total = sum(1 for at, _, _ in load.results if killed <= at < settled)
    report = (
        f"nginx host-loss drill: {len(during)} of {total} requests failed between the kill and the reload "
        f"({switched - killed:.1f} s; by kind {dict(Counter(k for _, k, _ in during))}); "
        f"{len(after)} failed after it"
    )
    print(report + "".join(f"\n  {kind}: {error}" for _, kind, error in during[:5]))
    record_property("failed_during_switch", len(during))
    record_property("requests_during_switch", total)
    assert not after, f"{report}; first: {after[:3]}"


def _answers(nginx: Nginx) -> bool:
    try:
        Load(nginx).one("rest-model")
    except Exception:  # noqa: BLE001
        return False
    return True


def _tail(path: pathlib.Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"
