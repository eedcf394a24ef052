"""The controller's settings share the agent's lease timing rule (tfleet/timing.py)."""

import pytest
from pydantic import ValidationError

from tfleet.controller.settings import ControllerSettings
from tfleet.schema import explain
from tfleet.store import EtcdSettings


def settings(**overrides) -> ControllerSettings:
    return ControllerSettings(**{"id": "c1", "etcd": EtcdSettings(endpoints=("http://127.0.0.1:2379",)), "http_port": 0, **overrides})


def test_defaults_are_valid() -> None:
    assert settings().renew_interval == pytest.approx(10 / 3)
    assert settings().history_keep == 100  # docs/operations.md, "The intent history"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lease_ttl": 2}, "--lease-ttl 2 is too short"),
        ({"lease_ttl": 4}, "or one slow call loses leadership"),
        ({"id": "a/b"}, "controller id name 'a/b' is not allowed"),
        ({"prefix": "x"}, "key prefix 'x' is not allowed"),
        ({"history_keep": 0}, "history_keep: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_explained(overrides, message) -> None:
    with pytest.raises(ValidationError) as info:
        settings(**overrides)
    assert message in explain(info.value)


def test_full_plan_interval_is_bounded() -> None:
    assert settings().full_plan_interval == 60.0  # docs/operations.md, controller settings
    for bad, message in ((5.0, "greater than or equal to 10"), (7200.0, "less than or equal to 3600")):
        with pytest.raises(ValidationError) as info:
            settings(full_plan_interval=bad)
        assert message in explain(info.value)


def test_the_periodic_full_plan_runs_at_the_configured_interval() -> None:
    """Between full plans the passes are incremental; once the interval has passed, the next
    pass plans every model again (the safety net under the incremental planner)."""
    from bench import cache_pass
    from bench.controller_plan import KS, NOW, build
    from tfleet.controller.fleetcache import FleetCache
    from tfleet.controller.metrics import ControllerMetrics
    from tfleet.controller.reconciler import ControllerReconciler

    store = cache_pass.MemoryStore(build(20, 4))
    metrics = ControllerMetrics()
    now = [0.0]
    reconciler = ControllerReconciler(
        store=store,
        keyspace=KS,
        election=cache_pass.LeaderElection(store),
        registry=cache_pass.NoHistory(),  # type: ignore[arg-type]
        metrics=metrics,
        log=cache_pass._Log(),
        now=lambda: NOW,
        clock=lambda: now[0],
        cache=FleetCache(store, KS, log=cache_pass._Log(), metrics=metrics),
        full_plan_interval=120.0,
    )
    assert reconciler.reconcile().result == "ok" and reconciler.planner.full
    store.deliver()
    now[0] = 119.0
    assert reconciler.reconcile().result == "ok" and not reconciler.planner.full
    now[0] = 120.0
    assert reconciler.reconcile().result == "ok" and reconciler.planner.full
