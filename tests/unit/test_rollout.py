"""Table tests of the pure rollout planner (controller/rollout.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from tfleet.controller.rollout import CANARY_LABEL, Failure, Replica, plan_rollout
from tfleet.schema import Assignment, ModelIntent, ModelStatus

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


def intent(versions, labels=None, **fields) -> ModelIntent:
    return ModelIntent.model_validate(
        {"base_path": "/m", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": labels or {}, "replicas": 2, **fields}
    )


def replica(host, versions, labels=None, states=None, applied_labels=None, revision=10) -> Replica:
    assignment = Assignment.model_validate(
        {"base_path": "/m", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": labels or {}}
    )
    status = None
    if states is not None:
        status = ModelStatus.model_validate(
            {
                "assignment_revision": revision,
                "versions": {str(v): s if isinstance(s, dict) else {"state": s} for v, s in states.items()},
                "version_labels": applied_labels if applied_labels is not None else (labels or {}),
                "updated_at": NOW.isoformat(),
            }
        )
    return Replica(host, assignment, status, revision)


def versions_of(step, host):
    return tuple(step.assignments[host].model_version_policy.specific.versions)


def labels_of(step, host):
    return dict(step.assignments[host].version_labels)


def test_fresh_model_gets_the_target_directly() -> None:
    step = plan_rollout(intent([1], {"stable": 1}), [Replica("h1", None, None), Replica("h2", None, None)], [], NOW)
    assert step.phase == "stable"
    assert versions_of(step, "h1") == (1,) and labels_of(step, "h2") == {"stable": 1}


def test_rolling_adds_new_version_next_to_old_keeping_labels() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "adding"
    assert versions_of(step, "h1") == (1, 2)
    assert labels_of(step, "h1") == {"stable": 1}  # label stays until 2 is AVAILABLE everywhere


def test_rolling_waits_until_every_replica_has_the_new_version() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"})]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "adding" and labels_of(step, "h1") == {"stable": 1}


def test_rolling_moves_labels_once_available_everywhere() -> None:
    replicas = [replica(h, [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "labeling"
    assert versions_of(step, "h2") == (1, 2) and labels_of(step, "h2") == {"stable": 2}


def test_rolling_keeps_old_version_until_labels_are_applied() -> None:
    replicas = [
        replica("h1", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}, applied_labels={"stable": 2}),
        replica("h2", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}, applied_labels={"stable": 1}),
    ]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "labeling" and versions_of(step, "h1") == (1, 2)


def test_rolling_removes_old_version_last() -> None:
    replicas = [replica(h, [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "removing" and versions_of(step, "h1") == (2,) and labels_of(step, "h1") == {"stable": 2}


def test_done_is_stable() -> None:
    replicas = [replica(h, [2], {"stable": 2}, {2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "stable" and versions_of(step, "h1") == (2,)


def test_stale_status_does_not_count_as_available() -> None:
    # the agent has not acted on the latest assignment revision yet
    replicas = [replica(h, [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "AVAILABLE"}, revision=10) for h in ("h1", "h2")]
    stale = [Replica(r.host, r.assignment, r.status, 11) for r in replicas]
    assert plan_rollout(intent([2], {"stable": 2}), stale, [], NOW).phase == "adding"


def test_failed_load_aborts_records_and_backs_off() -> None:
    failed = {"state": "END", "error_code": 13, "error_message": "corrupt saved model"}
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: failed}), replica("h2", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"})]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert step.phase == "backoff"
    assert versions_of(step, "h2") == (1,) and labels_of(step, "h2") == {"stable": 1}
    (failure,) = step.new_failures
    assert (failure.version, failure.host, failure.error) == (2, "h1", "corrupt saved model")
    assert failure.retry_after == NOW + dt.timedelta(seconds=300)
    assert "version 2 failed to load on h1: corrupt saved model" in step.reason


def test_backoff_holds_until_retry_after_then_tries_again() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2")]
    failure = Failure(2, "h1", "boom", NOW, NOW + dt.timedelta(seconds=60))
    held = plan_rollout(intent([2], {"stable": 2}), replicas, [failure], NOW + dt.timedelta(seconds=30))
    assert held.phase == "backoff" and versions_of(held, "h1") == (1,)
    retry = plan_rollout(intent([2], {"stable": 2}), replicas, [failure], NOW + dt.timedelta(seconds=61))
    assert retry.phase == "adding" and versions_of(retry, "h1") == (1, 2)


def test_canary_only_on_chosen_replicas_with_canary_label() -> None:
    replicas = [replica(h, [1], {"stable": 1}, {1: "AVAILABLE"}) for h in ("h1", "h2", "h3")]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "canary_replicas": 1}), replicas, [], NOW)
    assert step.phase == "canary" and step.canary_hosts == ("h1",)
    assert versions_of(step, "h1") == (1, 2) and labels_of(step, "h1") == {"stable": 1, CANARY_LABEL: 2}
    assert versions_of(step, "h2") == (1,) and labels_of(step, "h3") == {"stable": 1}


def test_canary_stays_while_not_promoted() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary"}), replicas, [], NOW)
    assert step.phase == "canary" and versions_of(step, "h2") == (1,)


def test_canary_promote_rolls_out_everywhere() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "promote": True}), replicas, [], NOW)
    assert step.phase == "adding" and versions_of(step, "h2") == (1, 2)
    assert CANARY_LABEL not in labels_of(step, "h1")


def test_abort_takes_the_canary_version_away() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1, CANARY_LABEL: 2}, {1: "AVAILABLE", 2: "AVAILABLE"}), replica("h2", [1], {"stable": 1}, {1: "AVAILABLE"})]
    step = plan_rollout(intent([2], {"stable": 2}, rollout={"strategy": "canary", "abort": True}), replicas, [], NOW)
    assert step.phase == "aborting"
    assert versions_of(step, "h1") == (1,) and labels_of(step, "h1") == {"stable": 1}


def test_new_replica_during_rollout_gets_the_current_step() -> None:
    replicas = [replica("h1", [1, 2], {"stable": 1}, {1: "AVAILABLE", 2: "LOADING"}), Replica("h3", None, None)]
    step = plan_rollout(intent([2], {"stable": 2}), replicas, [], NOW)
    assert versions_of(step, "h3") == (1, 2)


@pytest.mark.parametrize("policy", [{"latest": {"num_versions": 2}}, {"all": {}}])
def test_latest_and_all_policies_are_passed_through(policy) -> None:
    model = ModelIntent.model_validate({"base_path": "/m", "model_version_policy": policy})
    step = plan_rollout(model, [Replica("h1", None, None)], [], NOW)
    assert step.phase == "stable" and step.assignments["h1"].model_version_policy == model.model_version_policy


def test_never_zero_available_through_a_rolling_rollout() -> None:
    """Drive a two-replica rollout step by step, simulating agents that apply each step."""
    model = intent([2], {"stable": 2})
    state = {h: ([1], {"stable": 1}) for h in ("h1", "h2")}
    for _ in range(10):
        replicas = [replica(h, v, lab, {x: "AVAILABLE" for x in v}, applied_labels=lab) for h, (v, lab) in state.items()]
        step = plan_rollout(model, replicas, [], NOW)
        for h in state:
            new_versions = list(versions_of(step, h))
            assert any(v in new_versions for v in state[h][0]), "a replica lost every version it served"
            state[h] = (new_versions, labels_of(step, h))
        if step.phase == "stable":
            break
    assert state == {h: ([2], {"stable": 2}) for h in ("h1", "h2")}


# -- every phase x {promote, abort, failure}, both strategies ------------------------------------
#
# A small world of three replicas whose agents apply each step (loading a version takes one
# round), driven from version 1 (label stable=1) to version 2 (stable=2). Each phase is
# captured as the planner leaves it; then an event happens and the rollout must end where
# the event says, without a round where no replica serves.

from copy import deepcopy  # noqa: E402

from tfleet.controller.rollout import Memory  # noqa: E402

HOSTS = ("h1", "h2", "h3")


class World:
    def __init__(self) -> None:
        self.assigned = {h: ((1,), {"stable": 1}) for h in HOSTS}
        self.revision = {h: 1 for h in HOSTS}
        # host -> (revision acted on, {version: state or report dict}, labels applied)
        self.reports = {h: (1, {1: "AVAILABLE"}, {"stable": 1}) for h in HOSTS}
        self.memory: Memory | None = None
        self.failures: list[Failure] = []
        self.broken: set[tuple[str, int]] = set()  # (host, version) that cannot be served
        self.missing: set[int] = set()  # versions the agents cannot find on disk

    def replicas(self) -> list[Replica]:
        out = []
        for h in HOSTS:
            versions, labels = self.assigned[h]
            revision, states, applied = self.reports[h]
            assignment = Assignment.model_validate(
                {"base_path": "/m", "model_version_policy": {"specific": {"versions": list(versions)}}, "version_labels": labels}
            )
            error = None
            if revision == self.revision[h] and set(versions) & self.missing:
                error = (
                    f"version {', '.join(map(str, sorted(set(versions) & self.missing)))} not found under base_path /m; still serving the last valid assignment"
                )
            status = ModelStatus.model_validate(
                {
                    "assignment_revision": revision,
                    "versions": {str(v): s if isinstance(s, dict) else {"state": s} for v, s in states.items()},
                    "version_labels": applied,
                    "error": error,
                    "updated_at": NOW.isoformat(),
                }
            )
            out.append(Replica(h, assignment, status, self.revision[h]))
        return out

    def plan(self, model: ModelIntent, now=NOW):
        step = plan_rollout(model, self.replicas(), self.failures, now, self.memory)
        for h, a in step.assignments.items():
            wanted = (tuple(a.model_version_policy.specific.versions), dict(a.version_labels))
            if wanted != self.assigned[h]:
                self.assigned[h] = wanted
                self.revision[h] += 1
        self.memory = Memory(step.phase, step.from_versions, step.to_versions, step.from_labels)
        self.failures = list(step.failures)
        return step

    def agents(self) -> None:
        """Each agent acts on its assignment: new versions go LOADING then AVAILABLE (one round
        each), removed ones go at once, labels apply once their version is AVAILABLE."""
        for h in HOSTS:
            versions, labels = self.assigned[h]
            _, states, applied = self.reports[h]
            if set(versions) & self.missing:  # the agent keeps the last valid assignment
                self.reports[h] = (self.revision[h], states, applied)
                continue
            new_states = {}
            for v in versions:
                if (h, v) in self.broken:
                    new_states[v] = {"state": "END", "error_code": 13, "error_message": "corrupt saved model"}
                elif states.get(v) in ("LOADING", "AVAILABLE"):
                    new_states[v] = "AVAILABLE"
                else:
                    new_states[v] = "LOADING"
            applied = {k: v for k, v in labels.items() if new_states.get(v) == "AVAILABLE"}
            self.reports[h] = (self.revision[h], new_states, applied)

    def serving(self) -> int:
        return sum(1 for h in HOSTS if any(s == "AVAILABLE" for s in self.reports[h][1].values()))


def rollout_intent(strategy: str, **flags) -> ModelIntent:
    return intent([2], {"stable": 2}, replicas=3, rollout={"strategy": strategy, "canary_replicas": 1, **flags})


def phases(strategy: str) -> dict[str, World]:
    """Each phase the rollout of version 2 goes through, captured right after the planner
    entered it (the agents have not acted on that step yet)."""
    world, seen = World(), {}
    model = rollout_intent(strategy)
    for round_ in range(20):
        step = world.plan(model)
        seen.setdefault(step.phase, deepcopy(world))
        if step.phase == "canary" and "canary" in seen and round_ > 3:
            model = rollout_intent(strategy, promote=True)  # go on through the rolling phases
        if step.phase == "stable" and round_ > 0:
            break
        world.agents()
        if step.phase == "adding":
            seen.setdefault("adding (new version loading)", deepcopy(world))
    return seen


ROLLING_PHASES = ["adding", "adding (new version loading)", "labeling", "removing"]
CANARY_PHASES = ["canary", *ROLLING_PHASES]


def test_the_worlds_go_through_every_phase() -> None:
    assert set(ROLLING_PHASES) <= phases("rolling").keys()
    assert set(CANARY_PHASES) <= phases("canary").keys()


def run(world: World, model: ModelIntent, rounds: int = 12) -> list[str]:
    seen = []
    for _ in range(rounds):
        seen.append(world.plan(model).phase)
        world.agents()
        assert world.serving() >= 1, f"no replica serves after {seen}"
    return seen


def back_on_version_1(world: World) -> bool:
    return all(world.assigned[h] == ((1,), {"stable": 1}) for h in HOSTS) and all(world.reports[h][1] == {1: "AVAILABLE"} for h in HOSTS)


@pytest.mark.parametrize("strategy,phase", [("rolling", p) for p in ROLLING_PHASES] + [("canary", p) for p in CANARY_PHASES])
def test_abort_in_every_phase_goes_back_to_the_old_version_and_labels(strategy, phase) -> None:
    world = phases(strategy)[phase]
    seen = run(world, rollout_intent(strategy, abort=True, promote=phase != "canary" and strategy == "canary"))
    assert seen[0] == "aborting" and set(seen) == {"aborting"}, seen
    assert back_on_version_1(world), world.assigned


FAILURE_CASES = (
    [("rolling", p, "load error") for p in ROLLING_PHASES]
    + [("canary", p, "load error") for p in CANARY_PHASES]
    # a directory that is missing is found when the agents first act on the version
    + [("rolling", "adding", "directory missing"), ("canary", "canary", "directory missing")]
)


@pytest.mark.parametrize("strategy,phase,how", FAILURE_CASES)
def test_failure_in_every_phase_aborts_and_backs_off(strategy, phase, how) -> None:
    world = phases(strategy)[phase]
    if how == "load error":
        world.broken = {(h, 2) for h in HOSTS}
        world.reports["h1"] = (
            world.reports["h1"][0],
            {**world.reports["h1"][1], 2: {"state": "END", "error_code": 13, "error_message": "corrupt saved model"}},
            world.reports["h1"][2],
        )
    else:
        world.missing = {2}
        world.agents()  # the agents act on the step and report the missing directory
    model = rollout_intent(strategy, promote=phase != "canary" and strategy == "canary")
    seen = run(world, model)
    assert seen[0] == "backoff" and set(seen) == {"backoff"}, seen
    assert back_on_version_1(world), world.assigned
    (failure,) = world.failures
    assert failure.version == 2
    assert ("corrupt saved model" if how == "load error" else "version 2 not found") in failure.error
    world.broken, world.missing = set(), set()
    after = [world.plan(model, NOW + dt.timedelta(seconds=301)).phase]
    assert after[0] in ("adding", "canary"), "tried again once the backoff has passed"


@pytest.mark.parametrize("phase", ROLLING_PHASES)
def test_promote_changes_nothing_in_a_rolling_rollout(phase) -> None:
    plain, promoted = deepcopy(phases("rolling")[phase]), deepcopy(phases("rolling")[phase])
    assert run(plain, rollout_intent("rolling"), 3) == run(promoted, rollout_intent("rolling", promote=True), 3)


@pytest.mark.parametrize("phase", CANARY_PHASES)
def test_promote_in_every_canary_phase_finishes_the_rollout(phase) -> None:
    world = phases("canary")[phase]
    seen = run(world, rollout_intent("canary", promote=True))
    assert seen[-1] == "stable" and "canary" not in seen, seen
    assert all(world.assigned[h] == ((2,), {"stable": 2}) for h in HOSTS)


def test_canary_without_promote_stays_a_canary() -> None:
    world = phases("canary")["canary"]
    seen = run(world, rollout_intent("canary"), 6)
    assert set(seen) == {"canary"}
    assert world.assigned["h1"] == ((1, 2), {"stable": 1, CANARY_LABEL: 2}) and world.assigned["h2"] == ((1,), {"stable": 1})


def test_abort_without_the_report_still_takes_a_replaced_version_away() -> None:
    """The issue's case after a controller lost its report: every replica holds [2, 3] for an
    intent of [3]; what the intent does not want is what was served before."""
    replicas = [replica(h, [2, 3], {"stable": 2}, {2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(intent([3], {"stable": 3}, rollout={"abort": True}), replicas, [], NOW)
    assert step.phase == "aborting" and versions_of(step, "h1") == (2,) and labels_of(step, "h2") == {"stable": 2}


def test_a_missing_version_reported_by_the_agent_is_a_load_failure() -> None:
    """The issue: agents report "version 3 not found" and keep serving 2; that aborts."""
    missing = "version 3 not found under base_path /m (it has 1, 2); still serving the last valid assignment"
    replicas = []
    for h in ("h1", "h2"):
        r = replica(h, [2, 3], {"stable": 2}, {2: "AVAILABLE"})
        replicas.append(Replica(h, r.assignment, r.status.model_copy(update={"error": missing}), r.assignment_revision))
    memory = Memory("adding", (2,), (3,), {"stable": 2})
    step = plan_rollout(intent([3], {"stable": 3}), replicas, [], NOW, memory)
    assert step.phase == "backoff" and versions_of(step, "h1") == (2,) and labels_of(step, "h1") == {"stable": 2}
    assert [(f.version, f.host, f.error) for f in step.new_failures] == [(3, "h1", missing)]


def test_an_agent_error_about_an_older_assignment_is_not_a_failure() -> None:
    r = replica("h1", [2, 3], {"stable": 2}, {2: "AVAILABLE"}, revision=10)
    stale = Replica("h1", r.assignment, r.status.model_copy(update={"error": "version 3 not found"}), 11)
    step = plan_rollout(intent([3], {"stable": 3}), [stale], [], NOW, Memory("adding", (2,), (3,), {"stable": 2}))
    assert step.phase == "adding" and not step.new_failures


def test_removing_lasts_until_every_replica_has_unloaded_the_old_version() -> None:
    model = intent([2], {"stable": 2})
    memory = Memory("removing", (1,), (2,), {"stable": 1})
    unloading = [replica(h, [2], {"stable": 2}, {1: "UNLOADING", 2: "AVAILABLE"}) for h in ("h1", "h2")]
    step = plan_rollout(model, unloading, [], NOW, memory)
    assert step.phase == "removing" and versions_of(step, "h1") == (2,) and step.from_versions == (1,)
    done = [replica(h, [2], {"stable": 2}, {2: "AVAILABLE"}) for h in ("h1", "h2")]
    assert plan_rollout(model, done, [], NOW, memory).phase == "stable"
    aborted = plan_rollout(intent([2], {"stable": 2}, rollout={"abort": True}), unloading, [], NOW, memory)
    assert aborted.phase == "aborting" and versions_of(aborted, "h1") == (1, 2), "version 1 comes back before 2 goes"


# -- the shortcuts of plan_rollout (_intent_assignment, _only_new_replicas) ------------------------


def test_a_new_replica_next_to_converged_ones_gets_the_intents_assignment() -> None:
    model = intent([1, 2], {"stable": 2})
    held = replica("h1", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"})
    step = plan_rollout(model, [held, Replica("h2", None, None)], [], NOW)
    assert step.phase == "stable" and step.to_versions == (1, 2) and not step.failures
    assert step.assignments == {"h1": model.assignment(), "h2": model.assignment()}


def test_a_new_replica_with_unsorted_intent_versions_rewrites_every_replica_sorted() -> None:
    """The long way's answer (a finished rolling step writes the versions sorted): the shortcut
    for new replicas must not take an intent whose version list is not sorted and distinct."""
    model = intent([2, 1], {"stable": 2})
    step = plan_rollout(model, [Replica("h1", model.assignment(), None, 10), Replica("h2", None, None)], [], NOW)
    assert step.phase == "stable" and versions_of(step, "h1") == versions_of(step, "h2") == (1, 2)


def test_a_new_replica_of_an_intent_with_a_label_named_canary_is_not_taken_as_converged() -> None:
    model = intent([1], {CANARY_LABEL: 1})
    step = plan_rollout(model, [Replica("h1", model.assignment(), None, 10), Replica("h2", None, None)], [], NOW)
    assert step.phase == "adding" and labels_of(step, "h1") == labels_of(step, "h2") == {}


def test_a_new_replica_during_a_remembered_canary_goes_on_with_the_canary() -> None:
    """A rollout the report remembers is not what the replicas hold: the shortcut for new
    replicas must not take it."""
    model = intent([2], {"stable": 2}, rollout={"strategy": "canary", "canary_replicas": 1})
    held = replica("h2", [2], {"stable": 2}, {1: "AVAILABLE", 2: "LOADING"})
    step = plan_rollout(model, [held, Replica("h1", None, None)], [], NOW, Memory("canary", (1,), (2,), {}))
    assert step.phase == "canary" and step.canary_hosts == ("h1",) and versions_of(step, "h2") == (1,)


@pytest.mark.parametrize(
    "field, value",
    [("base_path", "/other"), ("model_platform", "tf2"), ("version_labels", {}), ("model_version_policy", {"specific": {"versions": [1]}})],
)
def test_a_replica_differing_from_the_intent_in_any_field_gets_the_intents_assignment(field, value) -> None:
    model = intent([1, 2], {"stable": 2})
    other = Assignment.model_validate({**model.assignment().model_dump(), field: value})
    serving = replica("h1", [1, 2], {"stable": 2}, {1: "AVAILABLE", 2: "AVAILABLE"})
    step = plan_rollout(model, [Replica("h1", other, serving.status, 10)], [], NOW)
    assert step.assignments["h1"] == model.assignment() != other


def _random_case(rng):
    model = ModelIntent.model_validate(
        {
            "base_path": rng.choice(["/m", "/n"]),
            "model_version_policy": rng.choice([{"specific": {"versions": rng.choice([[1], [2], [1, 2], [2, 1], [1, 1]])}}, {"latest": {}}]),
            "replicas": 3,
            "rollout": rng.choice([{}, {"abort": True}, {"strategy": "canary"}]),
        }
    )
    versions = model.model_version_policy.specific.versions if model.model_version_policy.specific else None
    if versions:
        model = model.model_copy(update={"version_labels": rng.choice([{}, {"stable": versions[0]}, {CANARY_LABEL: versions[-1]}])})
    replicas = []
    for host in rng.sample(["a", "b", "c", "d"], rng.randint(1, 3)):
        if rng.random() < 0.7:
            assignment: Assignment | None = model.assignment() if rng.random() < 0.75 else None
        else:
            held = rng.choice([[1], [2], [1, 2]])
            document = {
                "base_path": rng.choice(["/m", "/n"]),
                "model_platform": rng.choice(["tensorflow", "tf2"]),
                "model_version_policy": {"specific": {"versions": held}},
            }
            assignment = Assignment.model_validate({**document, "version_labels": rng.choice([{}, {"stable": held[0]}])})
        status = None
        if rng.random() < 0.7:
            states = {
                str(v): rng.choice([{"state": "AVAILABLE"}, {"state": "LOADING"}, {"state": "END", "error_code": 3, "error_message": "x"}])
                for v in rng.choice([[1], [2], [1, 2]])
            }
            document = {
                "assignment_revision": rng.choice([9, 10]),
                "versions": states,
                "error": rng.choice([None, None, "boom"]),
                "updated_at": NOW.isoformat(),
            }
            status = ModelStatus.model_validate({**document, "version_labels": rng.choice([{}, {"stable": 1}])})
        replicas.append(Replica(host, assignment, status, 10 if assignment is not None else None))
    failures = [] if rng.random() < 0.8 else [Failure(2, "a", "e", NOW, NOW + dt.timedelta(seconds=rng.choice([-5, 5])))]
    memories = [None, Memory("stable", (), (1,)), Memory("removing", (1,), (2,), {"stable": 1}), Memory("adding", (1,), (1, 2)), Memory("canary", (1,), (2,))]
    return model, replicas, failures, rng.choice(memories)


def _outcome(model, replicas, failures, memory):
    try:
        return plan_rollout(model, replicas, failures, NOW, memory)
    except Exception as exc:  # (the long way has answers that raise: they must raise alike)
        return repr(exc)


def test_the_shortcuts_give_the_long_ways_answer(monkeypatch) -> None:
    """plan_rollout's shortcuts against the long way (the converged check aside), over random
    replicas, statuses, failures and remembered rollouts (seeded: the same cases every run)."""
    import random

    from tfleet.controller import rollout

    rng = random.Random(20261207)
    cases = [_random_case(rng) for _ in range(4000)]
    quick = [_outcome(*case) for case in cases]
    monkeypatch.setattr(rollout, "_only_new_replicas", lambda *args: False)
    monkeypatch.setattr(rollout, "_intent_assignment", lambda model, replicas: model.assignment())
    for case, answer in zip(cases, quick, strict=True):
        assert answer == _outcome(*case), case


def test_the_assignment_reuse_compares_every_field_of_an_assignment() -> None:
    """rollout._intent_assignment takes a replica's assignment for the intent's when four
    fields match: a field added to Assignment must be added to that comparison too."""
    assert set(Assignment.model_fields) == {"base_path", "model_platform", "model_version_policy", "version_labels"}
