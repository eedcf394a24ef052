"""The simulator's own model format, so that a demo can send real inference requests.

kind "affine" (the only one so far): one float input "x" of any shape, one float output "y"
of the same shape, y = scale * x + bias elementwise. Its "serving_default" signature is what
GetModelMetadata and GET /v1/models/<name>/metadata describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfleet.sim.modeldir import VersionSpec
from tfleet.sim.status import FAILED_PRECONDITION, INVALID_ARGUMENT, SimError
from tfleet.tfs import tensors
from tfleet.tfs.pb import get_model_metadata_pb2, tensorflow_types_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INPUT, OUTPUT = "x", "y"

_DT = tensorflow_types_pb2


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
            f"input tensor alias not found in signature: {', '.join(sorted(names)) or '(none)'}. Inputs expected to be in the set {{{INPUT}}}.",
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
    """Flat values and shape of a numeric TensorProto (INVALID_ARGUMENT otherwise, as the real server)."""
    where = f"input {INPUT!r}"
    if not tensors.is_numeric(tensor):
        name = _DT.DataType.Name(tensor.dtype) if tensor.dtype in _DT.DataType.values() else tensor.dtype
        raise SimError(INVALID_ARGUMENT, f"{where}: expects a numeric tensor, got dtype {name}")
    try:
        values, shape = tensors.flat_values(tensor, where)
    except tensors.TensorError as exc:
        raise SimError(INVALID_ARGUMENT, str(exc)) from None
    return [float(v) for v in values], shape


def output_tensor(values: Sequence[float], shape: Sequence[int]) -> tensorflow_types_pb2.TensorProto:
    return tensors.float_tensor_of(values, shape)
