"""Stand-in hosts: N fake agents in one lightweight process, for scale benchmarks and tests.

A stand-in host does, against a real etcd, what the controller can see of an agent:

* a lease of its own (one per host, renewed every TTL/3 in one of RENEW_SLICES slots, all
  the slot's leases on one keepalive stream) and its host record
  (``<prefix>/hosts/<host>``, the same HostRecord JSON the agent writes) bound to it;
* for every assignment of the host, the status key the agent writes once TF Serving serves it
  (``<prefix>/status/<host>/<model>``: ModelStatus with every version of the assignment
  AVAILABLE, its labels applied, at the assignment's mod_revision), bound to the host's
  lease, written in transactions of at most 64 operations like the agent's; a deleted
  assignment deletes its status key.

It serves no model and loads nothing (zero load time), so a benchmark measures the
controller and etcd, not TF Serving. All stand-ins share ONE watch of
``<prefix>/assignments/`` and one writer thread: 1,000 hosts cost one process, not 1,000.

``kill(hosts)`` is a silent death: those hosts stop renewing their leases and stop writing,
so their keys vanish when etcd expires the leases, as when a machine loses power.

Run as a process (the scale benchmark does, so its CPU is not the benchmark's)::

    python -m bench.standin --etcd http://127.0.0.1:2379 --hosts 1000 [--ttl 10]

It prints one JSON line ``{"ready": ...}`` once every host is registered, then reads
commands on stdin, one per line: ``kill <host> [<host> ...]``, ``stats`` (one JSON line),
``stop`` (or end of input: revokes the live leases and exits).
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tfleet import schema
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.schema import Assignment, HostRecord, ModelStatus, SchemaError, VersionReport
from tfleet.store import Delete, EtcdSettings, EtcdStore, Put, Snapshot, StoreError, WatchEvent

STATUS_WRITE_BATCH = 64  # as the agent (agent/reconciler.py)
RENEW_SLICES = 10  # a renewal round is spread over this many slots (StandinFleet._renew_loop)
ZONES = ("a", "b", "c")


def host_names(count: int) -> list[str]:
    return [f"s{i:05d}" for i in range(count)]


def renew_slot(name: str) -> int:
    """The renewal slot of a host: by a hash of its name, so that any choice of hosts to
    kill (every tenth, a range) falls across the slots."""
    return zlib.crc32(name.encode()) % RENEW_SLICES


def host_record(name: str, index: int, memory_mb: int) -> HostRecord:
    return HostRecord(
        host=name,
        grpc_address=f"127.0.0.1:{20000 + index}",
        rest_address=f"127.0.0.1:{40000 + index}",
        memory_mb=memory_mb,
        labels={"zone": ZONES[index % len(ZONES)]},
        agent_version="standin",
        started_at=schema.utc_now(),
        metrics_address=None,
    )


def served_versions(assignment: Assignment) -> list[int]:
    """The versions an agent would report AVAILABLE; without files to look at, 'latest' and
    'all' serve version 1."""
    policy = assignment.model_version_policy
    if policy.specific is not None:
        return sorted(set(policy.specific.versions))
    return [1]


def status_of(assignment: Assignment, revision: int) -> ModelStatus:
    versions = served_versions(assignment)
    return ModelStatus(
        assignment_revision=revision,
        versions={str(v): VersionReport(state="AVAILABLE") for v in versions},
        version_labels={label: v for label, v in assignment.version_labels.items() if v in versions},
        error=None,
        updated_at=schema.utc_now(),
    )


class StandinFleet:
    """N stand-in hosts sharing one store, one watch and one writer thread."""

    def __init__(
        self,
        store: EtcdStore,
        keyspace: Keyspace,
        hosts: Sequence[str],
        *,
        ttl: int = 10,
        memory_mb: int = 64_000,
        renew_threads: int = 4,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._hosts = list(hosts)
        self._index = {name: i for i, name in enumerate(self._hosts)}
        self._ttl = ttl
        self._memory_mb = memory_mb
        self._log = log
        self._leases: dict[str, int] = {}
        self._dead: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._renewer = ThreadPoolExecutor(renew_threads, thread_name_prefix="standin-renew")
        self._threads: list[threading.Thread] = []
        self._watch = None
        self._revoke_failed = False
        self.status_puts = 0
        self.status_deletes = 0
        self.txns = 0
        self.write_errors = 0
        self.renew_errors = 0
        self.renew_rounds = 0
        self.last_renew_seconds = 0.0
        self.last_error = ""

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Register every host (lease + record), then follow the assignments."""
        grants = list(self._renewer.map(lambda name: (name, self._store.grant_lease(self._ttl)), self._hosts))
        self._leases = dict(grants)
        puts = [Put(self._ks.host(name), schema.encode(host_record(name, self._index[name], self._memory_mb)), lease) for name, lease in grants]
        for start in range(0, len(puts), STATUS_WRITE_BATCH):
            self._store.txn([], puts[start : start + STATUS_WRITE_BATCH])
        prefix = self._ks.assignments_prefix()
        snapshot = self._store.list_prefix(prefix)
        self._on_reset(snapshot)
        self._watch = self._store.watch_prefix(
            prefix, snapshot.revision + 1, on_events=self._on_events, on_reset=self._on_reset, on_error=lambda exc: self._log(f"assignments watch: {exc}")
        )
        for target, name in ((self._renew_loop, "standin-renew"), (self._write_loop, "standin-write")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, revoke: bool = True) -> None:
        """Stop following and renewing; with revoke, the live hosts' keys vanish at once."""
        self._stop.set()
        self._inbox.put(None)
        if self._watch is not None:
            self._watch.cancel()
        for thread in self._threads:
            thread.join(10)
        if revoke:
            live = [lease for name, lease in self._leases.items() if name not in self._dead]
            list(self._renewer.map(self._revoke_quietly, live))
        self._renewer.shutdown(wait=True)

    def _revoke_quietly(self, lease: int) -> None:
        if self._revoke_failed:
            return  # etcd is gone: one deadline, not one per host
        try:
            self._store.revoke_lease(lease)
        except StoreError:
            self._revoke_failed = True  # the keys expire with the TTL

    def kill(self, hosts: Iterable[str]) -> None:
        """Silent death: no more renewals or writes for these hosts."""
        with self._lock:
            self._dead.update(h for h in hosts if h in self._index)

    @property
    def hosts(self) -> list[str]:
        return list(self._hosts)

    @property
    def dead(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._dead)

    def stats(self) -> dict:
        return {
            "hosts": len(self._hosts),
            "dead": len(self._dead),
            "status_puts": self.status_puts,
            "status_deletes": self.status_deletes,
            "txns": self.txns,
            "write_errors": self.write_errors,
            "renew_errors": self.renew_errors,
            "renew_rounds": self.renew_rounds,
            "last_renew_s": round(self.last_renew_seconds, 3),
            "last_error": self.last_error,
        }

    # -- leases -------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        """Each host renews once per TTL/3, in one of RENEW_SLICES slots spread over that
        interval (by a hash of its name): as 1,000 agents started at different times do, so
        hosts that die together lose their leases over ~TTL/3, not at one instant."""
        tick = self._ttl / 3 / RENEW_SLICES
        slots = [[name for name in self._hosts if renew_slot(name) == slot] for slot in range(RENEW_SLICES)]
        due = time.monotonic()
        for turn in itertools.count():
            due += tick
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            started = time.monotonic()
            with self._lock:
                live = [(name, self._leases[name]) for name in slots[turn % RENEW_SLICES] if name not in self._dead and name in self._leases]
            self._renew(live)
            if turn % RENEW_SLICES == RENEW_SLICES - 1:
                self.renew_rounds += 1
            self.last_renew_seconds = time.monotonic() - started

    def _renew(self, live: list[tuple[str, int]]) -> None:
        """Every live lease on one keepalive stream: a stream per lease cost this process ~1 s
        of CPU per round at 900 hosts (and etcd ~0.3 s), a third of a core taken from the
        controller and etcd the benchmark measures; 1,000 agents renew from 1,000 machines."""
        try:
            ttls = self._store.refresh_leases([lease for _, lease in live])
        except StoreError as exc:  # a stand-in does not re-register: the benchmark reports it
            self.renew_errors += len(live)
            self.last_error = f"renew: {exc}"
            return
        for name, lease in live:
            if ttls.get(lease, 0) <= 0:
                self.renew_errors += 1
                self.last_error = f"renew {name}: the lease expired or was revoked"

    # -- assignments -> status ------------------------------------------------------------------
    def _on_events(self, events: list[WatchEvent]) -> None:
        self._inbox.put(events)

    def _on_reset(self, snapshot: Snapshot) -> None:
        """Compacted watch (or start): statuses for every assignment held now."""
        self._inbox.put([WatchEvent("put", kv.key, kv.value, kv.mod_revision) for kv in snapshot.items])

    def _write_loop(self) -> None:
        pending: dict[str, tuple[str, Put | Delete]] = {}  # status key -> (host, newest op); insertion order
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=0.5) if not pending else self._inbox.get_nowait()
            except queue.Empty:
                item = ()
            if item is None:
                return
            for event in item:
                found = self._status_op(event)
                if found is not None:
                    pending.pop(found[1].key, None)  # the newest op goes last
                    pending[found[1].key] = found
            # full batches at once; what is left as soon as no more events are waiting
            while pending and (item == () or len(pending) >= STATUS_WRITE_BATCH) and not self._stop.is_set():
                if not self._flush(pending):
                    break

    def _status_op(self, event: WatchEvent) -> tuple[str, Put | Delete] | None:
        try:
            host, model = self._ks.parse_host_model(event.key, "assignments")
        except InvalidName:
            return None
        lease = self._leases.get(host)
        if lease is None:
            return None  # not one of ours
        key = self._ks.status(host, model)
        if event.kind == "delete":
            return host, Delete(key)
        try:
            assignment = schema.parse(Assignment, event.value, event.key)
        except SchemaError as exc:
            return host, Put(key, schema.encode(ModelStatus(assignment_revision=event.mod_revision, error=str(exc), updated_at=schema.utc_now())), lease)
        return host, Put(key, schema.encode(status_of(assignment, event.mod_revision)), lease)

    def _flush(self, pending: dict[str, tuple[str, Put | Delete]]) -> bool:
        """Write the oldest batch; False when the transaction failed (the batch stays pending)."""
        with self._lock:
            dead = set(self._dead)
        batch: list[tuple[str, Put | Delete]] = []
        skipped = []
        for key, (host, op) in pending.items():
            if host in dead:
                skipped.append(key)  # a dead host writes nothing (its lease is expiring)
                continue
            batch.append((key, op))
            if len(batch) == STATUS_WRITE_BATCH:
                break
        for key in skipped:
            del pending[key]
        if not batch:
            return True
        try:
            self._store.txn([], [op for _, op in batch])
        except StoreError as exc:
            self.write_errors += 1
            self.last_error = f"status txn: {exc}"
            self._stop.wait(0.2)  # keep them pending, try again
            return False
        self.txns += 1
        for key, op in batch:
            del pending[key]
            if isinstance(op, Put):
                self.status_puts += 1
            else:
                self.status_deletes += 1
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--etcd", required=True, help="etcd URL (loopback)")
    parser.add_argument("--prefix", default="/tfleet")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=10, help="lease TTL, seconds")
    parser.add_argument("--memory-mb", type=int, default=64_000)
    parser.add_argument("--call-timeout", type=float, default=3.0)
    options = parser.parse_args(argv)
    store = EtcdStore(EtcdSettings(endpoints=(options.etcd,), call_timeout=options.call_timeout))
    fleet = StandinFleet(
        store,
        Keyspace(options.prefix),
        host_names(options.hosts),
        ttl=options.ttl,
        memory_mb=options.memory_mb,
        log=lambda line: print(json.dumps({"log": line}), file=sys.stderr, flush=True),
    )
    started = time.monotonic()
    fleet.start()
    print(json.dumps({"ready": {"hosts": options.hosts, "seconds": round(time.monotonic() - started, 3)}}), flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "kill":
                fleet.kill(words[1:])
                print(json.dumps({"killed": len(words) - 1, "at": time.time()}), flush=True)
            elif words[0] == "stats":
                print(json.dumps({"stats": fleet.stats()}), flush=True)
            elif words[0] == "stop":
                break
    finally:
        fleet.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
