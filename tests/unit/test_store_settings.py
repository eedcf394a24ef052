"""EtcdSettings parsing and validation, plus the other pure values of tfleet.store (no etcd)."""

from __future__ import annotations

import random

import grpc
import pytest

from tests.helpers import FakeClock, FakeRpcError
from tfleet.store import (
    DEFAULT_MAX_REQUEST_BYTES,
    Backoff,
    Compare,
    EtcdSettings,
    KeyValue,
    Put,
    QuotaExceeded,
    RevisionCompacted,
    Snapshot,
    StoreError,
    StoreUnavailable,
    ValueTooLarge,
    _is_member_fault,
    _MemberPicker,
    _never_sent,
    _translate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:2379", ("http://127.0.0.1:2379",)),
        ("127.0.0.1:2379", ("http://127.0.0.1:2379",)),
        (" etcd-a:2379 , etcd-b:2380 ", ("http://etcd-a:2379", "http://etcd-b:2380")),
        ("HTTPS://Etcd.Example:2379/", ("https://etcd.example:2379",)),
        ("http://etcd", ("http://etcd:2379",)),
        ("https://[::1]:2379", ("https://[::1]:2379",)),
    ],
)
def test_parse_endpoints_normalizes(text: str, expected: tuple[str, ...]) -> None:
    assert EtcdSettings.parse_endpoints(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no etcd endpoint given"),
        ("   ", "no etcd endpoint given"),
        ("http://a:1,,http://b:2", "empty etcd endpoint"),
        ("grpc://a:2379", "scheme must be http or https"),
        ("http://a:99999", "port must be a number"),
        ("http://a:port", "port must be a number"),
        ("http://a:0", "port must be a number"),
        ("http://a:2379/v3", "only scheme://host:port"),
        ("http://user@a:2379", "only scheme://host:port"),
        ("http://:2379", "no host"),
        ("http://a:1,a:1", "listed twice: http://a:1"),
        ("http://a:1,https://b:1", "mix http:// and https://"),
    ],
)
def test_parse_endpoints_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdSettings.parse_endpoints(text)


def test_settings_normalize_endpoints_and_keep_defaults() -> None:
    settings = EtcdSettings(("127.0.0.1:2379", "http://127.0.0.1:22379"))
    assert settings.endpoints == ("http://127.0.0.1:2379", "http://127.0.0.1:22379")
    assert settings.call_timeout == 2.0
    assert not settings.secure


def test_settings_accept_a_list_but_not_a_bare_string() -> None:
    assert EtcdSettings(["a:1"]).endpoints == ("http://a:1",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parse_endpoints"):
        EtcdSettings("http://a:1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one etcd endpoint"):
        EtcdSettings(())


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "2", True, None])
def test_call_timeout_must_be_a_positive_number(timeout: object) -> None:
    with pytest.raises(ValueError, match="call_timeout"):
        EtcdSettings(("a:1",), call_timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoints": ("http://a:1",), "ca_cert": "/ca.pem"}, "write them as https://"),
        ({"endpoints": ("https://a:1",), "cert": "/c.pem"}, "both cert and key"),
        ({"endpoints": ("https://a:1",), "key": "/k.pem"}, "both cert and key"),
        ({"endpoints": ("https://a:1",), "cert": "", "key": "/k.pem"}, "non-empty file path"),
        ({"endpoints": ("http://a:1",), "user": "root", "password": "pw"}, "requires https://"),
        ({"endpoints": ("https://a:1",), "user": "root"}, "both user and password"),
        ({"endpoints": ("https://a:1",), "password": "pw"}, "both user and password"),
        ({"endpoints": ("https://a:1",), "user": "", "password": "pw"}, "must not be empty"),
    ],
)
def test_tls_and_password_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdSettings(**kwargs)  # type: ignore[arg-type]


def test_valid_tls_and_password_settings() -> None:
    mtls = EtcdSettings(("https://a:1",), ca_cert="/ca.pem", cert="/c.pem", key="/k.pem")
    assert mtls.secure
    password = EtcdSettings(("https://a:1",), ca_cert="/ca.pem", user="root", password="s3cret")
    assert "s3cret" not in repr(password)  # settings get logged; the password must not be
    system_roots = EtcdSettings(("https://a:1",))
    assert system_roots.ca_cert is None


def test_settings_are_frozen() -> None:
    settings = EtcdSettings(("a:1",))
    with pytest.raises(AttributeError):
        settings.call_timeout = 5  # type: ignore[misc]


# -- other pure values ---------------------------------------------------------------


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    backoff, rng = Backoff(initial=0.2, cap=5.0), random.Random(7)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 12)]
    assert 0.1 <= delays[0] <= 0.2
    assert 0.2 <= delays[1] <= 0.4
    assert all(2.5 <= d <= 5.0 for d in delays[6:])
    assert backoff.delay(10_000, rng) <= 5.0
    with pytest.raises(ValueError):
        Backoff(initial=0, cap=1)


