"""The scale benchmark's scenario, small enough for CI: the real controller on a real etcd with
50 stand-in hosts (bench/standin.py) and 500 models, a long history, then a new model and
the silent loss of 10 % of the hosts.

A regression that makes a pass grow with the keyspace or with history (a whole-prefix read,
a per-pass history scan) or that breaks re-placement after lease expiry fails here, long
before anyone runs `python -m bench.scale` at 100,000 models.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from bench.scale import ETCD_SETTINGS
from bench.scale_parts import ReadyTracker, intent, model_name, write_intents
from bench.standin import StandinFleet, host_names
from tests.helpers import wait_until
from tfleet import schema
from tfleet.controller.app import Controller
from tfleet.controller.settings import ControllerSettings
from tfleet.keyspace import Keyspace
from tfleet.registry import Registry
from tfleet.schema import HistoryEntry
from tfleet.store import EtcdSettings, EtcdStore, Put

HOSTS = 50
MODELS = 500
HISTORY_ENTRIES = 5_000
HISTORY_MODELS = 10
HOST_TTL = 4
KS = Keyspace()  # the bench's helpers use the default prefix; this etcd is private

pytestmark = pytest.mark.timeout(180)


def write_history(store: EtcdStore, models: list[str], entries: int) -> None:
    """`entries` history entries spread over `models`, after their first one, 100 per txn:
    a long-lived fleet's history, written in seconds rather than through 5,000 CLI edits."""
    now = schema.utc_now()
    ops = []
    for i in range(entries):
        model = models[i % len(models)]
        sequence = 2 + i // len(models)
        doc = intent(model, 2, description=f"edit {sequence}").model_dump(mode="json", by_alias=True)
        entry = HistoryEntry(
            sequence=sequence,
            model=model,
            action="update",
            revision=None,
            at=now - dt.timedelta(days=365) + dt.timedelta(minutes=i),
            author="ci",
            source="cli",
            previous=doc,
            new=doc,
        )
        ops.append(Put(KS.history(model, sequence), schema.encode(entry)))
    for start in range(0, len(ops), 100):
        store.txn([], ops[start : start + 100])


def test_small_fleet_converges_places_after_history_and_replaces_lost_hosts(etcd_factory) -> None:
    etcd = etcd_factory(extra_args=[f"{k}={v}" for k, v in ETCD_SETTINGS.items()])
    store = EtcdStore(EtcdSettings(endpoints=(etcd.client_url,), call_timeout=5.0))
    fleet = StandinFleet(store, KS, host_names(HOSTS), ttl=HOST_TTL)
    controller = Controller(
        ControllerSettings(
            id="scale-small",
            etcd=EtcdSettings(endpoints=(etcd.client_url,), call_timeout=2.0),
            http_port=0,
            http_host="127.0.0.1",
            lease_ttl=9,
            resync_interval=2.0,
            coalesce_window=0.05,
        )
    )
    thread = threading.Thread(target=controller.run, name="controller", daemon=True)
    tracker = None
    try:
        fleet.start()
        thread.start()
        wait_until(lambda: controller.election.is_leader, 20, message="the controller never led")
        tracker = ReadyTracker(store)
        registry = Registry(store, KS)

        names = [model_name(i) for i in range(MODELS)]
        started = time.monotonic()
        write_intents(store, names, "registry")
        tracker.want({m: 2 for m in names})
        tracker.wait_all_ready(40, f"{MODELS} models")
        converged = time.monotonic() - started

        write_history(store, names[:HISTORY_MODELS], HISTORY_ENTRIES)
        new = "new-after-history"
        tracker.watch_model(new, 2)
        sent = time.perf_counter()
        revision = registry.apply_intent(new, intent(new, 2), author="ci")
        tracker.want({new: 2})
        tracker.wait_ready(new, 2, 20, revision)
        placed, ready = tracker.timings(new)
        assert placed is not None and ready is not None
        # The bench's target is 1 s at 1,000 hosts x 10,000 models on an idle machine; CI's
        # two shared cores get a wider margin, still far below a pass that rereads history.
        assert placed - sent < 3.0, f"the new model was placed {placed - sent:.2f} s after its intent (converged in {converged:.1f} s)"

        victims = sorted(host_names(HOSTS)[::10])  # 10 %
        assert tracker.placed_on(victims), "the lost hosts held no replicas: the test would prove nothing"
        killed = time.monotonic()
        fleet.kill(victims)
        tracker.set_dead(frozenset(victims))
        assert tracker.pending() > 0, "no model lost a ready replica: the test would prove nothing"
        wait_until(
            lambda: all(store.get(KS.host(h)) is None for h in victims), HOST_TTL * 3 + 10, interval=0.2, message="the silent hosts' leases never expired"
        )
        expired = time.monotonic()
        tracker.wait_all_placed(15, f"{len(victims)} hosts lost")  # (bench/scale's "re-placed")
        tracker.wait_all_ready(15, f"{len(victims)} hosts lost")
        assert time.monotonic() - killed < HOST_TTL + 15, f"re-placed {time.monotonic() - expired:.1f} s after the leases expired"

        failed = controller.metrics.registry.get_sample_value("tfleet_controller_reconcile_total", {"result": "etcd_unavailable"}) or 0
        assert failed == 0, f"{failed:g} controller passes failed on etcd (e.g. a response over the size limit)"
        assert fleet.write_errors == 0 and fleet.renew_errors == 0, fleet.stats()
    finally:
        controller.stop()
        thread.join(15)
        if tracker is not None:
            tracker.close()
        fleet.stop()
        store.close()
