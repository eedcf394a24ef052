"""How values are written in the commands' output: versions, labels, selectors, JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tfleet.schema import Assignment, ModelIntent


def versions_text(intent: ModelIntent | Assignment | None) -> str:
    if intent is None:
        return "-"
    policy = intent.model_version_policy
    if policy.specific is not None:
        return ",".join(str(v) for v in sorted(set(policy.specific.versions)))
    if policy.latest is not None:
        return f"latest {policy.latest.num_versions}"
    return "all"


def versions_phrase(intent: ModelIntent) -> str:
    """ "version 3", "versions 3, 4", "the latest version", "all versions"."""
    policy = intent.model_version_policy
    if policy.specific is not None:
        versions = sorted(set(policy.specific.versions))
        return f"version{'s' if len(versions) > 1 else ''} {numbers(versions)}"
    if policy.latest is not None:
        n = policy.latest.num_versions
        return "the latest version" if n == 1 else f"the latest {n} versions"
    return "all versions"


def labels_text(labels: Mapping[str, int] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "-"


def pairs_text(pairs: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((pairs or {}).items())) or "-"


def numbers(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def json_text(value: Any) -> str:
    """A JSON value on one line, as diffs show it."""
    return json.dumps(value, separators=(", ", ": "))
