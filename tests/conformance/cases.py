"""The wire-conformance cases, described once for both sides of the comparison.

tfleet's `.proto` subset and the official TensorFlow Serving protos register the same
proto package names (`tensorflow.serving`, `tensorflow`), so they cannot be loaded in one
process. Each case below is therefore a *builder* that only talks to a `Namespace`, which
hands out message classes by full proto name:

* `make_fixtures.py` runs these builders in a throwaway venv against the official
  generated classes (tensorflow-serving-api + the protos of the tensorflow wheel) and
  stores the serialized bytes as fixtures;
* `test_wire_conformance.py` runs the very same builders against tfleet's generated
  classes and compares the bytes with the fixtures.

Because both sides execute identical code, a byte difference can only come from the
message definitions (or from a changed case whose fixtures were not regenerated).

Rules for builders, so that the comparison stays meaningful:

* Use only fields that exist in tfleet's subset: the subset is what is being checked, and a
  field it does not declare would fail on our side with an AttributeError anyway.
* No NaN anywhere: NaN != NaN would break the message-equality assertion even though the
  bytes match.
* Pack `Any` values with `deterministic=True`: a map inside an `Any` is serialized by
  `Pack`, not by the outer `SerializeToString(deterministic=True)`.
* Only the standard library and `google.protobuf` may be imported here: this module runs
  in the official-classes venv, which has no tfleet and no numpy.

Changing, adding or removing a case requires regenerating the fixtures
(`make conformance-fixtures`); `test_every_case_has_a_fixture` and the byte comparison
fail until that is done.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Callable

from google.protobuf import descriptor_pool, message, message_factory


class Namespace:
    """Message classes and enum values of one descriptor pool, looked up by full proto name.

    The default pool holds whatever generated modules the current process imported: the
    official ones in the fixture builder, tfleet's in the tests. Looking classes up by name
    (instead of importing modules) is what lets the same builder run on both sides, since
    the Python module paths differ (`tensorflow_serving.apis.predict_pb2` vs
    `tfleet.tfs.pb.predict_pb2`) while the proto names do not.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool if pool is not None else descriptor_pool.Default()

    def __call__(self, full_name: str) -> type[message.Message]:
        return message_factory.GetMessageClass(self._pool.FindMessageTypeByName(full_name))

    def enum(self, full_name: str, value_name: str) -> int:
        """The number of `value_name` in enum `full_name` (e.g. "tensorflow.DataType", "DT_FLOAT")."""
        return self._pool.FindEnumTypeByName(full_name).values_by_name[value_name].number


Builder = Callable[[Namespace], message.Message]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    """File stem of the fixture: tests/conformance/fixtures/<name>.bin."""
    message: str
    """Full proto name of the message the builder returns."""
    build: Builder
    why: str
    """What this case protects; shown in failure messages."""


# The gRPC methods tfleet calls. The fixture builder checks that the official stubs expose
# them and records their paths; the tests check that our stubs use the same paths and types.
REQUIRED_METHODS: dict[str, tuple[str, str]] = {
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest": (
        "tensorflow.serving.ReloadConfigRequest",
        "tensorflow.serving.ReloadConfigResponse",
    ),
    "/tensorflow.serving.ModelService/GetModelStatus": (
        "tensorflow.serving.GetModelStatusRequest",
        "tensorflow.serving.GetModelStatusResponse",
    ),
    "/tensorflow.serving.PredictionService/Predict": (
        "tensorflow.serving.PredictRequest",
        "tensorflow.serving.PredictResponse",
    ),
    "/tensorflow.serving.PredictionService/GetModelMetadata": (
        "tensorflow.serving.GetModelMetadataRequest",
        "tensorflow.serving.GetModelMetadataResponse",
    ),
}

# Error codes used below (tensorflow.error.Code; StatusProto.error_code carries them).
_OK = 0
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_FAILED_PRECONDITION = 9
_UNAVAILABLE = 14


def _dtype(ns: Namespace, name: str) -> int:
    return ns.enum("tensorflow.DataType", name)


