"""One Predict call to TF Serving, with tensors as nested Python lists.

The operator CLI (`tfleet predict`) uses this to check that a model answers where the
control plane says it is served. Inputs are sent as DT_FLOAT tensors (the common case for a
smoke test); outputs of the usual dtypes are decoded, from the typed ``*_val`` fields or
from ``tensor_content``, and reshaped to the tensor's shape.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from tfleet.tfs.pb import predict_pb2, prediction_service_pb2_grpc, tensorflow_types_pb2
from tfleet.tfs.types import TfsDeadlineExceeded, TfsError, TfsUnavailable

DEFAULT_SIGNATURE = "serving_default"

_DT = tensorflow_types_pb2
# dtype -> (typed field, struct format of one element in tensor_content)
_FIELDS: dict[int, tuple[str, str]] = {
    _DT.DT_FLOAT: ("float_val", "f"),
    _DT.DT_DOUBLE: ("double_val", "d"),
    _DT.DT_INT32: ("int_val", "i"),
    _DT.DT_INT16: ("int_val", "h"),
    _DT.DT_INT8: ("int_val", "b"),
    _DT.DT_UINT8: ("int_val", "B"),
    _DT.DT_INT64: ("int64_val", "q"),
    _DT.DT_BOOL: ("bool_val", "?"),
    _DT.DT_STRING: ("string_val", ""),
}


class TensorError(ValueError):
    """An input that is not a (nested, rectangular) list of numbers, or an output that
    cannot be decoded."""


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int  # the version that answered (TF Serving fills it in)
    signature: str
    outputs: dict[str, Any]  # name -> nested lists


def shape_of(value: Any, where: str) -> tuple[list[int], list[float]]:
    """(shape, flat values) of a number or a rectangular nested list of numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        raise TensorError(f"{where}: expected a number or a list of numbers, found {type(value).__name__}")
    if not isinstance(value, list):
        if not math.isfinite(value):
            raise TensorError(f"{where}: {value} is not a finite number")
        return [], [float(value)]
    if not value:
        return [0], []
    shapes, flat = [], []
    for index, item in enumerate(value):
        shape, values = shape_of(item, f"{where}[{index}]")
        shapes.append(shape)
        flat.extend(values)
    if any(shape != shapes[0] for shape in shapes):
        raise TensorError(f"{where}: nested lists have different lengths (a tensor must be rectangular)")
    return [len(value), *shapes[0]], flat


def float_tensor(value: Any, where: str) -> tensorflow_types_pb2.TensorProto:
    shape, flat = shape_of(value, where)
    tensor = tensorflow_types_pb2.TensorProto(dtype=_DT.DT_FLOAT)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(flat)
    return tensor


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    if not shape:
        return flat[0] if flat else None
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def decode(tensor: tensorflow_types_pb2.TensorProto, name: str) -> Any:
    """A TensorProto as nested lists (strings as text)."""
    if tensor.dtype not in _FIELDS:
        label = _DT.DataType.Name(tensor.dtype) if tensor.dtype in _DT.DataType.values() else str(tensor.dtype)
        raise TensorError(f"output {name}: dtype {label} is not supported by this client")
    field, fmt = _FIELDS[tensor.dtype]
    shape = [d.size for d in tensor.tensor_shape.dim]
    count = math.prod(shape) if shape else 1
    if tensor.tensor_content and fmt:
        size = struct.calcsize("<" + fmt)
        flat: list[Any] = list(struct.unpack(f"<{len(tensor.tensor_content) // size}{fmt}", tensor.tensor_content))
    else:
        flat = list(getattr(tensor, field))
        if tensor.dtype == _DT.DT_STRING:
            flat = [item.decode("utf-8", "replace") for item in flat]
    if len(flat) == 1 and count > 1:
        flat = flat * count  # one value stands for every element (TensorProto's rule)
    if len(flat) != count:
        raise TensorError(f"output {name}: {len(flat)} values for shape {shape}")
    return _reshape(flat, shape)


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
