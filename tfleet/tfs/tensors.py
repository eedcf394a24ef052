"""TensorProto <-> Python values, shared by the Predict client and the simulator.

Only what tfleet needs: numeric, bool and string tensors, from nested lists (JSON) and back.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

from tfleet.tfs.pb import tensorflow_types_pb2


class TensorError(ValueError):
    """An input that is not a (nested, rectangular) list of numbers, or a tensor that
    cannot be decoded."""


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
    """A DT_FLOAT tensor of a number or a rectangular nested list of numbers."""
    shape, flat = shape_of(value, where)
    return float_tensor_of(flat, shape)


def float_tensor_of(flat: Sequence[float], shape: Sequence[int]) -> tensorflow_types_pb2.TensorProto:
    tensor = tensorflow_types_pb2.TensorProto(dtype=_DT.DT_FLOAT)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(flat)
    return tensor


def reshape(flat: list[Any], shape: list[int]) -> Any:
    if not shape:
        return flat[0] if flat else None
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def flat_values(tensor: tensorflow_types_pb2.TensorProto, where: str) -> tuple[list[Any], list[int]]:
    """Flat values and shape of a TensorProto (strings as text).

    Values come from tensor_content when it is set, else from the typed field; a single
    value stands for every element (TensorProto's rule).
    """
    if tensor.dtype not in _FIELDS:
        label = _DT.DataType.Name(tensor.dtype) if tensor.dtype in _DT.DataType.values() else str(tensor.dtype)
        raise TensorError(f"{where}: dtype {label} is not supported")
    field, fmt = _FIELDS[tensor.dtype]
    shape = [int(d.size) for d in tensor.tensor_shape.dim]
    count = math.prod(shape) if shape else 1
    if tensor.tensor_content and fmt:
        size = struct.calcsize("<" + fmt)
        if len(tensor.tensor_content) != count * size:
            raise TensorError(f"{where}: tensor_content does not match shape {shape}")
        flat: list[Any] = list(struct.unpack(f"<{count}{fmt}", tensor.tensor_content))
    else:
        flat = list(getattr(tensor, field))
        if tensor.dtype == _DT.DT_STRING:
            flat = [item.decode("utf-8", "replace") for item in flat]
    if len(flat) == 1 and count > 1:
        flat = flat * count
    if len(flat) != count:
        raise TensorError(f"{where}: {len(flat)} value(s) do not match shape {shape}")
    return flat, shape


def is_numeric(tensor: tensorflow_types_pb2.TensorProto) -> bool:
    return tensor.dtype in _FIELDS and tensor.dtype not in (_DT.DT_STRING, _DT.DT_BOOL)


def decode(tensor: tensorflow_types_pb2.TensorProto, name: str) -> Any:
    """A TensorProto as nested lists (strings as text)."""
    flat, shape = flat_values(tensor, f"output {name}")
    return reshape(flat, shape)
