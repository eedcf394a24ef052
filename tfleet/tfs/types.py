"""Plain value types exchanged with the TF Serving adapter.

The agent's planner produces these and the client turns them into protobuf messages, so
that planning code never touches generated classes. Names follow TF Serving's own
ModelConfig so that its users recognise them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal


class VersionState(enum.StrEnum):
    """ModelVersionStatus.State, by the names TF Serving reports."""

    UNKNOWN = "UNKNOWN"
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


# tensorflow.error.Code values used by the project (tensorflow/core/protobuf/error_codes.proto).
OK = 0
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
FAILED_PRECONDITION = 9
INTERNAL = 13
UNAVAILABLE = 14


@dataclass(frozen=True)
class VersionPolicy:
    """FileSystemStoragePathSourceConfig.ServableVersionPolicy."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfigSpec:
    """One entry of the ModelConfigList sent in HandleReloadConfigRequest."""

    name: str
    base_path: str
    model_platform: str = "tensorflow"
    model_version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    # Sorted (label, version) pairs, so that equal configs compare equal.
    version_labels: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class VersionStatus:
    """One ModelVersionStatus of GetModelStatusResponse."""

    version: int
    state: VersionState
    error_code: int = OK
    error_message: str = ""


class TfsError(Exception):
    """TF Serving answered with an error status, or could not be reached."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"TF Serving error {code}: {message}")
        self.code = code
        self.message = message


class TfsUnavailable(TfsError):
    """The server could not be reached (connection refused, reset, not started)."""


class TfsDeadlineExceeded(TfsError):
    """The call did not finish within its deadline (the server may still be working on it)."""
