"""Error statuses as TF Serving reports them: a tensorflow.error.Code number plus a message.

The simulator keeps the code numbers of the real server end to end, so the same number ends
up in a failed gRPC call, in a ModelVersionStatus.status and (as its name) in REST JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

# tensorflow.error.Code, by number (tensorflow/core/protobuf/error_codes.proto).
CODE_NAMES: dict[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT = 0, 1, 2, 3
NOT_FOUND, FAILED_PRECONDITION, INTERNAL, UNAVAILABLE = 5, 9, 13, 14

# How the real REST handler maps a code to an HTTP status (http_rest_api_handler).
_HTTP: dict[int, int] = {
    0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip

# The real server truncates gRPC error messages at this length.
MAX_GRPC_MESSAGE = 1024


@dataclass(frozen=True)
class Status:
    code: int = OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK

    @property
    def code_name(self) -> str:
        return CODE_NAMES.get(self.code, str(self.code))

    @property
    def http_status(self) -> int:
        return _HTTP.get(self.code, 500)

    def __str__(self) -> str:  # like absl::Status::ToString()
        return "OK" if self.ok else f"{self.code_name}: {self.message}"

    def grpc_message(self) -> str:
        if len(self.message) > MAX_GRPC_MESSAGE:
            return self.message[:MAX_GRPC_MESSAGE] + "...TRUNCATED"
        return self.message


OK_STATUS = Status()


class SimError(Exception):
    """Raised inside the simulator to end a request with a TF Serving status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.status = Status(code, message)
