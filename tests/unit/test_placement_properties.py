"""Properties of controller/placement.py on random fleets (hypothesis): the invariants hold,
the order of mappings does not matter, a fleet that caught up is stable, and the incremental
planner returns exactly what a full plan returns."""

from __future__ import annotations


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfleet.controller.placement import (
    HostInfo,
    IncrementalPlacer,
    ModelDemand,
    PlacementInput,
    changed_between,
    place,
)

from tests.unit.placement_support import (
    check_invariants,
    current_staying,
    settle,
)


HOST_NAMES = [f"h{i}" for i in range(7)]
MODEL_NAMES = [f"m{i}" for i in range(7)]


@st.composite
def host_infos(draw: st.DrawFn, name: str) -> HostInfo:
    labels = {}
    zone = draw(st.sampled_from(["a", "b", None]))
    if zone:
        labels["zone"] = zone
    if draw(st.booleans()):
        labels["rack"] = draw(st.sampled_from(["r1", "r2"]))
    state = draw(st.sampled_from(["ok", "ok", "ok", "cordoned", "draining", "unresponsive"]))
    return HostInfo(name, labels, draw(st.integers(0, 10)) * 100, state == "cordoned", state == "draining", state == "unresponsive")


@st.composite
def demands_of(draw: st.DrawFn, name: str) -> ModelDemand:
    selector = draw(st.sampled_from([{}, {}, {"zone": "a"}, {"zone": "b"}, {"rack": "r1"}, {"zone": "a", "rack": "r2"}]))
    spread = draw(st.sampled_from([None, None, "zone", "rack"]))
    return ModelDemand(name, draw(st.integers(0, 4)), draw(st.integers(1, 6)) * 100, selector, spread)


@st.composite
def holdings(draw: st.DrawFn) -> tuple[frozenset[str], frozenset[str]]:
    current = draw(st.frozensets(st.sampled_from(HOST_NAMES + ["gone1", "gone2"]), max_size=5))
    ready = draw(st.frozensets(st.sampled_from(sorted(current)), max_size=5)) if current else frozenset()
    if draw(st.integers(0, 9)) == 0:  # a stale ready set naming a host without an assignment
        ready |= {draw(st.sampled_from(HOST_NAMES))}
    return current, ready


@st.composite
def placement_inputs(draw: st.DrawFn) -> PlacementInput:
    host_names = draw(st.lists(st.sampled_from(HOST_NAMES), unique=True, max_size=len(HOST_NAMES)))
    model_names = draw(st.lists(st.sampled_from(MODEL_NAMES), unique=True, max_size=len(MODEL_NAMES)))
    hosts = {name: draw(host_infos(name)) for name in host_names}
    demands = {name: draw(demands_of(name)) for name in model_names}
    current, ready = {}, {}
    for name in MODEL_NAMES:
        if draw(st.booleans()):
            current[name], ready[name] = draw(holdings())
    return PlacementInput(hosts, demands, current, ready)


@st.composite
def mutated(draw: st.DrawFn, data: PlacementInput) -> PlacementInput:
    """A few models and hosts redrawn, added or removed; the rest shared with data."""
    hosts, demands = dict(data.hosts), dict(data.demands)
    current, ready = dict(data.current), dict(data.ready)
    for name in draw(st.lists(st.sampled_from(HOST_NAMES), max_size=2, unique=True)):
        if draw(st.booleans()):
            hosts[name] = draw(host_infos(name))
        else:
            hosts.pop(name, None)
    for name in draw(st.lists(st.sampled_from(MODEL_NAMES), max_size=2, unique=True)):
        what = draw(st.sampled_from(["demand", "holding", "remove"]))
        if what == "demand":
            demands[name] = draw(demands_of(name))
        elif what == "holding":
            current[name], ready[name] = draw(holdings())
        else:
            demands.pop(name, None)
    if draw(st.booleans()):  # the fleet caught up with the last plan
        plan = place(data)
        for name, placed in plan.hosts.items():
            current[name] = ready[name] = frozenset(placed)
    return PlacementInput(hosts, demands, current, ready)


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_invariants_hold_for_any_fleet(data: PlacementInput) -> None:
    check_invariants(data, place(data))


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_order_of_mappings_does_not_matter(data: PlacementInput) -> None:
    flipped = PlacementInput(
        dict(reversed(data.hosts.items())),
        dict(reversed(data.demands.items())),
        dict(reversed(data.current.items())),
        dict(reversed(data.ready.items())),
    )
    assert place(flipped) == place(data)


@PROPERTY_SETTINGS
@given(placement_inputs())
def test_stable_once_the_fleet_caught_up(data: PlacementInput) -> None:
    first = place(data)
    second = place(settle(data, first))
    # Without moves in progress, feeding a plan back (all ready) changes nothing at all.
    if not first.notes:
        assert second == first
    # Replicas on hosts they may stay on are never moved by a re-plan.
    for model in first.hosts:
        keepable = current_staying(data, model, first)
        assert keepable <= set(second.hosts[model]), model
    # Each further round only finishes moves (drops a leaving replica); then nothing changes.
    plan, leaving = second, sum(len(n) for n in first.notes.values())
    for _ in range(leaving + 1):
        following = place(settle(data, plan))
        if following == plan:
            break
        plan = following
    assert place(settle(data, plan)) == plan


@PROPERTY_SETTINGS
@given(st.data())
def test_incremental_equals_full_plan(draw: st.DataObject) -> None:
    data = draw.draw(placement_inputs())
    placer = IncrementalPlacer(data)
    assert placer.placement == place(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        new = draw.draw(mutated(data))
        models, hosts = changed_between(data, new)
        assert placer.update(new, models, hosts) == place(new)
        data = new


@PROPERTY_SETTINGS
@given(st.data())
def test_incremental_equals_full_plan_when_some_models_take_what_was_placed(draw: st.DataObject) -> None:
    """The echo of a plan's own writes: some models now hold exactly what the last plan
    placed (and perhaps still their gone hosts), with any of it ready (a new replica is
    not), possibly with other changes in the same update (IncrementalPlacer._settle skips
    hold() for those models)."""
    data = draw.draw(placement_inputs())
    placer = IncrementalPlacer(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        placed = dict(placer.placement.hosts)  # (a view, valid until the next update)
        current, ready = dict(data.current), dict(data.ready)
        for name in draw.draw(st.lists(st.sampled_from(sorted(placed) or ["none"]), unique=True)):
            if name in placed:
                # (and perhaps still the gone hosts it held: their deletes can wait a pass)
                gone = {h for h in data.current.get(name, ()) if h not in data.hosts} if draw.draw(st.booleans()) else set()
                current[name] = frozenset(placed[name]) | gone
                ready[name] = draw.draw(st.frozensets(st.sampled_from(placed[name]))) if placed[name] else frozenset()
        new = PlacementInput(data.hosts, data.demands, current, ready)
        if draw.draw(st.booleans()):
            new = draw.draw(mutated(new))
        models, hosts = changed_between(data, new)
        assert placer.update(new, models, hosts) == place(new)
        data = new