def test_snapshot_sorts_items_and_finds_keys() -> None:
    def kv(key: str) -> KeyValue:
        return KeyValue(key, b"", 1, 1, 1, 0)

    snapshot = Snapshot(5, (kv("/b"), kv("/a")))
    assert snapshot.keys() == ("/a", "/b")
    assert snapshot.get("/b") == kv("/b") and snapshot.get("/c") is None
    assert snapshot == Snapshot(5, (kv("/a"), kv("/b")))


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Compare("/k", "mod", "==", b"1"), TypeError),
        (lambda: Compare("/k", "value", "==", 1), TypeError),
        (lambda: Compare("/k", "version", "==", True), TypeError),
        (lambda: Compare("/k", "lease", "==", 1), ValueError),
        (lambda: Compare("/k", "mod", "<=", 1), ValueError),
        (lambda: Compare("", "mod", "==", 1), ValueError),
        (lambda: Put("/k", "text"), TypeError),
        (lambda: Put("/k", b"", lease="7"), TypeError),
    ],
)
def test_txn_values_reject_mistakes(build, error: type[Exception]) -> None:  # noqa: ANN001
    with pytest.raises(error):
        build()


# -- attempt deadline, request limit ----------------------------------------------------


def test_attempt_timeout_defaults_to_half_the_call_budget_with_several_members() -> None:
    assert EtcdSettings(("a:1",), call_timeout=2.0).attempt_timeout == 2.0
    assert EtcdSettings(("a:1", "b:1", "c:1"), call_timeout=2.0).attempt_timeout == 1.0
    assert EtcdSettings(("a:1", "b:1"), call_timeout=2.0, attempt_timeout=0.5).attempt_timeout == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attempt_timeout": 3.0}, "must not exceed call_timeout"),
        ({"attempt_timeout": 0}, "attempt_timeout must be a positive"),
        ({"attempt_timeout": "1"}, "attempt_timeout must be a number"),
        ({"max_request_bytes": 100}, "max_request_bytes must be a whole number of bytes in 1024"),
        ({"max_request_bytes": 1.5}, "max_request_bytes"),
        ({"max_request_bytes": True}, "max_request_bytes"),
    ],
)
def test_attempt_timeout_and_request_limit_are_validated(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdSettings(("a:1", "b:1"), call_timeout=2.0, **overrides)  # type: ignore[arg-type]


def test_max_request_bytes_defaults_to_etcds_default() -> None:
    assert EtcdSettings(("a:1",)).max_request_bytes == 1572864 == DEFAULT_MAX_REQUEST_BYTES


# -- which member gets the next call -----------------------------------------------------


def test_member_picker_sticks_to_a_working_member_and_moves_on_failure() -> None:
    clock = FakeClock(100.0)
    picker = _MemberPicker(3, quarantine=5.0, clock=clock)
    assert picker.order() == [0, 1, 2]
    picker.succeeded(0)
    assert picker.order() == [0, 1, 2]

    picker.failed(0)
    assert picker.order() == [1, 2, 0]  # the failed member last, not dropped
    picker.failed(1)
    assert picker.order() == [2, 0, 1]  # failed ones by age of their failure
    clock.now += 5.0
    assert picker.order() == [2, 0, 1]  # out of quarantine, but 2 works: stay there
    picker.failed(2)
    assert picker.order() == [0, 1, 2]  # 0 and 1 are healthy again


def test_member_picker_never_refuses_when_every_member_failed() -> None:
    clock = FakeClock(100.0)
    picker = _MemberPicker(2, quarantine=5.0, clock=clock)
    picker.failed(0)
    clock.now += 1
    picker.failed(1)
    assert picker.order() == [0, 1]  # every member is tried, the oldest failure first
    picker.succeeded(1)
    assert picker.order() == [1, 0]


def test_member_picker_with_one_member() -> None:
    picker = _MemberPicker(1, clock=FakeClock(100.0))
    picker.failed(0)
    assert picker.order() == [0]


# -- error classification (what fails over, what may be retried, what the caller sees) -----


UNAVAILABLE, DEADLINE = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("error", "member_fault", "never_sent"),
    [
        (FakeRpcError(DEADLINE, "Deadline Exceeded"), True, False),  # frozen: may apply later
        (FakeRpcError(UNAVAILABLE, "failed to connect to all addresses; Connection refused"), True, True),
        (FakeRpcError(UNAVAILABLE, "etcdserver: no leader"), True, True),  # refused before handling
        (FakeRpcError(UNAVAILABLE, "Stream removed (Socket closed)"), True, False),  # maybe sent
        (FakeRpcError(grpc.StatusCode.UNKNOWN, "context deadline exceeded"), True, False),
        (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"), False, False),
        (FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"), False, False),
        (FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: permission denied"), False, False),
    ],
)
def test_which_errors_fail_over_and_which_writes_may_be_retried(error: FakeRpcError, member_fault: bool, never_sent: bool) -> None:
    assert _is_member_fault(error) is member_fault
    assert _never_sent(error) is never_sent


@pytest.mark.parametrize(
    ("error", "write", "kind"),
    [
        (FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"), True, QuotaExceeded),
        (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"), True, ValueTooLarge),
        (FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "grpc: received message larger than max (3 vs. 2)"), True, ValueTooLarge),
        # The same gRPC words on a read mean the RESPONSE was too large: not the caller's value.
        (FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (5 vs. 4)"), False, StoreError),
        (FakeRpcError(grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"), False, RevisionCompacted),
        (FakeRpcError(DEADLINE, "Deadline Exceeded"), True, StoreUnavailable),
    ],
)
def test_errors_translate_to_what_the_caller_can_act_on(error: FakeRpcError, write: bool, kind: type) -> None:
    translated = _translate(error, "put '/k'", "http://a:1", write=write)
    assert type(translated) is kind
    assert "put '/k'" in str(translated) and "http://a:1" in str(translated)