def _shape(ns: Namespace, *dims: int | tuple[int, str]) -> message.Message:
    """A TensorShapeProto; a dim given as (size, name) also sets the dim's name."""
    shape = ns("tensorflow.TensorShapeProto")()
    for dim in dims:
        size, name = dim if isinstance(dim, tuple) else (dim, "")
        shape.dim.add(size=size, name=name)
    return shape


# --- model management -------------------------------------------------------------------


def reload_config_request_models(ns: Namespace) -> message.Message:
    """Every version policy, labels, platforms and non-ASCII text in one reload."""
    request = ns("tensorflow.serving.ReloadConfigRequest")()
    configs = request.config.model_config_list.config

    resnet = configs.add(name="resnet", base_path="/models/resnet", model_platform="tensorflow")
    resnet.model_version_policy.latest.num_versions = 2

    # `latest` present but empty: the server reads it as "latest 1". Presence of the empty
    # sub-message must survive (it is distinct from "no policy").
    configs.add(name="tiny", base_path="/models/tiny", model_platform="tensorflow").model_version_policy.latest.SetInParent()

    bert = configs.add(name="bert", base_path="s3://models-bucket/bert", model_platform="tensorflow")
    bert.model_version_policy.all.SetInParent()

    ranker = configs.add(name="ranker", base_path="gs://models/ranker", model_platform="tensorflow")
    ranker.model_version_policy.specific.versions.extend([3, 7, 1_700_000_000_123])
    ranker.version_labels["stable"] = 3
    ranker.version_labels["canary"] = 7
    ranker.version_labels["next"] = 1_700_000_000_123  # a timestamp-like version: multi-byte varint
    ranker.version_labels["zero"] = 0  # a zero map value is still written (entries always are)

    # No policy, no platform, UTF-8 in name and path.
    configs.add(name="modèle-ü", base_path="/models/modèle-ü")

    request.metric_names.extend(["/tensorflow/serving/model_count"])
    return request


def reload_config_request_empty_list(ns: Namespace) -> message.Message:
    """A present but empty model_config_list: the server unloads every model."""
    request = ns("tensorflow.serving.ReloadConfigRequest")()
    request.config.model_config_list.SetInParent()
    return request


def reload_config_response_ok(ns: Namespace) -> message.Message:
    response = ns("tensorflow.serving.ReloadConfigResponse")()
    response.status.SetInParent()
    return response


def reload_config_response_error(ns: Namespace) -> message.Message:
    response = ns("tensorflow.serving.ReloadConfigResponse")()
    response.status.error_code = _INVALID_ARGUMENT
    response.status.error_message = "Invalid model_version_policy: versions must be non-empty — «ranker»"
    return response


# --- model status -------------------------------------------------------------------------


def get_model_status_request_latest(ns: Namespace) -> message.Message:
    request = ns("tensorflow.serving.GetModelStatusRequest")()
    request.model_spec.name = "resnet"
    return request


def get_model_status_request_version(ns: Namespace) -> message.Message:
    request = ns("tensorflow.serving.GetModelStatusRequest")()
    request.model_spec.name = "resnet"
    request.model_spec.version.value = 1_700_000_000_123
    return request


def get_model_status_request_version_zero(ns: Namespace) -> message.Message:
    """Version 0 is a legal directory name; the Int64Value wrapper must still be present."""
    request = ns("tensorflow.serving.GetModelStatusRequest")()
    request.model_spec.name = "resnet"
    request.model_spec.version.CopyFrom(ns("google.protobuf.Int64Value")(value=0))
    return request


def get_model_status_response(ns: Namespace) -> message.Message:
    response = ns("tensorflow.serving.GetModelStatusResponse")()
    state = "tensorflow.serving.ModelVersionStatus.State"
    rows = [
        (7, "LOADING", _OK, ""),
        (3, "AVAILABLE", _OK, ""),
        (2, "UNLOADING", _OK, ""),
        (1, "END", _OK, ""),
        (9, "START", _OK, ""),
        (5, "END", _NOT_FOUND, "Could not find base path /models/resnet/5 for servable resnet"),
        (6, "END", _FAILED_PRECONDITION, "Failed to load SavedModel: op Foo not registered"),
        (0, "UNKNOWN", _UNAVAILABLE, ""),
    ]
    for version, state_name, code, text in rows:
        entry = response.model_version_status.add(version=version, state=ns.enum(state, state_name))
        entry.status.error_code = code
        entry.status.error_message = text
        entry.status.SetInParent()  # present even when OK (error_code 0, no message)
    return response


