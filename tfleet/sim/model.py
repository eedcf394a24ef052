"""The simulator's own model format, so that a demo can send real inference requests.

kind "affine" (the only one so far): one float input "x" of any shape, one float output "y"
of the same shape, y = scale * x + bias elementwise. Its "serving_default" signature is what
GetModelMetadata and GET /v1/models/<name>/metadata describe.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

from tfleet.sim.modeldir import VersionSpec
from tfleet.sim.status import FAILED_PRECONDITION, INVALID_ARGUMENT, SimError
from tfleet.tfs.pb import get_model_metadata_pb2, tensorflow_types_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INPUT, OUTPUT = "x", "y"

_DT = tensorflow_types_pb2
# dtype -> (repeated field holding the values, struct format of tensor_content)
_NUMERIC: dict[int, tuple[str, str]] = {
    _DT.DT_FLOAT: ("float_val", "f"),
    _DT.DT_DOUBLE: ("double_val", "d"),
    _DT.DT_INT32: ("int_val", "i"),
    _DT.DT_INT16: ("int_val", "h"),
    _DT.DT_INT8: ("int_val", "b"),
    _DT.DT_UINT8: ("int_val", "B"),
    _DT.DT_INT64: ("int64_val", "q"),
}


def signature_def_map() -> get_model_metadata_pb2.SignatureDefMap:
    result = get_model_metadata_pb2.SignatureDefMap()
    signature = result.signature_def[DEFAULT_SIGNATURE]
    signature.method_name = PREDICT_METHOD
    for mapping, alias in ((signature.inputs, INPUT), (signature.outputs, OUTPUT)):
        info = mapping[alias]
        info.name = f"{alias}:0"
        info.dtype = _DT.DT_FLOAT
        info.tensor_shape.unknown_rank = True
    return result


def signature_json() -> dict[str, Any]:
    """The same signature in the JSON shape of the real REST metadata endpoint."""
    tensor = {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [], "unknown_rank": True}}
    return {
        DEFAULT_SIGNATURE: {
            "inputs": {INPUT: {**tensor, "name": f"{INPUT}:0"}},
            "outputs": {OUTPUT: {**tensor, "name": f"{OUTPUT}:0"}},
            "method_name": PREDICT_METHOD,
        }
    }


def check_signature(name: str) -> None:
    if name not in ("", DEFAULT_SIGNATURE):
        raise SimError(FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')


def check_inputs(names: Sequence[str]) -> None:
    if sorted(names) != [INPUT]:
        raise SimError(
            INVALID_ARGUMENT,
            f"input tensor alias not found in signature: {', '.join(sorted(names)) or '(none)'}. "
            f"Inputs expected to be in the set {{{INPUT}}}.",
        )


def apply(spec: VersionSpec, value: float) -> float:
    return spec.scale * value + spec.bias


def apply_nested(spec: VersionSpec, value: Any) -> Any:
    """Apply the model to a JSON value: a number or nested lists of numbers."""
    if isinstance(value, list):
        return [apply_nested(spec, item) for item in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimError(INVALID_ARGUMENT, f"input {INPUT!r} must hold numbers, got {value!r}")
    return apply(spec, float(value))


def tensor_values(tensor: tensorflow_types_pb2.TensorProto) -> tuple[list[float], list[int]]:
    """Flat values and shape of a numeric TensorProto."""
    if tensor.dtype not in _NUMERIC:
        name = _DT.DataType.Name(tensor.dtype) if tensor.dtype in _DT.DataType.values() else tensor.dtype
        raise SimError(INVALID_ARGUMENT, f"input {INPUT!r}: expects a numeric tensor, got dtype {name}")
    field, fmt = _NUMERIC[tensor.dtype]
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    count = math.prod(shape) if shape else 1
    if tensor.tensor_content:
        size = struct.calcsize("<" + fmt)
        if len(tensor.tensor_content) != count * size:
            raise SimError(INVALID_ARGUMENT, f"input {INPUT!r}: tensor_content does not match shape {shape}")
        values = [float(v) for v in struct.unpack(f"<{count}{fmt}", tensor.tensor_content)]
    else:
        values = [float(v) for v in getattr(tensor, field)]
        if len(values) == 1 and count != 1:
            values = values * count  # a single value fills the whole tensor, as in TensorFlow
    if len(values) != count:
        raise SimError(INVALID_ARGUMENT, f"input {INPUT!r}: {len(values)} value(s) do not match shape {shape}")
    return values, shape


def output_tensor(values: Sequence[float], shape: Sequence[int]) -> tensorflow_types_pb2.TensorProto:
    tensor = tensorflow_types_pb2.TensorProto(dtype=_DT.DT_FLOAT)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(values)
    return tensor
