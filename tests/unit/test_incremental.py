"""The incremental planner must want exactly the writes the full planner wants, pass after
pass, through random sequences of changes (intents, hosts, cordons, agent reports)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from tfleet import health, schema
from tfleet.controller.incremental import IncrementalPlanner
from tfleet.controller.planner import plan
from tfleet.controller.snapshot import SnapshotReader, change_sets
from tfleet.keyspace import Keyspace
from tfleet.schema import HostControl, HostRecord, ModelIntent, ModelStatus
from tfleet.store import KeyValue, Snapshot

KS = Keyspace()
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


class World:
    """A key-value fleet the test mutates; writes of a plan land, agents report at once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items: dict[str, bytes] = {}
        self.revisions: dict[str, int] = {}
        self.revision = 0

    def put(self, key: str, value) -> None:
        self.revision += 1
        self.items[key] = value if isinstance(value, bytes) else schema.encode(value)
        self.revisions[key] = self.revision

    def delete(self, key: str) -> None:
        self.items.pop(key, None)
        self.revisions.pop(key, None)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.revision, tuple(KeyValue(k, v, self.revisions[k], self.revisions[k], 1, 0) for k, v in self.items.items()))

    def host(self, name: str, memory: int = 2000) -> None:
        self.put(
            KS.host(name),
            HostRecord(
                host=name, grpc_address="x:1", rest_address="x:2", memory_mb=memory, labels={"zone": "ab"[int(name[1:]) % 2]}, agent_version="t", started_at=NOW
            ),
        )

    def intent(self, model: str) -> None:
        versions = sorted(self.rng.sample([1, 2, 3], self.rng.randint(1, 2)))
        self.put(
            KS.model(model),
            ModelIntent.model_validate(
                {
                    "base_path": f"/m/{model}",
                    "model_version_policy": {"specific": {"versions": versions}},
                    "version_labels": {"stable": versions[-1]},
                    "replicas": self.rng.randint(0, 3),
                    "memory_mb": self.rng.choice([300, 600, 900]),
                    **({"spread_by": "zone"} if self.rng.random() < 0.5 else {}),
                }
            ),
        )

    def apply(self, result) -> None:
        for (host, model), assignment in result.puts.items():
            self.put(KS.assignment(host, model), assignment)
            if KS.host(host) in self.items and self.rng.random() < 0.8:  # most agents report at once
                versions = assignment.model_version_policy.specific.versions
                self.put(
                    KS.status(host, model),
                    ModelStatus(
                        assignment_revision=self.revisions[KS.assignment(host, model)],
                        versions={str(v): {"state": "AVAILABLE"} for v in versions},
                        version_labels=assignment.version_labels,
                        updated_at=NOW,
                    ),
                )
        for host, model in result.deletes:
            self.delete(KS.assignment(host, model))
            self.delete(KS.status(host, model))
        for model, report in result.reports.items():
            self.put(KS.modelstatus(model), report)
        for model in result.report_deletes:
            self.delete(KS.modelstatus(model))

    def random_change(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            self.intent(f"m{self.rng.randint(0, 9)}")
        elif roll < 0.55:
            self.delete(KS.model(f"m{self.rng.randint(0, 9)}"))
        elif roll < 0.7:
            self.host(f"h{self.rng.randint(0, 5)}", memory=self.rng.choice([1000, 2000, 4000]))
        elif roll < 0.8:
            self.delete(KS.host(f"h{self.rng.randint(0, 5)}"))
        elif roll < 0.9:
            self.put(KS.hostctl(f"h{self.rng.randint(0, 5)}"), HostControl(cordoned=self.rng.random() < 0.5, draining=self.rng.random() < 0.3))
        else:
            pending = [k for k in self.items if k.startswith(KS.assignments_prefix())]
            if pending:  # a slow agent reports now
                key = self.rng.choice(pending)
                host, model = KS.parse_host_model(key, "assignments")
                assignment = schema.parse(schema.Assignment, self.items[key], key)
                versions = assignment.model_version_policy.specific.versions
                self.put(
                    KS.status(host, model),
                    ModelStatus(
                        assignment_revision=self.revisions[key],
                        versions={str(v): {"state": "AVAILABLE"} for v in versions},
                        version_labels=assignment.version_labels,
                        updated_at=NOW,
                    ),
                )


def _needed(result, fleet) -> tuple[dict, frozenset, dict, frozenset]:
    """The writes a plan asks for that are not already in etcd."""
    reports = {
        m: r.model_dump(exclude={"updated_at"})
        for m, r in result.reports.items()
        if m not in fleet.modelstatus or r.model_dump(exclude={"updated_at"}) != fleet.modelstatus[m].model_dump(exclude={"updated_at"})
    }
    return dict(result.puts), result.deletes, reports, result.report_deletes


def _changed_sets(fleet) -> tuple[frozenset, frozenset, frozenset]:
    return fleet.changed_models, fleet.changed_hosts, fleet.changed_by_status


def _classified(before: Snapshot, after: Snapshot) -> tuple[frozenset, frozenset, frozenset]:
    """The change sets of the keys that changed between two snapshots, each key parsed
    (change_sets; the builder reads them from where the keys file instead)."""
    old = {kv.key: kv.mod_revision for kv in before.items}
    new = {kv.key: kv.mod_revision for kv in after.items}
    return change_sets(KS, {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)})


