"""Scale benchmark: the real controller on a real etcd, with 1,000 stand-in hosts and up to
100,000 models.

    python -m bench.scale [--hosts 1000] [--models 10000[,100000]] [--preset small|full]

One run per model count, each on a fresh etcd (in a temporary directory, deleted afterwards),
with ``tfleet controller`` as a process and the stand-in hosts (bench/standin.py) in ONE
other process. Printed, each next to a floor measured in the same run:

* floor: raw etcd put -> watch latency;
* convergence: from writing M intents (2 replicas each) until every model reports its
  replicas ready in ``modelstatus`` (the controller's own account: a replica counts once the
  stand-in wrote its status at the assignment's revision and the controller saw it);
* change -> ready: an intent's replicas 2 -> 3 through the CLI's Registry (compare-and-swap
  write + history entry) until modelstatus shows the third replica ready, p50/p99 over
  --changes changes, with only 10 models (the floor) and at scale;
* writes per one-model change (etcd's own put/delete/txn/range counters, and the bytes etcd
  sent to clients, over a quiet window around one change);
* after --history-edits intent edits (history grows): a new model placed, and ready;
* --loss of the hosts die silently (their leases are no longer renewed): seconds until
  every lost replica is re-placed (modelstatus names the wanted replicas on live hosts: the
  controller writes it right after the new assignments, in the same pass) and until every
  model is back at its wanted ready replicas, counted from the moment etcd expired the last
  of those leases and from the kill (the stand-ins renew in slots spread over TTL/3, as
  independent agents do, so the leases expire over ~TTL/3: the first and last expiry are
  printed); the CPU seconds the controller, etcd, the stand-ins and this process (its
  watches) spent meanwhile (they share this machine's cores); from the first expiry until
  every lost replica is re-placed (the window the target judges), how many of the machine's
  cores were busy on average, each process's CPU seconds, and the controller's pass thread's
  seconds on a core and waiting in the run queue for one (/proc); and what etcd did meanwhile
  (writes, WAL fsyncs and backend commits with their mean time, bytes sent, slow watchers);
* the controller's RSS and CPU seconds (/proc), etcd's db size, and the warnings and errors
  in the controller's log (size errors counted apart);
* the controller's /metrics scraped throughout as Prometheus scrapes it (--scrape-every,
  15 s as deploy/prometheus/prometheus.yml; 0: none): the controller pays for its
  exposition during every phase, as in a fleet; each scrape's seconds are printed.

Intents of the M models are written as plain puts in transactions of 100 (what
``etcdctl txn`` would do; the controller records their history entries itself), or with
``--intent-writer registry``: the intent and its history entry in one transaction per model,
as the CLI's Registry writes them, 50 models per transaction.

Targets (issue): 10,000 models converge < 60 s, 100,000 < 10 min; change -> ready p99 < 1 s
at 10,000 models; 10 % host loss re-placed < TTL + 5 s; controller RSS < 1 GB at 100,000
models; no etcd call ever fails for size.

``--skip changes,history`` leaves those phases out (the backlog still drains first): a
quicker look at convergence, memory and host loss.

``--pin-controller`` gives the controller CPU 0 to itself and puts etcd, the stand-ins and
the benchmark's own process on the other CPUs: in production etcd and the agents run on
other machines; on a 2-core machine unpinned, all of them share both cores.

Everything runs on loopback and is stopped on the way out; every phase has a deadline
(--timeout); a phase that times out is reported with how far it got, and the phases that
depend on it are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

from bench.agent_latency import measure_floor
from bench.scale_parts import (
    KS,
    EtcdMetrics,
    etcd_work,
    PhaseTimeout,
    ReadyTracker,
    Standins,
    change_latencies,
    CpuSample,
    Scraper,
    controller_sample,
    controller_txns,
    controller_usage,
    cpu_between,
    cpu_sample,
    etcd_size,
    intent,
    model_name,
    ms,
    scan_log,
    wait_quiet,
    section_sizes,
    write_intents,
    writes_per_change,
)
from bench.standin import host_names
from tfleet import logs
from tfleet.etcd_local import LocalEtcd, free_port
from tfleet.procs import Daemon, wait_for
from tfleet.registry import Registry
from tfleet.store import EtcdSettings, EtcdStore, StoreError, WatchEvent

GIB = 1024**3
# etcd settings of the run (recorded in the output): a large fleet needs a bigger quota than
# the 2 GiB default, and compaction, or the MVCC history of status writes fills it.
ETCD_SETTINGS = {
    "--quota-backend-bytes": str(8 * GIB),
    "--auto-compaction-mode": "periodic",
    "--auto-compaction-retention": "5m",
    "--max-request-bytes": str(int(1.5 * 1024**2)),  # etcd's default, stated
    "--max-txn-ops": "128",  # etcd's default, stated
    "--snapshot-count": "100000",  # etcd 3.5's default, stated
    "--metrics": "extensive",  # (gRPC handling-time histograms: a Txn's time in etcd)
}
PRESETS = {"small": (50, [500]), "full": (1000, [10_000, 100_000])}


# -- one run -------------------------------------------------------------------------------------


def run(hosts: int, models: int, options: argparse.Namespace, root: pathlib.Path, say: Callable[[str], None]) -> dict:
    result: dict = {
        "hosts": hosts,
        "models": models,
        "replicas": 2,
        "intent_writer": options.intent_writer,
        "lease_ttl": options.ttl,
        "etcd_settings": {**ETCD_SETTINGS, "--unsafe-no-fsync": options.unsafe_no_fsync},
        "phases": {},
    }
    timeout = options.timeout
    rng = random.Random(options.seed)
    with ExitStack() as stack:
        etcd = LocalEtcd(root / "etcd", unsafe_no_fsync=options.unsafe_no_fsync, extra_args=[f"{k}={v}" for k, v in ETCD_SETTINGS.items()])
        etcd.start()
        stack.callback(etcd.stop)
        store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,), call_timeout=10.0))
        stack.callback(store.close)
        metrics = EtcdMetrics(etcd)
        registry = Registry(store, KS)

        floor = measure_floor(store, 200)
        result["floor_put_watch_ms"] = ms(floor)
        say(
            f"  floor    etcd put -> watch                 p50 {result['floor_put_watch_ms']['p50']:8.1f} ms  p99 {result['floor_put_watch_ms']['p99']:8.1f} ms"
        )

        tracker = ReadyTracker(store)
        stack.callback(tracker.close)
        started = time.perf_counter()
        standins = Standins(etcd.client_url, hosts, options.ttl, root / "standin.log")
        stack.callback(standins.stop)
        standins.expect("ready", timeout)
        say(f"  {hosts} stand-in hosts registered in {time.perf_counter() - started:.1f} s")

        controller_log = root / "controller.log"
        controller_port = free_port()
        metrics_url = f"http://127.0.0.1:{controller_port}/metrics"
        controller = Daemon(
            "controller",
            [
                "controller",
                "--id",
                "bench-ctl",
                "--etcd",
                etcd.client_url,
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(controller_port),
                "--lease-ttl",
                str(options.controller_ttl),
                "--etcd-timeout",
                str(options.controller_etcd_timeout),
                "--log-level",
                "info",
            ],
            controller_log,
        )
        controller.start()
        stack.callback(controller.stop)
        if options.pin_controller:
            assert controller.process is not None
            result["pinned"] = pin_apart(controller.process.pid, [etcd.pid, standins.process.pid, os.getpid()])
        result["controller_command"] = "tfleet " + " ".join(controller.args)
        wait_for(lambda: store.get(KS.leader()) is not None, timeout, "the controller to lead")
        scraper = Scraper(metrics_url, options.scrape_every)
        stack.callback(lambda: result.__setitem__("scrapes", scraper.stop()))

        phases = result["phases"]
        try:
            # -- floor: change -> ready with 10 models ------------------------------------------
            floor_models = [f"f{i:02d}" for i in range(10)]
            write_intents(store, floor_models, options.intent_writer)
            tracker.want({m: 2 for m in floor_models})
            tracker.wait_all_ready(timeout, "10 floor models")
            if "changes" not in options.skip:
                lat = change_latencies(store, registry, tracker, floor_models, options.changes, timeout)
                phases["change_to_ready_10_models_ms"] = ms(lat)
                say(
                    f"  floor    change -> ready, 10 models        p50 {phases['change_to_ready_10_models_ms']['p50']:8.1f} ms  p99 {phases['change_to_ready_10_models_ms']['p99']:8.1f} ms"
                )
                phases["writes_per_change_10_models"] = writes_per_change(store, registry, tracker, metrics, floor_models[0], options.settle, timeout)
                say(f"  floor    one change at 10 models: {phases['writes_per_change_10_models']}")

            # -- convergence ---------------------------------------------------------------------
            names = [model_name(i) for i in range(models)]
            cpu_before = controller_usage(controller)["cpu_s"]
            sent = time.perf_counter()
            write_intents(store, names, options.intent_writer)
            written = time.perf_counter() - sent
            tracker.want({m: 2 for m in names})
            try:
                done = tracker.wait_all_ready(timeout, f"{models} models")
                phases["converge_s"] = round(done - sent, 1)
                say(f"  converge {models} models x 2 replicas: {phases['converge_s']} s (intents written in {written:.1f} s)")
            finally:
                phases["converge_controller_cpu_s"] = round((controller_usage(controller)["cpu_s"] or 0) - (cpu_before or 0), 1)
                phases["after_converge"] = {"controller": controller_usage(controller), "etcd": etcd_size(metrics)}
                say(f"  after converging: controller {phases['after_converge']['controller']}, etcd {phases['after_converge']['etcd']}")
                try:
                    phases["after_converge"]["sections"] = section_sizes(store)
                except StoreError as exc:
                    phases["after_converge"]["sections"] = f"failed: {exc}"
                say(f"  keys     {phases['after_converge']['sections']}")

            # -- change -> ready at scale -------------------------------------------------------
            # In the steady state: first the controller's backlog of the mass write (history
            # entries, route tables) drains; how long that takes is a figure of its own.
            if options.drain:

                def history_behind() -> float:  # (no answer: not known to be caught up)
                    lag = controller_sample(metrics_url, "tfleet_controller_history_lag_revisions")
                    return 1.0 if lag is None else lag

                phases["backlog_drained_s"] = round(wait_quiet(metrics, timeout, behind=history_behind), 1)
                say(f"  backlog  the mass write's backlog (history, routes) drained in {phases['backlog_drained_s']} s")
            if "changes" not in options.skip:
                sample = rng.sample(names, options.changes)
                lat = change_latencies(store, registry, tracker, sample, options.changes, timeout)
                phases["change_to_ready_ms"] = ms(lat)
                ratio = phases["change_to_ready_ms"]["p99"] / max(phases["change_to_ready_10_models_ms"]["p99"], 0.001)
                say(
                    f"  scale    change -> ready, {models} models  p50 {phases['change_to_ready_ms']['p50']:8.1f} ms  p99 {phases['change_to_ready_ms']['p99']:8.1f} ms"
                    f"  ({ratio:.1f} x the 10-model p99)"
                )
                phases["writes_per_change"] = writes_per_change(store, registry, tracker, metrics, names[1], options.settle, timeout)
                say(f"  scale    one change at {models} models: {phases['writes_per_change']}")

            # -- history grows, then a new model -------------------------------------------------
            if "history" not in options.skip:
                history_models = names[-options.history_models :]
                sent = time.perf_counter()
                for i in range(options.history_edits):
                    model = history_models[i % len(history_models)]
                    registry.apply_intent(model, intent(model, 2, description=f"edit {i}"), author="bench")
                    tracker.want({model: 2})
                phases["history_edits"] = {"edits": options.history_edits, "models": len(history_models), "seconds": round(time.perf_counter() - sent, 1)}
                tracker.wait_all_ready(timeout, "after the history edits")
                new = "new-after-history"
                tracker.watch_model(new, 2)
                sent = time.perf_counter()
                revision = registry.apply_intent(new, intent(new, 2), author="bench")
                tracker.want({new: 2})
                tracker.wait_ready(new, 2, timeout, revision)
                placed_at, ready_at = tracker.timings(new)
                phases["new_model_after_history_s"] = {
                    "placed": round(placed_at - sent, 3) if placed_at else None,
                    "ready": round(ready_at - sent, 3) if ready_at else None,
                }
                say(
                    f"  history  {options.history_edits} edits in {phases['history_edits']['seconds']} s; then a new model placed in "
                    f"{phases['new_model_after_history_s']['placed']} s, ready in {phases['new_model_after_history_s']['ready']} s"
                )

            # -- silent loss of hosts ------------------------------------------------------------
            victims = sorted(rng.sample(host_names(hosts), max(1, round(hosts * options.loss))))
            gone: dict[str, float] = {}
            gone_lock = threading.Lock()

            # (the machine's and the processes' CPU when the first lease expired: the window
            # from there until every lost replica is re-placed is the one the target judges)
            first_expiry: list[CpuSample] = []

            def on_hosts(events: list[WatchEvent]) -> None:
                now = time.perf_counter()
                with gone_lock:
                    for e in events:
                        name = KS.classify(e.key).leaf
                        if e.kind == "delete" and name in victim_set:
                            gone.setdefault(name, now)
                    if gone and not first_expiry:
                        first_expiry.append(cpu_sample(live_pids, processes["controller"]))

            victim_set = set(victims)
            hosts_watch = store.watch_prefix(KS.hosts_prefix(), store.list_prefix(KS.leader()).revision + 1, on_events=on_hosts, on_reset=lambda s: None)
            try:
                # (bench: this process, whose watches tell when models are placed and ready)
                processes = {
                    "controller": controller.process.pid if controller.process else None,
                    "etcd": etcd.pid,
                    "standins": standins.process.pid,
                    "bench": os.getpid(),
                }
                live_pids = {name: pid for name, pid in processes.items() if pid is not None}
                at_kill = cpu_sample(live_pids, processes["controller"])
                etcd_before = metrics.read()
                txns_before = controller_txns(metrics_url)
                killed_at = time.perf_counter()
                for start in range(0, len(victims), 200):
                    standins.command("kill " + " ".join(victims[start : start + 200]))
                tracker.set_dead(frozenset(victims))
                wait_for(lambda: len(gone) == len(victims), options.ttl * 3 + timeout, f"{len(victims)} leases to expire", interval=0.1)
                expired_at = max(gone.values())
                placed = tracker.wait_all_placed(timeout, f"{len(victims)} hosts lost")
                at_placed = cpu_sample(live_pids, processes["controller"])
                done = tracker.wait_all_ready(timeout, f"{len(victims)} hosts lost")
                # (what each process spent from the kill until every model was ready again: on this
                # 2-core machine the stand-ins, etcd and the controller share the cores)
                cpu_used = cpu_between(at_kill, cpu_sample(live_pids, processes["controller"]), done - killed_at)["cpu_s"]
                etcd_did = etcd_work(etcd_before, metrics.read())
                txns_after = controller_txns(metrics_url)
                sent = txns_after["count"] - txns_before["count"]
                # (the controller's write transactions meanwhile, from its send to etcd's answer:
                # against etcd's txn_handling_mean_ms, what of it was etcd's)
                etcd_did["controller_txns"] = {
                    "count": int(sent),
                    "mean_ms": round(1000 * (txns_after["sum"] - txns_before["sum"]) / sent, 2) if sent else None,
                }
            finally:
                hosts_watch.cancel()
            phases["host_loss"] = {
                "hosts_lost": len(victims),
                "first_lease_expired_after_s": round(min(gone.values()) - killed_at, 1),
                "leases_expired_after_s": round(expired_at - killed_at, 1),
                "replaced_after_expiry_s": round(placed - expired_at, 1),
                "replaced_after_kill_s": round(placed - killed_at, 1),
                "ready_after_expiry_s": round(done - expired_at, 1),
                "ready_after_kill_s": round(done - killed_at, 1),
                "target_s": options.ttl + 5,
                "cpu_s_kill_to_ready": cpu_used,
                "first_expiry_to_replaced": cpu_between(first_expiry[0], at_placed, placed - min(gone.values())) if first_expiry else None,
                "etcd_kill_to_ready": etcd_did,
            }
            say(
                f"  loss     {len(victims)} hosts silent: leases expired {phases['host_loss']['first_lease_expired_after_s']}-{phases['host_loss']['leases_expired_after_s']} s after the kill, "
                f"every lost replica re-placed {phases['host_loss']['replaced_after_expiry_s']} s later ({phases['host_loss']['replaced_after_kill_s']} s after the kill), "
                f"every model ready again {phases['host_loss']['ready_after_expiry_s']} s later ({phases['host_loss']['ready_after_kill_s']} s after the kill)"
            )
            say(f"  loss     CPU seconds from the kill until every model was ready: {cpu_used}")
            window = phases["host_loss"]["first_expiry_to_replaced"]
            if window is not None:
                say(
                    f"  loss     from the first expiry until re-placed ({window['seconds']} s): the machine kept {window['machine_busy_cores']} of {window['cores']} cores busy; "
                    f"CPU seconds {window['cpu_s']}; the controller's pass thread {window['pass_thread']['on_core_s']} s on a core, "
                    f"{window['pass_thread']['waiting_for_core_s']} s waiting for one"
                )
            say(f"  loss     etcd from the kill until every model was ready: {etcd_did}")
        except (PhaseTimeout, TimeoutError, StoreError) as exc:
            phases["failed"] = f"{type(exc).__name__}: {exc}"
            say(f"  FAILED   {phases['failed']}")
        result["final"] = {"controller": controller_usage(controller), "etcd": etcd_size(metrics), "controller_running": controller.running}
        result["scrapes"] = scraper.stop()
        say(f"  scrapes  the controller's /metrics, as Prometheus: {result['scrapes']}")
        standins.command("stats")
        try:
            result["standins"] = standins.expect("stats", 30)
        except (PhaseTimeout, RuntimeError) as exc:
            result["standins"] = str(exc)
        say(f"  final    controller {result['final']['controller']}, etcd {result['final']['etcd']}")
        controller.stop()
        result["controller_log"] = scan_log(controller_log)
        say(f"  log      size errors: {result['controller_log']['size_errors']}; warnings/errors: {result['controller_log']['warnings_errors']}")
        for example in result["controller_log"]["size_error_examples"]:
            say(f"           {example}")
    return result


def pin_apart(alone: int, others: list[int | None]) -> dict:
    """Pin every thread of process ``alone`` to CPU 0 and every thread of the others to the
    remaining CPUs (threads started later inherit it). Returns what was pinned where."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin-controller needs 2 CPUs or more")
    first, rest = {cpus[0]}, set(cpus[1:])
    for pid, where in [(alone, first), *((p, rest) for p in others if p is not None)]:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), where)
            except ProcessLookupError:
                pass  # (a thread that just ended)
    return {"controller": sorted(first), "others": sorted(rest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="small: 50 hosts x 500 models; full: 1,000 hosts x 10,000 and 100,000 models")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--models", default="10000", help="model counts, comma-separated: one fresh run each")
    parser.add_argument("--changes", type=int, default=50, help="intent changes measured (at 10 models and at scale)")
    parser.add_argument("--history-edits", type=int, default=4000)
    parser.add_argument("--history-models", type=int, default=40, help="models the history edits are spread over")
    parser.add_argument(
        "--skip",
        type=lambda text: frozenset(part for part in text.split(",") if part),
        default=frozenset(),
        help="phases left out, comma-separated: changes (change -> ready, writes per change), history (the edits, then a new model); for a quicker look at the others",
    )
    parser.add_argument("--loss", type=float, default=0.1, help="share of hosts that die silently")
    parser.add_argument("--ttl", type=int, default=10, help="the stand-in hosts' lease TTL, seconds")
    parser.add_argument("--controller-ttl", type=int, default=10)
    parser.add_argument("--controller-etcd-timeout", type=float, default=2.0, help="the controller's --etcd-timeout")
    parser.add_argument("--intent-writer", choices=("etcdctl", "registry"), default="etcdctl")
    parser.add_argument(
        "--no-drain",
        dest="drain",
        action="store_false",
        help="measure change -> ready at once after convergence, behind the mass write's backlog (default: after it drained)",
    )
    parser.add_argument("--settle", type=float, default=1.5, help="quiet seconds after a change when counting its writes")
    parser.add_argument("--timeout", type=float, default=900, help="deadline of each phase, seconds")
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=15.0,
        help="seconds between GETs of the controller's /metrics, as Prometheus scrapes it (deploy/prometheus: 15 s); 0: none",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unsafe-no-fsync", action="store_true", help="run etcd without fsync (faster disks than this machine's)")
    parser.add_argument(
        "--pin-controller",
        action="store_true",
        help="the controller alone on CPU 0, etcd, the stand-ins and this process on the others (as in production, where etcd and the agents run elsewhere)",
    )
    parser.add_argument(
        "--keep", type=pathlib.Path, help="keep etcd's data and the logs under this directory (a new or empty one: every run starts on a fresh etcd)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON results")
    options = parser.parse_args(argv)
    logs.configure("warning")  # the Registry logs every change it writes
    hosts, counts = options.hosts, [int(x) for x in options.models.split(",")]
    if options.preset:
        hosts, counts = PRESETS[options.preset]
    say = (lambda line: None) if options.json else (lambda line: print(line, flush=True))
    results = []
    for count in counts:
        say(f"{hosts} hosts x {count} models (2 replicas each), intents written {options.intent_writer}-style")
        if options.keep:
            root = options.keep / f"{hosts}x{count}"
            if root.exists() and any(root.iterdir()):  # (a kept etcd would be started again: not a fresh run)
                parser.error(f"--keep: {root} is not empty; give a new directory")
            root.mkdir(parents=True, exist_ok=True)
            results.append(run(hosts, count, options, root, say))
        else:
            root = pathlib.Path(tempfile.mkdtemp(prefix="tfleet-scale-"))
            try:
                results.append(run(hosts, count, options, root, say))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(results[-1]), flush=True)
    return 0 if all("failed" not in r["phases"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
