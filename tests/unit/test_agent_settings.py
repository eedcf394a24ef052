"""Settings are validated once, at start-up, with errors that say what to change."""

import pytest
from pydantic import ValidationError

from tfleet.agent.settings import AgentSettings
from tfleet.schema import explain
from tfleet.store import EtcdSettings

ETCD = EtcdSettings(endpoints=("http://127.0.0.1:2379",))


def settings(**overrides) -> AgentSettings:
    values = {"host": "h1", "etcd": ETCD, "tfs_grpc": "127.0.0.1:8500", "tfs_rest": "127.0.0.1:8501", "http_port": 9100}
    return AgentSettings(**{**values, **overrides})


def error_of(**overrides) -> str:
    with pytest.raises(ValidationError) as info:
        settings(**overrides)
    return explain(info.value)


def test_defaults_are_valid_and_frozen() -> None:
    s = settings()
    assert s.lease_ttl == 10 and s.renew_interval == pytest.approx(10 / 3)
    assert s.advertised_host == "127.0.0.1"
    assert s.state_file.name == "agent-h1.json"
    with pytest.raises(ValidationError):
        s.lease_ttl = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lease_ttl": 2}, "--lease-ttl 2 is too short"),
        ({"lease_ttl": 5, "etcd": EtcdSettings(endpoints=("http://x:1",), call_timeout=2.0)}, "must be shorter than the lease renew interval"),
        ({"reload_timeout": 10.0}, "--reload-timeout (10 s) must be shorter than --lease-ttl (10 s)"),
        ({"status_timeout": 12.0}, "--status-timeout"),
        ({"host": "bad/name"}, "host name 'bad/name' is not allowed"),
        ({"tfs_grpc": "localhost"}, "--tfs-grpc 'localhost' must have the form HOST:PORT"),
        ({"prefix": "tfleet"}, "key prefix 'tfleet' is not allowed"),
        ({"labels": {"bad key": "x"}}, "label name 'bad key'"),
        ({"http_port": 70000}, "http_port"),
        ({"unknown": 1}, "unknown: unknown field"),
        ({"tfs_probe_interval": 1.0, "status_timeout": 2.0}, "--tfs-probe-interval (1 s) must not be shorter than --status-timeout (2 s)"),
        ({"tfs_probe_interval": 20.0}, "a hung TF Serving would go unnoticed for up to 66 s"),
        ({"tfs_unresponsive_after": 0}, "tfs_unresponsive_after"),
    ],
)
def test_invalid_settings_are_explained(overrides: dict, message: str) -> None:
    assert message in error_of(**overrides)


def test_default_hang_detection_fits_the_lease_rule() -> None:
    from tfleet.timing import unresponsive_detection_seconds

    s = settings()
    assert unresponsive_detection_seconds(s.tfs_probe_interval, s.status_timeout, s.tfs_unresponsive_after) == 15.0
    fast = EtcdSettings(endpoints=("http://127.0.0.1:2379",), call_timeout=0.5)
    assert settings(lease_ttl=4, etcd=fast, reload_timeout=3.0, status_timeout=1.0).tfs_probe_interval == 3.0  # the test harness timings pass
