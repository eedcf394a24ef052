"""The model list TF Serving last accepted from this agent, kept in a local file.

TF Serving has no call that lists its models, and the agent must keep a model's last valid
configuration when its assignment turns invalid. After an agent restart that memory would
be lost, and the model unloaded, unless it is written down. The file is replaced atomically
(write, fsync, rename) after every accepted reload; a missing or unreadable file means
"unknown", which only costs a reload of unchanged models (TF Serving leaves those alone).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

from tfleet.tfs.types import ModelConfigSpec, VersionPolicy

FORMAT_VERSION = 1


def _to_json(spec: ModelConfigSpec) -> dict[str, object]:
    policy = spec.model_version_policy
    return {
        "name": spec.name,
        "base_path": spec.base_path,
        "model_platform": spec.model_platform,
        "model_version_policy": {"kind": policy.kind, "num_versions": policy.num_versions, "versions": list(policy.versions)},
        "version_labels": [list(pair) for pair in spec.version_labels],
    }


def _from_json(data: Any) -> ModelConfigSpec:
    """data: one decoded JSON value of the file, of any shape (json.loads); a wrong shape
    raises KeyError, TypeError or ValueError, which load() reports."""
    policy = data["model_version_policy"]
    return ModelConfigSpec(
        name=data["name"],
        base_path=data["base_path"],
        model_platform=data["model_platform"],
        model_version_policy=VersionPolicy(policy["kind"], int(policy["num_versions"]), tuple(int(v) for v in policy["versions"])),
        version_labels=tuple((str(label), int(version)) for label, version in data["version_labels"]),
    )


class AppliedStateFile:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def load(self) -> tuple[dict[str, ModelConfigSpec], str | None]:
        """The remembered list, and a warning when the file exists but cannot be used."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            return {}, f"cannot read {self.path}: {exc.strerror}"
        try:
            document = json.loads(raw)
            if document.get("format") != FORMAT_VERSION:
                return {}, f"{self.path} has format {document.get('format')!r}, expected {FORMAT_VERSION}; ignoring it"
            specs = [_from_json(item) for item in document["models"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return {}, f"{self.path} is corrupt ({exc}); ignoring it"
        return {spec.name: spec for spec in specs}, None

    def save(self, applied: dict[str, ModelConfigSpec]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": FORMAT_VERSION, "models": [_to_json(applied[name]) for name in sorted(applied)]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
