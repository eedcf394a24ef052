"""The TF Serving gRPC client: the only code that talks to TF Serving's model-management API.

Why a class of its own: every other module works with the plain value types of
`tfleet.tfs.types`, so that planning code and tests never touch generated protobuf classes,
and every way a call can fail ends up as one of three exceptions the caller can act on:

- `TfsUnavailable`: the server could not be reached (not started, restarting, refused).
- `TfsDeadlineExceeded`: the call outlived its deadline. For a reload this does NOT mean the
  reload failed: TF Serving keeps loading after the client gave up (tfserving-wire.md, 2).
- `TfsError(code, message)`: the server answered with an error. `code` is a
  tensorflow.error.Code number (OK=0 ... UNAUTHENTICATED=16); gRPC status codes use the same
  numbers, which is why a failed RPC maps 1:1.

The real server reports a failed reload by failing the RPC with the error's code (its
ReloadConfigResponse.status is then never delivered); a non-OK status inside an OK reply is
handled as well, so a server that does it the other way round is understood too.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import grpc

from tfleet.tfs.pb import (
    get_model_status_pb2,
    model_management_pb2,
    model_server_config_pb2,
    model_service_pb2_grpc,
)
from tfleet.tfs.types import (
    ModelConfigSpec,
    TfsDeadlineExceeded,
    TfsError,
    TfsUnavailable,
    VersionState,
    VersionStatus,
)

# ModelVersionStatus.State numbers on the wire. Anything else (a newer server, a corrupt
# reply) reads as UNKNOWN instead of crashing the caller.
_STATES: dict[int, VersionState] = {
    0: VersionState.UNKNOWN,
    10: VersionState.START,
    20: VersionState.LOADING,
    30: VersionState.AVAILABLE,
    40: VersionState.UNLOADING,
    50: VersionState.END,
}
_UNKNOWN_CODE = 2

# gRPC backs off reconnecting up to 120 s by default; after a TF Serving restart the agent
# would then see UNAVAILABLE long after the server is back. Retry a connection at least
# every second instead (a local server: the cost is one refused connect per second).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def to_model_server_config(models: Sequence[ModelConfigSpec]) -> model_server_config_pb2.ModelServerConfig:
    """Build the ModelServerConfig of one reload: the FULL list TF Serving must serve.

    The model_config_list is always present, even when empty: an empty list means "unload
    everything", whereas a config with no list at all is rejected by TF Serving with
    INVALID_ARGUMENT. Labels are written in sorted order so equal inputs give equal bytes.
    """
    config = model_server_config_pb2.ModelServerConfig()
    config_list = config.model_config_list
    config_list.SetInParent()
    for spec in models:
        entry = config_list.config.add()
        entry.name = spec.name
        entry.base_path = spec.base_path
        entry.model_platform = spec.model_platform
        policy = spec.model_version_policy
        if policy.kind == "latest":
            entry.model_version_policy.latest.num_versions = policy.num_versions
        elif policy.kind == "all":
            entry.model_version_policy.all.SetInParent()
        elif policy.kind == "specific":
            entry.model_version_policy.specific.versions.extend(policy.versions)
        else:
            raise ValueError(f"model {spec.name!r}: unknown version policy kind {policy.kind!r}")
        for label, version in sorted(spec.version_labels):
            entry.version_labels[label] = version
    return config


def _state_of(raw: int) -> VersionState:
    return _STATES.get(int(raw), VersionState.UNKNOWN)


def _error_from_rpc(err: grpc.RpcError, what: str) -> TfsError:
    """Turn a failed RPC into the exception the caller acts on."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = (details_fn() if callable(details_fn) else None) or str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return TfsUnavailable(code.value[0], f"{what}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TfsDeadlineExceeded(code.value[0], f"{what}: {details}")
    number = code.value[0] if isinstance(code, grpc.StatusCode) else _UNKNOWN_CODE
    return TfsError(number, details)


class TfsClient:
    """The only code that talks to TF Serving's model-management API.

    The channel connects lazily, so constructing a client never fails while the server is
    down; each call fails fast with TfsUnavailable instead of waiting for it.
    """

    def __init__(self, grpc_address: str) -> None:
        self.address = grpc_address
        self._channel = grpc.insecure_channel(grpc_address, options=_CHANNEL_OPTIONS)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def reload_config(self, models: Sequence[ModelConfigSpec], timeout: float) -> None:
        """Send ONE HandleReloadConfigRequest with the full model list.

        Returns once TF Serving has applied it (new models loaded). `timeout` is mandatory
        because a reload naming a bad base_path never returns (tfserving-wire.md, 4).
        """
        request = model_management_pb2.ReloadConfigRequest(config=to_model_server_config(models))
        try:
            reply = self._models.HandleReloadConfigRequest(request, timeout=timeout)
        except grpc.RpcError as err:
            raise _error_from_rpc(err, f"reload of {len(models)} model(s) at {self.address}") from err
        if reply.HasField("status") and reply.status.error_code != 0:
            raise TfsError(reply.status.error_code, reply.status.error_message)

    def get_model_status(self, name: str, timeout: float) -> list[VersionStatus] | None:
        """Versions of one model as TF Serving reports them, lowest version first.

        None when TF Serving answers NOT_FOUND: it has never been given this model (for
        instance it restarted with an empty list). A removed model keeps answering, with its
        versions in END.
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            reply = self._models.GetModelStatus(request, timeout=timeout)
        except grpc.RpcError as err:
            if getattr(err, "code", None) is not None and err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _error_from_rpc(err, f"status of model {name!r} at {self.address}") from err
        result = [
            VersionStatus(
                version=int(item.version),
                state=_state_of(item.state),
                error_code=int(item.status.error_code),
                error_message=item.status.error_message,
            )
            for item in reply.model_version_status
        ]
        result.sort(key=lambda status: status.version)
        return result

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TfsClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