@pytest.mark.parametrize("resync", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_incremental_wants_what_full_wants(seed: int, resync: bool) -> None:
    """resync: each pass also plans a slice of unchanged models and hosts, as the rolling
    resync adds them (controller/resync.py): planning them again changes nothing."""
    rng = random.Random(seed)
    world = World(rng)
    for h in range(4):
        world.host(f"h{h}")
    for m in range(6):
        world.intent(f"m{m}")
    reader, planner = SnapshotReader(KS), IncrementalPlanner()
    previous: Snapshot | None = None
    for step in range(40):
        snapshot = world.snapshot()
        fleet = reader.read(snapshot)
        if previous is not None:  # (the builder's change sets, from where the changed keys file)
            assert _changed_sets(fleet) == _classified(previous, snapshot), f"seed {seed} step {step}"
        if resync and fleet.changed_models is not None and fleet.changed_hosts is not None:
            fleet.changed_models |= frozenset(rng.sample([f"m{m}" for m in range(10)], rng.randint(0, 3)))
            fleet.changed_hosts |= frozenset(rng.sample([f"h{h}" for h in range(6)], rng.randint(0, 2)))
        incremental = planner.plan(fleet, {}, NOW)
        full = plan(fleet, {}, NOW)
        assert _needed(incremental, fleet) == _needed(full, fleet), f"seed {seed} step {step}"
        for report in [*incremental.reports.values(), *full.reports.values()]:
            assert dict(health.health_fields(health.model_health(report))) == {
                "serving_replicas": report.serving_replicas,
                "health": report.health,
                "health_reason": report.health_reason,
            }, "a report's health is what the CLI and the dashboard judge from it"
        world.apply(full)
        previous = snapshot
        for _ in range(rng.randint(0, 2)):
            world.random_change()


def test_replica_of_a_dead_host_moves_in_the_incremental_pass() -> None:
    world = World(random.Random(0))
    for h in range(3):
        world.host(f"h{h}")
    world.put(KS.model("m"), ModelIntent.model_validate({"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 1}))
    reader, planner = SnapshotReader(KS), IncrementalPlanner()
    world.apply(planner.plan(reader.read(world.snapshot()), {}, NOW))
    planner.plan(reader.read(world.snapshot()), {}, NOW)  # the agent's report lands
    (holder,) = [KS.parse_host_model(k, "assignments")[0] for k in world.items if k.startswith(KS.assignments_prefix())]
    world.delete(KS.host(holder))
    result = planner.plan(reader.read(world.snapshot()), {}, NOW)
    assert [h for h, _ in result.puts] and holder not in [h for h, _ in result.puts]
    assert (holder, "m") in result.deletes


def test_model_is_planned_again_when_its_failure_backoff_ends() -> None:
    world = World(random.Random(0))
    world.host("h0")
    world.put(
        KS.model("m"),
        ModelIntent.model_validate(
            {"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 1, "rollout": {"failure_backoff_seconds": 60}}
        ),
    )
    reader, planner = SnapshotReader(KS), IncrementalPlanner()
    world.apply(planner.plan(reader.read(world.snapshot()), {}, NOW))
    world.apply(planner.plan(reader.read(world.snapshot()), {}, NOW))
    # roll out version 2, which fails to load
    world.put(
        KS.model("m"),
        ModelIntent.model_validate(
            {"base_path": "/m/m", "model_version_policy": {"specific": {"versions": [2]}}, "replicas": 1, "rollout": {"failure_backoff_seconds": 60}}
        ),
    )
    world.apply(planner.plan(reader.read(world.snapshot()), {}, NOW))
    key = KS.assignment("h0", "m")
    world.put(
        KS.status("h0", "m"),
        ModelStatus(
            assignment_revision=world.revisions[key],
            updated_at=NOW,
            versions={"1": {"state": "AVAILABLE"}, "2": {"state": "END", "error_code": 13, "error_message": "bad"}},
        ),
    )
    backoff = planner.plan(reader.read(world.snapshot()), {}, NOW)
    assert backoff.reports["m"].rollout.phase == "backoff"
    world.apply(backoff)
    planner.plan(reader.read(world.snapshot()), {}, NOW + dt.timedelta(seconds=30))
    retry = planner.plan(reader.read(world.snapshot()), {}, NOW + dt.timedelta(seconds=61))  # no key changed
    assert ("h0", "m") in retry.puts and retry.puts[("h0", "m")].model_version_policy.specific.versions == [1, 2]
