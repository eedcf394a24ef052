"""Fuzz running daemons through etcd: no value may stop a daemon, vanish, or unload a good model.

A real etcd, one agent in front of the TF Serving simulator and one controller (in-process,
the integration harnesses) serve a good model. A seeded generator (tests/adversarial.py)
then writes random and adversarial values (deep nesting, invalid UTF-8 and escapes, control
characters, huge and negative numbers, wrong types, strings near etcd's 1.5 MiB request
limit, odd key names) into every key kind the daemons read: models/, assignments/<host>/,
hosts/, hostctl/, schedules/, versions/, status/, the leader key, modelstatus/, routes/,
history/ and historycursor (the history recorder), and the agent's own keys (hosts/h1 and
status/h1/..., which it writes back; an invalid hosts/h1 must not make the controller count
h1 as gone while the key exists).

Afterwards:

* both daemons run: their threads are alive, their loops ran recently, no pass ended in an
  unexpected error (tfleet_*_pass_errors_total stays 0), a controller leads, the leader key
  is bound to its lease again;
* every bad value is reported: in <prefix>/problems (the controller's list), and for an
  assignment also in the agent's status/<host>/<model>.error;
* the good model was never unloaded: the simulator loaded it exactly once and serves it, and
  its status shows it AVAILABLE;
* the agent owns its keys again: hosts/h1 and every status/h1/ key are valid and bound to its
  lease; the history recorder runs and its cursor is valid again.

TFLEET_FUZZ_EXAMPLES sets the number of values (default 600, about 10 s; 5000 took 66 s on
a 2-core machine); TFLEET_FUZZ_SEED the seed (printed on failure).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.adversarial import adversarial_value, is_valid
from tests.helpers import wait_until
from tests.integration.agent_harness import stop_running
from tests.integration.controller_harness import ControlledFleet, add_host, start_controller
from tfleet import schema
from tfleet.schema import FleetProblems, LeaderRecord
from tfleet.sim.fixtures import make_model

EXAMPLES = int(os.environ.get("TFLEET_FUZZ_EXAMPLES", "600"))
SEED = os.environ.get("TFLEET_FUZZ_SEED", "tfleet-fuzz-1")
LIVE_BYTES = 8_000_000
ODD_NAMES = ["bad name", "..", "x" * 200, "\u00fc", "a/b", "-lead", "\u00b2", "tab\tname", ""]

pytestmark = pytest.mark.slow


def _name(rng: random.Random, stem: str, index: int) -> str:
    return rng.choice(ODD_NAMES) if rng.random() < 0.1 else f"{stem}-{index}"


def _targets(ks, rng: random.Random, index: int) -> list[tuple[str, type, bool | str]]:
    """(key, schema model, may it hold a valid value) for one example: each section in its own
    name space, so that one section's writes never collide with another's (an intent fm-1
    makes the controller assign fm-1, never the fuzzer's fa-1)."""
    fake_host = f"fh-{index % 7}"
    return [
        (ks.models_prefix() + _name(rng, "fm", index), schema.ModelIntent, True),
        (ks.assignments_prefix("h1") + _name(rng, "fa", index), schema.Assignment, True),
        (ks.hosts_prefix() + _name(rng, "fh", index), schema.HostRecord, True),
        (ks.hostctl_prefix() + _name(rng, "fh", index), schema.HostControl, True),
        (ks.hostctl("h1"), schema.HostControl, False),  # never cordon or drain the only real host
        (f"{ks.schedules_prefix()}fs-{index % 11}/{_name(rng, 's', index)}", schema.ScheduledAction, True),
        (f"{ks.versions_prefix()}fv-{index % 11}/{rng.choice([str(index), 'x', '-1', chr(178), '9' * 30])}", schema.VersionRecord, True),
        (ks.status_prefix(fake_host) + _name(rng, "fst", index), schema.ModelStatus, True),
        (ks.status_prefix(fake_host) + "good", schema.ModelStatus, True),
        (ks.leader(), schema.LeaderRecord, True),
        (ks.modelstatus_prefix() + _name(rng, "fms", index), schema.ModelStatusReport, True),
        (ks.modelstatus("good"), schema.ModelStatusReport, False),  # the controller's memory of good
        (ks.routes_prefix() + rng.choice(["good", f"fr-{index}"]), schema.RouteTable, True),
        (ks.history_prefix(f"fm-{index % 13}") + rng.choice([f"{index % 5 + 1:012d}", f"{index:012d}", "x", "-1", "9" * 30]), schema.HistoryEntry, True),
        (ks.history_cursor(), schema.HistoryCursor, True),
        # the agent's own keys: it writes them back (so they are not in <prefix>/problems).
        # hosts/h1 too: while it holds an invalid value the controller keeps h1's last valid
        # record (the key still exists), so h1's replicas stay where they are.
        (ks.host("h1"), schema.HostRecord, True),
        (ks.status_prefix("h1") + _name(rng, "fst", index), schema.ModelStatus, True),
        (ks.status_prefix("h1") + "good", schema.ModelStatus, False),
    ]


def _name_is_valid(ks, key: str) -> bool:
    return ks.classify(key).ok  # the one parser of keys: what the controller files


@pytest.fixture
def fuzz_fleet(store, prefix, etcd_server, sim_factory, tmp_path):
    fleet = ControlledFleet(store, prefix)
    agent = add_host(fleet, "h1", sim_factory, etcd_server.client_url, prefix, tmp_path)
    controller = start_controller("c1", etcd_server.client_url, prefix)
    yield fleet, agent, controller
    stop_running(controller, agent)


def test_no_value_stops_a_daemon_vanishes_or_unloads_a_good_model(fuzz_fleet, models_dir) -> None:
    fleet, agent, controller = fuzz_fleet
    ks, sim = fleet.keyspace, fleet.sims["h1"]
    make_model(models_dir, "good", [1])
    wait_until(lambda: controller.is_leader, 20, message="c1 leads")
    fleet.declare("good", {"base_path": str(models_dir / "good"), "model_version_policy": {"specific": {"versions": [1]}}})
    fleet.wait_ready("good", 1, 1, timeout=40)

    rng = random.Random(SEED)
    written: dict[str, tuple[type, bytes]] = {}
    live = 0
    started = time.monotonic()
    for index in range(EXAMPLES):
        key, model, may_be_valid = rng.choice(_targets(ks, rng, index))
        # a few values near etcd's 1.5 MiB request limit (together beyond gRPC's default 4 MiB
        # message); all values together stay under LIVE_BYTES, as each pass reads them all
        value = adversarial_value(rng, model, kind="biggest" if index % 100 == 50 and index < 350 else None)
        while live + len(value) - len(written.get(key, (None, b""))[1]) > LIVE_BYTES:
            value = adversarial_value(rng, model, huge=False)
        if not may_be_valid and is_valid(model, value):
            continue
        # half the hand-written host records keep the agent's lease (etcdctl put --lease),
        # half detach the key from it (a plain etcdctl put): neither makes h1 gone
        lease = agent.agent.lease.lease_id if key == ks.host("h1") and rng.random() < 0.5 else None
        fleet.store.put(key, value, lease=lease)
        live += len(value) - len(written.get(key, (None, b""))[1])
        written[key] = (model, value)
        if index % 50 == 49:  # the good model stays served all along, not just at the end
            assert sim.manager.serving("good", 1) is not None, f"good unloaded after {index + 1} values (seed {SEED})"
    write_seconds = time.monotonic() - started

    # -- both daemons run, their loops too ------------------------------------------------------
    assert agent.thread.is_alive() and controller.thread.is_alive(), f"a daemon exited (seed {SEED})"
    beat = agent.agent.loop.beat
    wait_until(lambda: agent.agent.loop.beat > beat, 20, message="the agent's loop still runs")
    wait_until(lambda: controller.is_leader, 30, message=f"a controller leads (seed {SEED})")

    def leader_key_leased():
        kv = fleet.store.get(ks.leader())
        return kv is not None and kv.lease != 0 and schema.parse(LeaderRecord, kv.value, kv.key).id == "c1"

    wait_until(leader_key_leased, 30, message="the leader key is bound to the leader's lease again")

    # -- every bad value is reported --------------------------------------------------------------
    checked_sections = {"models", "assignments", "hosts", "hostctl", "schedules", "versions", "status"}
    # the agent writes its own keys back; one under status/h1/ with an invalid name it leaves
    # alone (it could not have written it): that one is a problem like any other
    owned = (ks.host("h1"), ks.status_prefix("h1"))
    expected = {
        key
        for key, (model, value) in written.items()
        if ks.section_of(key) in checked_sections
        and not (key.startswith(owned) and _name_is_valid(ks, key))
        and (not _name_is_valid(ks, key) or not is_valid(model, value))
    }

    def reported() -> set[str]:
        kv = fleet.store.get(ks.problems())
        if kv is None:
            return set()
        document = schema.parse(FleetProblems, kv.value, kv.key)
        listed = {p.key for p in document.problems}
        last = max(listed) if listed else ""
        # the list holds the first 200 by key; a key beyond it is counted in total only
        return {key for key in expected if key in listed or (key > last and document.total >= len(expected))}

    wait_until(
        lambda: reported() >= expected,
        60,
        interval=0.5,
        message=f"every bad value in {ks.problems()}; missing {sorted(expected - reported())[:5]} (seed {SEED})",
    )
    for key in expected:
        if ks.section_of(key) == "assignments" and _name_is_valid(ks, key):
            model = ks.model_of_assignment(key, "h1")
            fleet.wait_status("h1", model, lambda s: s.error is not None, timeout=30, what="to report the bad assignment")

    # -- the good model was never unloaded; nothing failed unexpectedly ---------------------------------
    assert sim.manager.serving("good", 1) is not None
    assert sim.load_count("good", 1) == 1, "good was loaded again: it was unloaded in between"
    assert fleet.status("h1", "good").versions["1"].state == "AVAILABLE"
    assert agent.counter("tfleet_agent_pass_errors_total") == 0

    # -- the agent owns its keys again; the history recorder runs ------------------------------------
    def keys_not_the_agents() -> list[str]:
        lease = agent.agent.lease.lease_id
        kvs = [fleet.store.get(ks.host("h1")), *(kv for kv in fleet.store.list_prefix(ks.status_prefix("h1")).items if _name_is_valid(ks, kv.key))]
        return [
            kv.key if kv is not None else ks.host("h1")
            for kv in kvs
            if lease is None or kv is None or kv.lease != lease or not is_valid(schema.HostRecord if kv.key == ks.host("h1") else schema.ModelStatus, kv.value)
        ]

    def agent_owns_its_keys() -> bool:
        return not keys_not_the_agents()

    if not wait_until(agent_owns_its_keys, 60, interval=0.5, raise_on_timeout=False):
        pytest.fail(f"hosts/h1 and status/h1/ are the agent's again; not yet: {keys_not_the_agents()[:5]} (seed {SEED})")
    assert controller.controller.history.alive

    def cursor_valid() -> bool:
        kv = fleet.store.get(ks.history_cursor())
        return kv is not None and is_valid(schema.HistoryCursor, kv.value)

    fleet.declare("fm-after", {"base_path": str(models_dir / "good"), "replicas": 0})  # a change to record
    wait_until(cursor_valid, 30, message=f"the history recorder writes a valid cursor again (seed {SEED})")
    assert controller.controller.metrics.registry.get_sample_value("tfleet_controller_history_recorder_errors_total") == 0
    assert controller.controller.metrics.registry.get_sample_value("tfleet_controller_pass_errors_total") == 0
    print(f"fuzz: {len(written)} keys written in {write_seconds:.1f} s, {len(expected)} bad values reported (seed {SEED})")