def model_spec_version_label(ns: Namespace) -> message.Message:
    return ns("tensorflow.serving.ModelSpec")(name="ranker", version_label="canary", signature_name="serving_default")


# --- prediction ---------------------------------------------------------------------------


def predict_request(ns: Namespace) -> message.Message:
    """float/int64/string tensors, raw tensor_content, named dims, an output filter."""
    Tensor = ns("tensorflow.TensorProto")
    request = ns("tensorflow.serving.PredictRequest")()
    request.model_spec.CopyFrom(model_spec_version_label(ns))
    request.inputs["dense"].CopyFrom(
        Tensor(
            dtype=_dtype(ns, "DT_FLOAT"),
            tensor_shape=_shape(ns, (2, "batch"), 3),
            # inf, -0.0, a float32 denormal and a value that float32 rounds.
            float_val=[0.1, -2.5, float("inf"), -0.0, 1e-45, 3.4028234663852886e38],
        )
    )
    request.inputs["ids"].CopyFrom(
        Tensor(
            dtype=_dtype(ns, "DT_INT64"),
            tensor_shape=_shape(ns, 4),
            # a negative int64 is a ten-byte varint; packed encoding on both sides
            int64_val=[1, -1, 2**63 - 1, -(2**63)],
        )
    )
    request.inputs["text"].CopyFrom(
        Tensor(
            dtype=_dtype(ns, "DT_STRING"),
            tensor_shape=_shape(ns, 3),
            string_val=[b"hello", "naïve café".encode(), b"\x00\xff binary"],
        )
    )
    request.inputs["raw"].CopyFrom(
        Tensor(
            dtype=_dtype(ns, "DT_FLOAT"),
            tensor_shape=_shape(ns, 2, 2),
            tensor_content=struct.pack("<4f", 1.5, -2.0, 3.25, 0.0),
        )
    )
    request.inputs["scalar"].CopyFrom(Tensor(dtype=_dtype(ns, "DT_INT64"), tensor_shape=_shape(ns), int64_val=[42]))
    request.output_filter.extend(["scores", "classes"])
    return request


def predict_response(ns: Namespace) -> message.Message:
    """Outputs map plus model_spec (declared 2 before outputs 1 in the official proto)."""
    Tensor = ns("tensorflow.TensorProto")
    response = ns("tensorflow.serving.PredictResponse")()
    response.model_spec.name = "ranker"
    response.model_spec.version.value = 7
    response.model_spec.signature_name = "serving_default"
    response.outputs["scores"].CopyFrom(Tensor(dtype=_dtype(ns, "DT_FLOAT"), tensor_shape=_shape(ns, 2, 1), float_val=[0.875, 0.125]))
    response.outputs["classes"].CopyFrom(Tensor(dtype=_dtype(ns, "DT_INT64"), tensor_shape=_shape(ns, 2), int64_val=[4, 0]))
    response.outputs["labels"].CopyFrom(Tensor(dtype=_dtype(ns, "DT_STRING"), tensor_shape=_shape(ns, 2), string_val=[b"cat", b"dog"]))
    return response


# --- metadata -----------------------------------------------------------------------------


def get_model_metadata_request(ns: Namespace) -> message.Message:
    request = ns("tensorflow.serving.GetModelMetadataRequest")()
    request.model_spec.name = "ranker"
    request.model_spec.version.value = 3
    request.metadata_field.append("signature_def")
    return request


