"""One Predict call to TF Serving, with tensors as nested Python lists.

The operator CLI (`tfleet predict`) uses this to check that a model answers where the
control plane says it is served. Inputs are sent as DT_FLOAT tensors (the common case for a
smoke test); outputs of the usual dtypes are decoded, from the typed ``*_val`` fields or
from ``tensor_content``, and reshaped to the tensor's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from tfleet.tfs.pb import predict_pb2, prediction_service_pb2_grpc
from tfleet.tfs.tensors import TensorError, decode, float_tensor, shape_of  # noqa: F401 (re-exported)
from tfleet.tfs.types import TfsDeadlineExceeded, TfsError, TfsUnavailable

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int  # the version that answered (TF Serving fills it in)
    signature: str
    outputs: dict[str, Any]  # name -> nested lists


def predict(
    address: str,
    model: str,
    inputs: Mapping[str, Any],
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = DEFAULT_SIGNATURE,
    timeout: float = 5.0,
) -> PredictResult:
    """Send one Predict to ``address`` (host:port of TF Serving's gRPC port).

    Raises TensorError for unusable inputs, and TfsUnavailable, TfsDeadlineExceeded or
    TfsError (with TF Serving's code and message) when the call fails.
    """
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(float_tensor(value, f"input {name}"))
    channel = grpc.insecure_channel(address)
    try:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    except grpc.RpcError as err:
        code = err.code() if callable(getattr(err, "code", None)) else None
        details = (err.details() if callable(getattr(err, "details", None)) else None) or str(err)
        what = f"Predict of {model} at {address}"
        if code == grpc.StatusCode.UNAVAILABLE:
            raise TfsUnavailable(code.value[0], f"{what}: {details}") from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise TfsDeadlineExceeded(code.value[0], f"{what}: no answer within {timeout:g} s") from None
        number = code.value[0] if isinstance(code, grpc.StatusCode) else 2
        raise TfsError(number, details) from None
    finally:
        channel.close()
    outputs = {name: decode(tensor, name) for name, tensor in sorted(reply.outputs.items())}
    return PredictResult(reply.model_spec.name or model, int(reply.model_spec.version.value), reply.model_spec.signature_name or signature, outputs)
