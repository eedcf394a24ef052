"""What the simulator reads from disk: version directories and their `sim.json`.

Layout, as for a real server: `<base_path>/<N>/saved_model.pb`, N an integer. A version
directory may hold a `sim.json` that tells the simulator how that version behaves; every key
is optional:

    {
      "load_seconds": 0.5,        # how long one load attempt takes
      "unload_seconds": 0.5,      # how long an unload takes (reported UNLOADING meanwhile)
      "fail": true,               # every load attempt fails ...
      "fail_attempts": 2,         # ... or only the first 2 attempts fail, later ones succeed
      "fail_message": "boom",     # error message of a failed attempt
      "fail_code": 2,             # tensorflow.error.Code of a failed attempt (2 = UNKNOWN)
      "memory_mb": 120,           # reported as tensorflow_serving_model_memory_bytes
      "kind": "affine",           # the simulator's own model format (the only kind so far)
      "scale": 2.0, "bias": 1.0   # affine: y = scale * x + bias, elementwise
    }

The file is read again on every load attempt, so a test can repair a failing version while
the server retries it. An unknown key is a load error rather than being ignored: a typo in
a test fixture should fail loudly.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from tfleet.sim.status import INVALID_ARGUMENT, NOT_FOUND, UNKNOWN, SimError
from tfleet.tfs.types import VersionPolicy

SIM_FILE = "sim.json"
SAVED_MODEL = "saved_model.pb"
KINDS = ("affine",)

# tensorflow's safe_strto64 accepts surrounding blanks and a sign.
_NUMBER = re.compile(r"\s*[+-]?\d+\s*")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class VersionSpec:
    """The behaviour of one version directory, from its sim.json."""

    load_seconds: float = 0.0
    unload_seconds: float = 0.0  # how long the version stays UNLOADING (the real server unloads after the reload returns)
    fail: bool = False
    fail_attempts: int = 0
    fail_message: str = "simulated load failure"
    fail_code: int = UNKNOWN
    memory_mb: float = 0.0
    kind: str = "affine"
    scale: float = 1.0
    bias: float = 0.0

    def attempt_fails(self, attempt: int) -> bool:
        """Whether load attempt number `attempt` (0 = the first) fails."""
        return self.fail or attempt < self.fail_attempts


_KEYS = {f.name: f.type for f in fields(VersionSpec)}


def read_version(path: Path) -> VersionSpec:
    """Read one version directory as a load attempt would; SimError when it cannot load."""
    if not (path / SAVED_MODEL).is_file() and not (path / "saved_model.pbtxt").is_file():
        raise SimError(
            NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for accessing it.",
        )
    sim_file = path / SIM_FILE
    if not sim_file.exists():
        return VersionSpec()
    try:
        raw = json.loads(sim_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SimError(INVALID_ARGUMENT, f"{sim_file}: cannot read: {err}") from err
    if not isinstance(raw, dict):
        raise SimError(INVALID_ARGUMENT, f"{sim_file}: expected a JSON object")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise SimError(INVALID_ARGUMENT, f"{sim_file}: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    try:
        spec = VersionSpec(
            load_seconds=max(0.0, float(raw.get("load_seconds", 0.0))),
            unload_seconds=max(0.0, float(raw.get("unload_seconds", 0.0))),
            fail=bool(raw.get("fail", False)),
            fail_attempts=int(raw.get("fail_attempts", 0)),
            fail_message=str(raw.get("fail_message", VersionSpec.fail_message)),
            fail_code=int(raw.get("fail_code", UNKNOWN)),
            memory_mb=float(raw.get("memory_mb", 0.0)),
            kind=str(raw.get("kind", "affine")),
            scale=float(raw.get("scale", 1.0)),
            bias=float(raw.get("bias", 0.0)),
        )
    except (TypeError, ValueError) as err:
        raise SimError(INVALID_ARGUMENT, f"{sim_file}: bad value: {err}") from err
    if spec.kind not in KINDS:
        raise SimError(INVALID_ARGUMENT, f"{sim_file}: unknown kind {spec.kind!r}; known: {list(KINDS)}")
    if spec.fail_code == 0:
        spec = replace(spec, fail_code=UNKNOWN)  # a failure must not read as OK
    return spec


def parse_version(child: str) -> int | None:
    """The version number a directory name stands for, or None (not a version directory)."""
    if not _NUMBER.fullmatch(child):
        return None
    value = int(child.strip())
    return value if _INT64[0] <= value <= _INT64[1] else None


def list_children(base_path: str) -> list[str]:
    """Names under base_path; OSError when base_path is missing or not a directory.

    Like the real file-system source this lists every child, files included: a file named
    `3` is taken as version 3 (and then fails to load).
    """
    if not os.path.exists(base_path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), base_path)
    return os.listdir(base_path)


def aspired_versions(policy: VersionPolicy, children: list[str]) -> dict[int, str]:
    """The versions the version policy asks for among `children`: {version: child name}.

    latest: the highest max(num_versions, 1); all: every numeric child; specific: the listed
    ones that exist (a listed version missing on disk is simply not aspired).
    """
    by_version: dict[int, str] = {}
    for child in sorted(children):
        version = parse_version(child)
        if version is not None:
            by_version[version] = child
    if policy.kind == "all":
        return by_version
    if policy.kind == "specific":
        wanted = set(policy.versions)
        return {v: c for v, c in by_version.items() if v in wanted}
    keep = sorted(by_version, reverse=True)[: max(policy.num_versions, 1)]
    return {v: by_version[v] for v in keep}
