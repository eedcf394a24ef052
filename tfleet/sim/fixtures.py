"""Create simulated model directories on disk (tests, `tfleet dev` sample models, benchmarks).

A directory written here loads in the simulator exactly like a SavedModel loads in TF
Serving: `<base>/<name>/<version>/saved_model.pb`, plus the `sim.json` that tells the
simulator how the version behaves (see modeldir.py for every key).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tfleet.sim.modeldir import SAVED_MODEL, SIM_FILE

# Not a real SavedModel: the simulator only checks that the file exists.
_PLACEHOLDER = b"tfleet simulator placeholder, not a TensorFlow SavedModel\n"


def write_version(
    model_dir: Path,
    version: int,
    *,
    load_seconds: float = 0.0,
    fail: bool = False,
    kind: str = "affine",
    **sim: Any,
) -> Path:
    """Write one version directory; extra keyword arguments go to sim.json as they are."""
    path = Path(model_dir) / str(version)
    path.mkdir(parents=True, exist_ok=True)
    (path / SAVED_MODEL).write_bytes(_PLACEHOLDER)
    spec: dict[str, Any] = {"kind": kind, "load_seconds": load_seconds, **sim}
    if fail:
        spec["fail"] = True
        spec.setdefault("fail_message", f"simulated load failure of version {version}")
    (path / SIM_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def make_model(
    base: Path,
    name: str,
    versions: Iterable[int],
    load_seconds: float = 0.0,
    fail_versions: Iterable[int] = (),
    kind: str = "affine",
    **sim: Any,
) -> Path:
    """Write <base>/<name>/<v>/{saved_model.pb,sim.json} for every v; returns <base>/<name>.

    Versions in `fail_versions` fail every load attempt. Extra keyword arguments (scale,
    bias, memory_mb, ...) go into every version's sim.json.
    """
    model_dir = Path(base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    failing = set(fail_versions)
    for version in versions:
        write_version(model_dir, version, load_seconds=load_seconds, fail=version in failing, kind=kind, **sim)
    return model_dir
