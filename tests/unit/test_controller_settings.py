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
