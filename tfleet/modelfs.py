"""File-system adapter: what a model's base_path holds, checked before TF Serving is told.

TF Serving hangs a reload forever when a new model's base_path does not exist or has no
numeric version directory, and every later reload queues behind it (tensorflow/serving
issues 1447 and 1565). The agent therefore looks at the disk itself first and leaves such a
model out, with an error an operator can act on.

Only local paths (plain or ``file://``) can be checked; other URI schemes (``s3://``,
``gs://``, ``hdfs://``) are passed through unchecked and reported as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

# Files whose presence makes a directory a loadable SavedModel version.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass(frozen=True)
class DiskFacts:
    """What base_path holds: its loadable versions, or why it cannot be served."""

    versions: tuple[int, ...] = ()
    error: str | None = None
    # True for a URI scheme the agent cannot look into; versions are then unknown.
    unchecked: bool = False


def local_path(base_path: str) -> str | None:
    """The local directory of base_path, or None for a remote URI scheme."""
    parsed = urlparse(base_path)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme == "file" else base_path
    if len(parsed.scheme) == 1:  # a Windows drive letter, not a scheme
        return base_path
    return None


def inspect(base_path: str) -> DiskFacts:
    """List the numeric version directories of base_path that hold a saved model."""
    path = local_path(base_path)
    if path is None:
        return DiskFacts(unchecked=True)
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return DiskFacts(error=f"base_path {base_path} does not exist")
    except NotADirectoryError:
        return DiskFacts(error=f"base_path {base_path} is not a directory")
    except PermissionError:
        return DiskFacts(error=f"base_path {base_path} cannot be read by the agent (permission denied)")
    except OSError as exc:
        return DiskFacts(error=f"base_path {base_path} cannot be read: {exc.strerror}")
    versions = []
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and _holds_saved_model(entry.path):
            versions.append(int(entry.name))
    if not versions:
        return DiskFacts(
            error=f"base_path {base_path} has no version directory (expected {base_path.rstrip('/')}/<N>/saved_model.pb)"
        )
    return DiskFacts(versions=tuple(sorted(versions)))


def _holds_saved_model(version_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(version_dir, name)) for name in SAVED_MODEL_FILES)