def get_model_metadata_response(ns: Namespace) -> message.Message:
    """metadata["signature_def"] is an Any packing a SignatureDefMap, as the server sends it."""
    TensorInfo = ns("tensorflow.TensorInfo")
    signature = ns("tensorflow.SignatureDef")(method_name="tensorflow/serving/predict")
    signature.inputs["x"].CopyFrom(TensorInfo(name="serving_default_x:0", dtype=_dtype(ns, "DT_FLOAT"), tensor_shape=_shape(ns, -1, 3)))
    signature.inputs["ids"].CopyFrom(TensorInfo(name="serving_default_ids:0", dtype=_dtype(ns, "DT_INT64"), tensor_shape=_shape(ns, (-1, "batch"))))
    signature.outputs["scores"].CopyFrom(TensorInfo(name="StatefulPartitionedCall:0", dtype=_dtype(ns, "DT_FLOAT"), tensor_shape=_shape(ns, -1, 1)))
    signature.outputs["labels"].CopyFrom(
        TensorInfo(name="StatefulPartitionedCall:1", dtype=_dtype(ns, "DT_STRING"), tensor_shape=ns("tensorflow.TensorShapeProto")(unknown_rank=True))
    )
    init_op = ns("tensorflow.SignatureDef")()
    init_op.outputs["__saved_model_init_op"].CopyFrom(TensorInfo(name="NoOp", tensor_shape=_shape(ns)))

    signature_map = ns("tensorflow.serving.SignatureDefMap")()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    signature_map.signature_def["__saved_model_init_op"].CopyFrom(init_op)

    response = ns("tensorflow.serving.GetModelMetadataResponse")()
    response.model_spec.name = "ranker"
    response.model_spec.version.value = 3
    response.metadata["signature_def"].Pack(signature_map, deterministic=True)
    return response


CASES: tuple[Case, ...] = (
    Case(
        "reload_config_request_models",
        "tensorflow.serving.ReloadConfigRequest",
        reload_config_request_models,
        "ModelConfig fields, latest/all/specific policies, version_labels map, metric_names",
    ),
    Case(
        "reload_config_request_empty_list",
        "tensorflow.serving.ReloadConfigRequest",
        reload_config_request_empty_list,
        "an empty model_config_list must stay present (it means: unload everything)",
    ),
    Case("reload_config_response_ok", "tensorflow.serving.ReloadConfigResponse", reload_config_response_ok, "the OK answer of a reload (empty status)"),
    Case(
        "reload_config_response_error",
        "tensorflow.serving.ReloadConfigResponse",
        reload_config_response_error,
        "StatusProto.error_code (an enum officially, int32 in the subset) and error_message",
    ),
    Case("get_model_status_request_latest", "tensorflow.serving.GetModelStatusRequest", get_model_status_request_latest, "ModelSpec with a name only"),
    Case(
        "get_model_status_request_version",
        "tensorflow.serving.GetModelStatusRequest",
        get_model_status_request_version,
        "ModelSpec.version as google.protobuf.Int64Value in the version_choice oneof",
    ),
    Case(
        "get_model_status_request_version_zero",
        "tensorflow.serving.GetModelStatusRequest",
        get_model_status_request_version_zero,
        "version 0 is sent as a present, empty Int64Value",
    ),
    Case(
        "get_model_status_response",
        "tensorflow.serving.GetModelStatusResponse",
        get_model_status_response,
        "ModelVersionStatus versions, every State value, statuses with and without errors",
    ),
    Case(
        "model_spec_version_label",
        "tensorflow.serving.ModelSpec",
        model_spec_version_label,
        "ModelSpec.version_label (field 4) in the version_choice oneof and signature_name",
    ),
    Case(
        "predict_request",
        "tensorflow.serving.PredictRequest",
        predict_request,
        "TensorProto dtype/shape/float_val/int64_val/string_val/tensor_content, inputs map, output_filter",
    ),
    Case("predict_response", "tensorflow.serving.PredictResponse", predict_response, "outputs map and model_spec"),
    Case("get_model_metadata_request", "tensorflow.serving.GetModelMetadataRequest", get_model_metadata_request, "metadata_field"),
    Case(
        "get_model_metadata_response",
        "tensorflow.serving.GetModelMetadataResponse",
        get_model_metadata_response,
        "metadata map of Any packing SignatureDefMap / SignatureDef / TensorInfo",
    ),
)


def build(case: Case, ns: Namespace) -> bytes:
    """Build `case` with `ns`, check its type and serialize it deterministically (sorted map keys)."""
    msg = case.build(ns)
    actual = msg.DESCRIPTOR.full_name
    if actual != case.message:
        raise TypeError(f"case {case.name}: builder returned {actual}, the case declares {case.message}")
    return msg.SerializeToString(deterministic=True)
