"""The field types every tfleet document is built from: bounded numbers and checked text.

Why a module of its own: strictness lives here once. Every integer in etcd is an int64 (TF
Serving's versions are int64; Go and protobuf readers of the keyspace cannot hold more), and
paths, platforms and addresses end up in TF Serving's config, gRPC calls, file names and
rendered load-balancer configurations, so a document model declared with these names is
bounded and free of control characters without saying so field by field.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_label(label: str) -> str:
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"version label {label!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return label


LabelName = Annotated[str, AfterValidator(_check_label)]

# -- bounded scalar types (strictness: see ``parse``) -------------------------------------------
# Every integer in etcd is an int64 (TF Serving's versions are int64, Go and protobuf readers
# of the keyspace cannot hold more); these names shadow pydantic's unbounded ones on purpose,
# so every field declared with them is bounded.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
UInt32Positive = Annotated[int, Field(ge=1, le=2**32 - 1)]  # TF Serving's Latest.num_versions is a uint32
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]  # gRPC status codes
MAX_SECONDS = 86_400.0  # a day: no backoff or timeout in a document is longer
PATH_MAX_LENGTH = 4096
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(text: str) -> str:
    found = _CONTROL_RE.search(text)
    if found:
        raise ValueError(f"must not contain control characters (found {found.group()!r} at position {found.start()})")
    return text


# Paths, platforms and addresses end up in TF Serving's config, gRPC calls, file names and
# rendered load-balancer configurations: no control characters (NUL, newline) there.
PathText = Annotated[str, Field(min_length=1, max_length=PATH_MAX_LENGTH), AfterValidator(_no_control)]
ShortText = Annotated[str, Field(max_length=256), AfterValidator(_no_control)]
Address = Annotated[str, Field(max_length=512), AfterValidator(_no_control)]


def _check_version_key(text: str) -> str:
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 19 and int(text) <= INT64_MAX):
        raise ValueError(f"version {text[:40]!r} must be a non-negative int64 written in decimal digits")
    return text


# A model's health as tfleet/health.py decides it (its STATES; a unit test keeps them equal).
HealthState = Literal["ok", "degraded", "failing", "unavailable", "unknown", "deleting"]

# A version number used as a JSON object key ("3"): ASCII digits only (str.isdigit accepts "²").
VersionKey = Annotated[str, AfterValidator(_check_version_key)]
