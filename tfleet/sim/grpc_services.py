"""The simulator's gRPC servicers: ModelService and PredictionService.

Thin on purpose: decode the request, ask SimCore, encode the reply. Errors end the RPC with
the gRPC status whose number is the tensorflow code, and the real server's message, as
tensorflow_model_server does (its ReloadConfigResponse.status is then never delivered).
A reload keeps running when its client gives up: gRPC does not interrupt the handler.
"""

from __future__ import annotations

import time
from typing import NoReturn

import grpc

from tfleet.sim import model
from tfleet.sim.core import SimCore
from tfleet.sim.metrics import SimMetrics
from tfleet.sim.status import INVALID_ARGUMENT, OK_STATUS, SimError, Status
from tfleet.tfs.pb import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
_STATE_NUMBERS = get_model_status_pb2.ModelVersionStatus.State


def abort(context: grpc.ServicerContext, status: Status) -> NoReturn:
    context.abort(_GRPC_CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.grpc_message())
    raise AssertionError("context.abort returned")  # pragma: no cover


def spec_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) named by a ModelSpec; (None, None) means the latest version."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: SimCore) -> None:
        self._core = core
        self._faults = core.faults

    def GetModelStatus(  # noqa: N802 (names fixed by the gRPC service)
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        self._faults.checkpoint()
        if not request.HasField("model_spec"):
            abort(context, Status(INVALID_ARGUMENT, "Missing ModelSpec"))
        # Like the real server, only a version number narrows the answer; a label does not.
        version, _ = spec_choice(request.model_spec)
        try:
            rows = self._core.model_status(request.model_spec.name, version)
        except SimError as err:
            abort(context, err.status)
        reply = get_model_status_pb2.GetModelStatusResponse()
        for number, entry in rows:
            item = reply.model_version_status.add(version=number, state=_STATE_NUMBERS.Value(entry.state.value))
            item.status.SetInParent()
            item.status.error_code = entry.status.code
            item.status.error_message = entry.status.message
        return reply

    def HandleReloadConfigRequest(  # noqa: N802
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        self._faults.checkpoint()
        status = self._core.reload(request)
        if not status.ok:
            abort(context, status)
        reply = model_management_pb2.ReloadConfigResponse()
        reply.status.SetInParent()
        return reply


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: SimCore, metrics: SimMetrics) -> None:
        self._core, self._metrics = core, metrics
        self._faults = core.faults

    def Predict(  # noqa: N802
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        self._faults.checkpoint()
        started = time.perf_counter()
        status = OK_STATUS
        try:
            reply = self._predict(request)
        except SimError as err:
            status = err.status
        self._metrics.record_request(request.model_spec.name, status.code_name, "GRPC", time.perf_counter() - started)
        if not status.ok:
            abort(context, status)
        return reply

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        version, label = spec_choice(spec)
        served = self._core.servable(spec.name, version, label)
        model.check_signature(spec.signature_name)
        model.check_inputs(list(request.inputs))
        for alias in request.output_filter:
            if alias != model.OUTPUT:
                raise SimError(
                    INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set {{{model.OUTPUT}}}.",
                )
        values, shape = model.tensor_values(request.inputs[model.INPUT])
        reply = predict_pb2.PredictResponse()
        reply.outputs[model.OUTPUT].CopyFrom(model.output_tensor([model.apply(served.spec, v) for v in values], shape))
        reply.model_spec.name = served.model
        reply.model_spec.version.value = served.version
        reply.model_spec.signature_name = model.DEFAULT_SIGNATURE
        return reply

    def GetModelMetadata(  # noqa: N802
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        self._faults.checkpoint()
        try:
            if not request.HasField("model_spec"):
                raise SimError(INVALID_ARGUMENT, "Missing ModelSpec")
            fields = list(request.metadata_field)
            if not fields:
                raise SimError(INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
            for name in fields:
                if name != "signature_def":
                    raise SimError(INVALID_ARGUMENT, f"Metadata field {name} is not supported")
            version, label = spec_choice(request.model_spec)
            served = self._core.servable(request.model_spec.name, version, label)
        except SimError as err:
            abort(context, err.status)
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.name = served.model
        reply.model_spec.version.value = served.version
        reply.metadata["signature_def"].Pack(model.signature_def_map())
        return reply
