"""Table tests of the controller's fleet planner (controller/planner.py): ownership of keys,
invalid intents, deletions, and writes that scale with changes."""

from __future__ import annotations

import datetime as dt

from tfleet.controller.planner import DEFAULT_MEMORY_MB, MEMORY_ESTIMATE_FACTOR, estimate_memory_mb, plan
from tfleet.controller.snapshot import FleetSnapshot, Parsed
from tfleet.schema import Assignment, HostRecord, ModelIntent, ModelStatus, ModelStatusReport, VersionRecord

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def host(name: str, **labels) -> HostRecord:
    return HostRecord(host=name, grpc_address="x:1", rest_address="x:2", memory_mb=4096, labels=labels, agent_version="t", started_at=NOW)


def intent(**fields) -> ModelIntent:
    return ModelIntent.model_validate({"base_path": "/m", "model_version_policy": {"specific": {"versions": [1]}}, **fields})


def fleet(hosts=("h1", "h2"), intents=None, assignments=None, statuses=None, modelstatus=None) -> FleetSnapshot:
    snap = FleetSnapshot(revision=100)
    snap.hosts = {h: host(h) for h in hosts}
    for name, value in (intents or {}).items():
        snap.intents[name] = Parsed(value, None, 10) if isinstance(value, ModelIntent) else Parsed(None, value, 11)
    for (h, m), value in (assignments or {}).items():
        snap.add_assignment((h, m), Parsed(value, None, 20))
    snap.statuses = statuses or {}
    snap.modelstatus = modelstatus or {}
    return snap


def served(h: str, m: str, versions=(1,)) -> tuple[tuple[str, str], ModelStatus]:
    return (h, m), ModelStatus(assignment_revision=20, versions={str(v): {"state": "AVAILABLE"} for v in versions}, updated_at=NOW)


def test_new_model_gets_assignments_and_a_report() -> None:
    result = plan(fleet(intents={"m": intent(replicas=2)}), {}, NOW)
    assert set(result.puts) == {("h1", "m"), ("h2", "m")}
    assert result.reports["m"].wanted_replicas == 2
    assert not result.deletes


def test_converged_model_writes_nothing() -> None:
    wanted = intent(replicas=2).assignment()
    snap = fleet(
        intents={"m": intent(replicas=2)}, assignments={("h1", "m"): wanted, ("h2", "m"): wanted}, statuses=dict([served("h1", "m"), served("h2", "m")])
    )
    result = plan(snap, {}, NOW)
    assert not result.puts and not result.deletes
    assert result.reports["m"].ready_replicas == {"1": 2}


def test_operator_assignment_of_unmanaged_model_is_left_alone() -> None:
    handmade = Assignment(base_path="/x")
    result = plan(fleet(assignments={("h1", "handmade"): handmade}), {}, NOW)
    assert not result.puts and not result.deletes and not result.reports


def test_invalid_intent_keeps_last_valid_and_reports() -> None:
    wanted = intent().assignment()
    snap = fleet(intents={"m": "/tfleet/models/m: replicas: Input should be a valid integer"}, assignments={("h1", "m"): wanted})
    result = plan(snap, {"m": intent()}, NOW)
    assert not result.deletes
    assert "last valid intent keeps being served" in result.reports["m"].error


def test_invalid_intent_never_valid_places_nothing() -> None:
    result = plan(fleet(intents={"m": "bad"}), {}, NOW)
    assert not result.puts and "nothing is placed" in result.reports["m"].error


def test_deleted_intent_removes_assignments_then_its_report() -> None:
    gone = ModelStatusReport(intent_revision=10, updated_at=NOW)
    snap = fleet(assignments={("h1", "m"): intent().assignment()}, modelstatus={"m": gone})
    result = plan(snap, {}, NOW)
    assert result.deletes == {("h1", "m")} and not result.report_deletes
    assert plan(fleet(modelstatus={"m": gone}), {}, NOW).report_deletes == {"m"}


def test_dead_host_replica_is_replaced_and_its_assignment_deleted() -> None:
    wanted = intent().assignment()
    snap = fleet(hosts=("h2",), intents={"m": intent()}, assignments={("h1", "m"): wanted})
    result = plan(snap, {}, NOW)
    assert ("h2", "m") in result.puts and ("h1", "m") in result.deletes


def test_one_model_change_writes_only_that_model() -> None:
    intents = {f"m{i}": intent(replicas=1) for i in range(20)}
    assignments, statuses = {}, {}
    for i in range(20):
        place = ("h1" if i % 2 else "h2", f"m{i}")
        assignments[place] = intents[f"m{i}"].assignment()
        statuses.update([served(*place)])
    snap = fleet(intents=intents, assignments=assignments, statuses=statuses)
    assert not plan(snap, {}, NOW).puts
    snap.intents["m3"] = Parsed(intent(replicas=1, version_labels={"stable": 1}), None, 12)
    result = plan(snap, {}, NOW)
    assert {m for _, m in result.puts} == {"m3"}


