"""The controller's settings share the agent's lease timing rule (tfleet/timing.py)."""

import pytest
from pydantic import ValidationError

from tests.deployfiles import Invocation, start_with_stub
from tfleet.controller.settings import ControllerSettings
from tfleet.schema import explain
from tfleet.store import EtcdSettings


def settings(**overrides) -> ControllerSettings:
    return ControllerSettings(**{"id": "c1", "etcd": EtcdSettings(endpoints=("http://127.0.0.1:2379",)), "http_port": 0, **overrides})


def test_defaults_are_valid() -> None:
    assert settings().renew_interval == pytest.approx(10 / 3)
    assert settings().history_keep == 100  # docs/operations.md, "The intent history"
    # docs/operations.md, controller settings
    assert settings().full_plan_interval == 60.0 and settings().full_plan_rate == 250.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lease_ttl": 2}, "--lease-ttl 2 is too short"),
        ({"lease_ttl": 4}, "or one slow call loses leadership"),
        ({"id": "a/b"}, "controller id name 'a/b' is not allowed"),
        ({"prefix": "x"}, "key prefix 'x' is not allowed"),
        ({"history_keep": 0}, "history_keep: Input should be greater than or equal to 1"),
        ({"full_plan_interval": 5.0}, "greater than or equal to 10"),
        ({"full_plan_interval": 7200.0}, "less than or equal to 3600"),
        ({"full_plan_rate": 0.0}, "greater than or equal to 1"),
        ({"full_plan_rate": 1e6}, "less than or equal to 100000"),
    ],
)
def test_invalid_settings_are_explained(overrides, message) -> None:
    with pytest.raises(ValidationError) as info:
        settings(**overrides)
    assert message in explain(info.value)


@pytest.mark.parametrize(
    "args, env, rate",
    [
        ([], {}, 250.0),
        (["--full-plan-rate", "500"], {}, 500.0),
        ([], {"TFLEET_FULL_PLAN_RATE": "40"}, 40.0),
    ],
)
def test_the_full_plan_rate_reaches_the_settings_by_flag_or_variable(args, env, rate, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `tfleet controller` command (the daemon a stub, tests/deployfiles.py)."""
    base = ["--id", "c1", "--etcd", "http://127.0.0.1:2379", "--http-port", "0"]
    started = start_with_stub(Invocation("test", "cli", "controller", base + args, env), monkeypatch)
    assert started.full_plan_rate == rate


def _reconciler(models: int, now: list[float], interval: float, resync_slice: int, **options):
    from bench import cache_pass
    from bench.controller_plan import build

    store = cache_pass.MemoryStore(build(models, 4))
    controller = cache_pass.in_memory_controller(store, lambda: now[0], full_plan_interval=interval, resync_slice=resync_slice, **options)
    return store, controller.reconciler


def test_the_rolling_resync_plans_at_most_the_rate_of_models_a_second() -> None:
    """--full-plan-rate: a fleet larger than rate x interval is planned again over a longer
    cycle (40 models at 2 a second: 20 s, not the 10 s interval), so the net's share of the
    controller stays bounded at any fleet size."""
    now = [0.0]
    store, reconciler = _reconciler(40, now, interval=10.0, resync_slice=100, resync_rate=2.0)
    assert reconciler.reconcile().result == "ok" and reconciler.planner.full
    store.deliver()
    seen: set[str] = set()
    for second in range(1, 21):
        now[0] = float(second)
        reconciler.reconcile()
        store.deliver()
        assert len(reconciler.planner.planned) <= 2 + 1  # (2 a second; a rounding may add one)
        seen |= reconciler.planner.planned
        if second == 10:
            assert 18 <= len(seen) <= 22  # half the fleet after the interval, not all of it
    assert seen == {f"m{i:05d}" for i in range(40)}
    # the hosts' turns follow the models' cycle, not the interval (each re-reads its replicas)
    assert reconciler._resync_models.span == 20.0 and reconciler._resync_hosts.span == 20.0


def test_the_rolling_resync_plans_every_model_once_per_interval_in_bounded_passes() -> None:
    """The net under the incremental planner (--full-plan-interval) is a rolling resync: no
    pass after the first plans the whole fleet; each plans at most a slice besides what
    changed, paced so that every model is planned again within the interval."""
    now = [0.0]
    store, reconciler = _reconciler(20, now, interval=120.0, resync_slice=4)
    first = reconciler.reconcile()
    assert first.result == "ok" and reconciler.planner.full and len(reconciler.planner.planned) == 20
    store.deliver()  # the first pass's echoes
    now[0] = 1.0
    reconciler.reconcile()
    store.deliver()
    seen: set[str] = set(reconciler.planner.planned)
    now[0] = 30.0  # a quarter of the interval: a quarter of the models is owed
    outcome = reconciler.reconcile()
    assert not reconciler.planner.full and len(reconciler.planner.planned) == 4 and outcome.writes == 0
    seen |= reconciler.planner.planned
    assert outcome.requeue_after is not None and outcome.requeue_after > 1.0  # the next slice is owed later
    now[0] = 120.0  # the whole cycle is owed: still no more than a slice per pass, and come back soon
    passes = 0
    while True:
        outcome = reconciler.reconcile()
        if not reconciler.planner.planned:
            break
        passes += 1
        assert not reconciler.planner.full and len(reconciler.planner.planned) <= 4 and outcome.writes == 0
        seen |= reconciler.planner.planned
        assert passes < 10
    assert seen == {f"m{i:05d}" for i in range(20)} and passes == 4
    # the cycle is done and, its interval over, the next one began: its first slice is owed
    # a slice's share of the interval later (4 of 20 models: 24 s)
    assert outcome.requeue_after == pytest.approx(24.0)


def test_the_rolling_resync_repairs_a_planner_that_missed_a_change() -> None:
    """What the net is for: a model whose planned state went wrong (a dependency the
    incremental planner missed, simulated by losing its result) is planned again within the
    interval, without a full plan."""
    now = [0.0]
    store, reconciler = _reconciler(8, now, interval=60.0, resync_slice=100)
    reconciler.reconcile()
    store.deliver()
    model = sorted(reconciler.reports)[3]
    del reconciler.planner._results[model]  # noqa: SLF001 (the drift the net must repair)
    assert model not in reconciler.reports
    now[0] = 60.0
    assert reconciler.reconcile().result == "ok" and not reconciler.planner.full
    assert model in reconciler.reports
