"""A private network for etcd members, built from Linux network namespaces, so that a test
can partition a member for real (its packets vanish, as behind a dead switch) instead of
freezing the process.

Layout (every name carries a random run id, so parallel runs never meet):

    root namespace (the test, its agents and controllers)
      tf<id>  198.18.<n>.254/24 --veth--> uplink [ns tfleet-<id>-br: bridges cbr (clients), pbr (peers)]
    ns tfleet-<id>-m<i> (member i):
      c  198.18.<n>.<i+1>/24 --veth--> c<i> on cbr    (clients and metrics)
      p  198.19.<n>.<i+1>/24 --veth--> p<i> on pbr    (raft and the other members)

Addresses come only from 198.18.0.0/15 (RFC 2544, benchmarking: never routed). The root
namespace gets one interface and the route to 198.18.<n>.0/24 that comes with its address;
the peer network exists only inside the namespaces created here. Cutting a member sets the
bridge side of its links down: nothing is refused, packets are just lost.

Needs root and `ip netns`; `PrivateNet.create` skips the test with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tfleet.etcd_local import MemberNetwork

_LOCK = "/tmp/tfleet-netns.lock"  # serialises the choice of a free 198.18.<n>.0/24 between runs


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class PrivateNet:
    """Namespaces, bridges and veth pairs for `size` members; close() removes them all."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.id = secrets.token_hex(3)
        self.bridge_ns = f"tfleet-{self.id}-br"
        self.root_link = f"tf{self.id}"
        self.member_ns = [f"tfleet-{self.id}-m{i}" for i in range(size)]
        self.subnet = 0
        self._made: list[str] = []  # namespaces created so far, for close()

    @classmethod
    @contextlib.contextmanager
    def create(cls, size: int) -> Iterator[PrivateNet]:
        """Build the network (skipping the test when this machine cannot), yield it, remove it."""
        if os.geteuid() != 0:
            pytest.skip("network namespaces need root (the SIGSTOP fault tests cover the rest)")
        if shutil.which("ip") is None:
            pytest.skip("no `ip` command (iproute2) for network namespaces")
        net = cls(size)
        try:
            try:
                net._build()
            except RuntimeError as exc:
                if not net._made:
                    pytest.skip(f"cannot create a network namespace here: {exc}")
                raise
            yield net
        finally:
            net.close()

    @property
    def networks(self) -> list[MemberNetwork]:
        return [MemberNetwork(ns, self.client_host(i), self.peer_host(i)) for i, ns in enumerate(self.member_ns)]

    def client_host(self, index: int) -> str:
        return f"198.18.{self.subnet}.{index + 1}"

    def peer_host(self, index: int) -> str:
        return f"198.19.{self.subnet}.{index + 1}"

    def _free_subnet(self) -> int:
        used = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show")
        for _ in range(200):
            n = 1 + secrets.randbelow(254)
            if f"198.18.{n}." not in used:
                return n
        raise RuntimeError("no free 198.18.<n>.0/24 subnet")

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add_ns(self.bridge_ns)
        br = ("-n", self.bridge_ns)
        for bridge in ("cbr", "pbr"):
            _ip(*br, "link", "add", bridge, "type", "bridge")
            _ip(*br, "link", "set", bridge, "up")
        for i, ns in enumerate(self.member_ns):
            self._add_ns(ns)
            for side, bridge in (("c", "cbr"), ("p", "pbr")):
                _ip(*br, "link", "add", f"{side}{i}", "type", "veth", "peer", "name", side, "netns", ns)
                _ip(*br, "link", "set", f"{side}{i}", "master", bridge, "up")
        with open(_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # until the root address is in place
            self.subnet = self._free_subnet()
            _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "uplink", "netns", self.bridge_ns)
            _ip(*br, "link", "set", "uplink", "master", "cbr", "up")
            _ip("addr", "add", f"198.18.{self.subnet}.254/24", "dev", self.root_link)
            _ip("link", "set", self.root_link, "up")
        for i, ns in enumerate(self.member_ns):
            _ip("-n", ns, "addr", "add", f"{self.client_host(i)}/24", "dev", "c")
            _ip("-n", ns, "addr", "add", f"{self.peer_host(i)}/24", "dev", "p")
            _ip("-n", ns, "link", "set", "c", "up")
            _ip("-n", ns, "link", "set", "p", "up")

    def _links(self, index: int, up: bool, sides: str) -> None:
        for side in sides:
            _ip("-n", self.bridge_ns, "link", "set", f"{side}{index}", "up" if up else "down")

    def cut(self, index: int) -> None:
        """Member `index` loses every link: neither its peers nor any client reach it."""
        self._links(index, False, "cp")

    def cut_from_peers(self, index: int) -> None:
        """Member `index` loses its peers (and so the quorum); clients still reach it."""
        self._links(index, False, "p")

    def heal(self, index: int) -> None:
        self._links(index, True, "cp")

    def close(self) -> None:
        """Remove everything created (the namespaces take their veths, and so the root end)."""
        for ns in reversed(self._made):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", ns)
        self._made.clear()
        with contextlib.suppress(RuntimeError):
            if self.root_link in _ip("-o", "link", "show"):
                _ip("link", "del", self.root_link)