def test_memory_estimate() -> None:
    assert estimate_memory_mb(intent(memory_mb=900), {}) == 900
    assert estimate_memory_mb(intent(), {}) == DEFAULT_MEMORY_MB
    record = VersionRecord(model="m", version=1, path="/m/1", checksum="sha256:0", size_bytes=100 * 1024 * 1024, created_at=NOW, registered_at=NOW)
    assert estimate_memory_mb(intent(), {1: record}) == int(100 * MEMORY_ESTIMATE_FACTOR)


def test_report_carries_health_agent_errors_and_the_versions_before_the_rollout() -> None:
    """The modelstatus fields added for health and abort (docs/keyspace.md) are pinned here."""
    old = intent(replicas=2, version_labels={"stable": 1}).assignment()
    new_intent = ModelIntent.model_validate(
        {"base_path": "/m", "model_version_policy": {"specific": {"versions": [2]}}, "version_labels": {"stable": 2}, "replicas": 2}
    )
    broken = ModelStatus(
        assignment_revision=20,
        versions={"1": {"state": "AVAILABLE"}},
        version_labels={"stable": 1},
        error="version 2 not found under base_path /m (it has 1)",
        updated_at=NOW,
    )
    snap = fleet(intents={"m": new_intent}, assignments={("h1", "m"): old, ("h2", "m"): old}, statuses={("h1", "m"): broken, ("h2", "m"): served("h2", "m")[1]})
    adding = plan(snap, {}, NOW).reports["m"]
    assert (adding.rollout.phase, adding.rollout.from_versions, adding.rollout.from_labels) == ("adding", [1], {"stable": 1})
    document = adding.model_dump(mode="json")
    assert {"serving_replicas", "health", "health_reason"} <= document.keys() and "from_labels" in document["rollout"]
    assert [r["errors"] for r in document["replicas"]] == [["version 2 not found under base_path /m (it has 1)"], []]
    assert (adding.serving_replicas, adding.health) == (2, "failing")
    assert adding.health_reason == "h1: version 2 not found under base_path /m (it has 1)"


def test_canary_reason_names_the_model_in_its_commands() -> None:
    stable = intent(replicas=2, version_labels={"stable": 1}).assignment()
    statuses = {
        place: ModelStatus(assignment_revision=20, versions={"1": {"state": "AVAILABLE"}}, version_labels={"stable": 1}, updated_at=NOW)
        for place in (("h1", "mnist"), ("h2", "mnist"))
    }
    canary = intent(replicas=2, model_version_policy={"specific": {"versions": [2]}}, version_labels={"stable": 2}, rollout={"strategy": "canary"})
    snap = fleet(intents={"mnist": canary}, assignments={("h1", "mnist"): stable, ("h2", "mnist"): stable}, statuses=statuses)
    reason = plan(snap, {}, NOW).reports["mnist"].rollout.reason
    assert "`tfleet rollout promote mnist`" in reason and "`tfleet rollout abort mnist`" in reason


def test_the_placement_input_holds_a_model_s_holders_once_when_every_replica_is_ready() -> None:
    """Memory at 100,000 models: the input's ready set is the snapshot's holders object when
    all are ready (not an equal copy), and only the ready ones otherwise."""
    from tfleet.controller.planner import placement_input, ready_holders

    a = Assignment.model_validate({"base_path": "/m", "model_version_policy": {"specific": {"versions": [1]}}})
    snap = fleet(intents={"m": intent(replicas=2)}, assignments={("h1", "m"): a, ("h2", "m"): a}, statuses=dict([served("h1", "m"), served("h2", "m")]))
    holders = snap.holders["m"]
    data = placement_input(snap, {}, snap.holders)
    assert data.ready["m"] is holders and data.current["m"] is holders
    del snap.statuses[("h2", "m")]
    assert ready_holders(snap, "m", holders) == {"h1"}
    assert ready_holders(snap, "m", {"h1"}) == {"h1"}  # (a plain set: a frozenset comes back)


def test_a_demand_equal_to_the_previous_one_is_the_previous_one() -> None:
    """demand_of gives back the model's previous demand when nothing placement reads changed
    (placement then finds it unchanged by identity), and a new one when anything did."""
    from tfleet.controller.planner import demand_of

    def intent(**changes) -> ModelIntent:
        document = {"base_path": "/m/a", "model_version_policy": {"specific": {"versions": [1]}}, "replicas": 2, "memory_mb": 300}
        return ModelIntent.model_validate({**document, **changes})

    snap = FleetSnapshot(1)
    previous = demand_of(snap, "a", intent())
    assert demand_of(snap, "a", intent(), previous) is previous
    assert demand_of(snap, "a", intent(version_labels={"stable": 1}), previous) is previous  # (not placement's)
    for changes in ({"replicas": 3}, {"memory_mb": 400}, {"host_selector": {"zone": "a"}}, {"spread_by": "zone"}):
        fresh = demand_of(snap, "a", intent(**changes), previous)
        assert fresh is not previous and fresh == demand_of(snap, "a", intent(**changes))
    assert demand_of(snap, "b", intent(), previous).name == "b"
