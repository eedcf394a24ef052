"""Field-level difference of two JSON documents: what ``tfleet history``, ``tfleet diff`` and the
dashboard show of an intent change.

Generic on purpose (it knows nothing of intents): the registry, the CLI views and the dashboard
all show the same changes for the same two documents because they all call this one function.
It compares JSON semantics, not Python equality (``1``, ``1.0`` and ``true`` differ), so what
an operator reads matches what etcd holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldChange:
    """One changed leaf of an intent: ``path`` like ``model_version_policy.specific.versions``.

    ``old``/``new`` are None where the field (or the whole intent) is absent.
    """

    path: str
    old: Any
    new: Any


def diff_values(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[FieldChange]:
    """The leaves that differ between two intent documents, sorted by path.

    Objects are compared key by key, recursively; anything else (numbers, strings, lists)
    is compared as a whole, so a changed version list is one change, not one per element.
    A missing document or field counts as null, so a create lists every field with
    ``old=None`` and a delete every field with ``new=None``.
    """
    changes: list[FieldChange] = []
    _diff_into(changes, "", dict(old or {}), dict(new or {}))
    return sorted(changes, key=lambda change: change.path)


def _diff_into(changes: list[FieldChange], prefix: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        path = _join(prefix, key)
        if isinstance(a, dict) and isinstance(b, dict):
            _diff_into(changes, path, a, b)
        elif a != b or type(a) is not type(b):  # 1 == 1.0 == True in Python, not in JSON
            changes.append(FieldChange(path, a, b))


def _path_segment(key: str) -> str:
    # Map keys such as host selector labels may hold dots; quote them so a path stays readable
    # and unambiguous ("host_selector[\"topology.zone\"]").
    if key and "." not in key and "[" not in key:
        return key
    return f"[{json.dumps(key)}]"


def _join(prefix: str, key: str) -> str:
    segment = _path_segment(key)
    if not prefix:
        return segment
    return prefix + segment if segment.startswith("[") else f"{prefix}.{segment}"
