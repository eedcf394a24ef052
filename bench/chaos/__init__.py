"""Chaos soak: inject faults at random while intents change, and check invariants throughout.

    python -m bench.chaos --seed 1 --duration 600 --hosts 4 --models 8

Starts a real fleet, every part a separate process: a 3-member etcd cluster
(LocalEtcdCluster), 2 controllers, and per host one `tfleet agent` with its own
`tfleet tfs-sim`. Every model gets an intent (2 replicas) through tfleet.registry.Registry.
Then, for --duration seconds:

* a writer keeps changing intents (served version, replicas 2 <-> 3, version labels), each
  change a compare-and-swap through the Registry, recording what it wrote and what etcd
  answered;
* a seeded scheduler injects one fault at a time, holds it, recovers it, and waits a random
  gap. The same --seed gives the same schedule (kinds, targets, holds, gaps; printed with
  --print-schedule). Faults (FAULT_KINDS):

  etcd_kill_leader      SIGKILL the raft leader member, start it again after the hold
  etcd_freeze_member    SIGSTOP the member the clients use (our own client's current one)
  etcd_rolling_restart  restart the three members one by one
  tfs_restart           SIGKILL one host's simulator, start it again empty (same ports)
  tfs_hang              SIGSTOP one host's simulator (past the agent's reload deadline)
  tfs_slow_reload       make one model's versions load slowly (longer than the agent's
                        reload deadline) and move it (new version, replicas 2 <-> 3)
  controller_kill       SIGKILL the leading controller, start it again after the hold
  controller_freeze     SIGSTOP the leading controller (up to 2 lease TTLs)
  agent_freeze          SIGSTOP one agent for longer than its lease TTL
  bad_values            garbage in models/chaos-junk, hostctl/<host> and
                        assignments/<host>/chaos-junk; deleted at recovery

* a checker records, continuously: a watch of the whole prefix (assignments, hosts, intents,
  history), every simulator's own state (which versions are AVAILABLE, from its metrics
  every --sample-interval) and every unload it performs (its `version_unloaded` log lines).

After the chaos phase the writer stops and the checker waits for convergence. The invariants
(evaluated from the recorded timeline, see `check_*` below and docs/operations.md "Chaos
soak" for the exact rules):

1. no intent or history entry lost: each model's intent in etcd is the writer's last
   successful write (or a later write whose outcome was unknown); every successful write and
   every intent change seen on the watch has a history entry; no history key is deleted;
2. no healthy host unloads a version it is still assigned;
3. never zero AVAILABLE replicas of a model wanted at >= 2 while >= 2 hosts are healthy and a
   healthy host was serving it;
4. convergence within --converge-bound seconds after the last fault's recovery and the last
   write: every model at its wanted replicas, each ready with the latest intent.

A host is *healthy* at time t when no host fault (tfs_restart, tfs_hang, agent_freeze) on it
was active within [t - grace, t] and its hosts/ key (its lease) was present throughout that
window; grace is --health-grace (default 10 s): the time a recovered host is given to get back
to normal.

Prints faults by kind, violations by kind (the first few in detail), the convergence time and
counts; exits 1 on any violation.

One module per job: schedule.py (the seeded faults), settings.py, fleet.py (the processes),
workload.py (the writer), recorder.py (what the checker records), faults.py (injection),
invariants.py (the timeline and the rules, pure), convergence.py, soak.py (one run), cli.py.
"""

from __future__ import annotations

from bench.chaos.invariants import (
    VIOLATION_KINDS,
    FaultRecord,
    Timeline,
    Violation,
    WriteRecord,
    check_intents,
    check_unloads,
    check_zero_available,
)
from bench.chaos.schedule import FAULT_KINDS, HOST_FAULTS, Fault, make_schedule
from bench.chaos.settings import Settings
from bench.chaos.soak import Result, run

__all__ = [
    "FAULT_KINDS",
    "HOST_FAULTS",
    "VIOLATION_KINDS",
    "Fault",
    "FaultRecord",
    "Result",
    "Settings",
    "Timeline",
    "Violation",
    "WriteRecord",
    "check_intents",
    "check_unloads",
    "check_zero_available",
    "make_schedule",
    "run",
]
