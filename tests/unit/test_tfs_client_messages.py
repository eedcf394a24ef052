"""The client's pure parts: ModelConfigSpec -> ModelServerConfig, reply decoding, error mapping.

The byte-level checks pin the field numbers of tfserving-wire.md, so that a wrong number in
the proto subset cannot go unnoticed even without the conformance fixtures.
"""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import FakeRpcError
from tfleet.tfs import client
from tfleet.tfs.client import to_model_server_config
from tfleet.tfs.pb import model_management_pb2, model_server_config_pb2
from tfleet.tfs.types import (
    ModelConfigSpec,
    TfsDeadlineExceeded,
    TfsError,
    TfsUnavailable,
    VersionPolicy,
    VersionState,
)


def test_empty_list_is_present_on_the_wire() -> None:
    config = to_model_server_config([])
    assert config.WhichOneof("config") == "model_config_list"
    assert len(config.model_config_list.config) == 0
    # field 1 (model_config_list), length 0: "unload everything", not "no config"
    assert config.SerializeToString() == b"\x0a\x00"
    request = model_management_pb2.ReloadConfigRequest(config=config)
    assert request.SerializeToString() == b"\x0a\x02\x0a\x00"


def test_latest_policy_bytes() -> None:
    config = to_model_server_config([ModelConfigSpec("m", "/p")])
    entry = (
        b"\x0a\x01m"  # name = 1
        b"\x12\x02/p"  # base_path = 2
        b"\x22\x0atensorflow"  # model_platform = 4
        b"\x3a\x05" + b"\xa2\x06\x02\x08\x01"  # model_version_policy = 7 { latest = 100 { num_versions = 1: 1 } }
    )
    config_list = b"\x0a" + bytes([len(entry)]) + entry
    assert config.SerializeToString(deterministic=True) == b"\x0a" + bytes([len(config_list)]) + config_list


def test_all_and_specific_policies() -> None:
    config = to_model_server_config(
        [
            ModelConfigSpec("a", "/a", model_version_policy=VersionPolicy("all")),
            ModelConfigSpec("s", "/s", model_version_policy=VersionPolicy("specific", versions=(3, 1))),
            ModelConfigSpec("l", "/l", model_version_policy=VersionPolicy("latest", num_versions=2)),
        ]
    )
    a, s, latest = config.model_config_list.config
    assert a.model_version_policy.WhichOneof("policy_choice") == "all"
    assert a.model_version_policy.SerializeToString() == b"\xaa\x06\x00"  # all = 101, empty but present
    assert s.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(s.model_version_policy.specific.versions) == [3, 1]
    assert latest.model_version_policy.latest.num_versions == 2


def test_fields_names_platform_and_labels() -> None:
    spec = ModelConfigSpec("resnet", "/models/resnet", model_platform="tensorflow", version_labels=(("canary", 2), ("stable", 1)))
    (entry,) = to_model_server_config([spec]).model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("resnet", "/models/resnet", "tensorflow")
    assert dict(entry.version_labels) == {"canary": 2, "stable": 1}
    assert entry.model_type == model_server_config_pb2.MODEL_TYPE_UNSPECIFIED


def test_order_is_kept_and_equal_inputs_give_equal_bytes() -> None:
    specs = [ModelConfigSpec(n, f"/{n}", version_labels=(("a", 1), ("b", 2))) for n in ("z", "a", "m")]
    first = to_model_server_config(specs)
    assert [c.name for c in first.model_config_list.config] == ["z", "a", "m"]
    assert first.SerializeToString(deterministic=True) == to_model_server_config(list(specs)).SerializeToString(deterministic=True)


def test_unknown_policy_kind_is_refused() -> None:
    bad = ModelConfigSpec("m", "/m", model_version_policy=VersionPolicy("newest"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="newest"):
        to_model_server_config([bad])


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (0, VersionState.UNKNOWN),
        (10, VersionState.START),
        (20, VersionState.LOADING),
        (30, VersionState.AVAILABLE),
        (40, VersionState.UNLOADING),
        (50, VersionState.END),
        (77, VersionState.UNKNOWN),
        (-1, VersionState.UNKNOWN),
    ],
)
def test_state_numbers_never_crash(raw: int, state: VersionState) -> None:
    assert client._state_of(raw) is state


@pytest.mark.parametrize(
    ("code", "kind", "number"),
    [
        (grpc.StatusCode.UNAVAILABLE, TfsUnavailable, 14),
        (grpc.StatusCode.DEADLINE_EXCEEDED, TfsDeadlineExceeded, 4),
        (grpc.StatusCode.FAILED_PRECONDITION, TfsError, 9),
        (grpc.StatusCode.INVALID_ARGUMENT, TfsError, 3),
        (grpc.StatusCode.UNKNOWN, TfsError, 2),
        (grpc.StatusCode.NOT_FOUND, TfsError, 5),
    ],
)
def test_grpc_errors_map_to_tensorflow_codes(code: grpc.StatusCode, kind: type, number: int) -> None:
    error = client._error_from_rpc(FakeRpcError(code, "details here"), "call")
    assert type(error) is kind
    assert error.code == number
    assert "details here" in error.message


def test_client_construction_never_touches_the_network() -> None:
    # Nothing listens on port 1; a lazy channel must not care until a call is made.
    tfs = client.TfsClient("127.0.0.1:1")
    with pytest.raises(TfsUnavailable):
        tfs.get_model_status("m", timeout=2.0)
    tfs.close()
