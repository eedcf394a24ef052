"""File-system adapter: what a model's base_path holds, checked before TF Serving is told.

TF Serving hangs a reload forever when a new model's base_path does not exist or has no
numeric version directory, and every later reload queues behind it (tensorflow/serving
issues 1447 and 1565). The agent therefore looks at the disk itself first and leaves such a
model out, with an error an operator can act on.

Only local paths (plain or ``file://``) can be checked; other URI schemes (``s3://``,
``gs://``, ``hdfs://``) are passed through unchecked and reported as such.

The registry also asks this module for the checksum of a version directory
(checksum_version_dir), the fingerprint that makes a registered version number name one set
of files for ever.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# Files whose presence makes a directory a loadable SavedModel version.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# Bytes read at a time while hashing: a SavedModel's variables can be many gigabytes.
_CHUNK_BYTES = 1 << 20


class ChecksumError(Exception):
    """A version directory cannot be checksummed: missing, not a directory, unreadable, or a
    file changed while it was read. The message names the path and what to do."""


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
        return DiskFacts(error=f"base_path {base_path} has no version directory (expected {base_path.rstrip('/')}/<N>/saved_model.pb)")
    return DiskFacts(versions=tuple(sorted(versions)))


def _holds_saved_model(version_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(version_dir, name)) for name in SAVED_MODEL_FILES)


def checksum_version_dir(path: Path) -> tuple[str, int, dt.datetime]:
    """("sha256:<hex>", total bytes, the directory's mtime in UTC) of one version directory.

    The digest covers every regular file below ``path``: the sorted relative POSIX names and
    the contents, each framed by its length so that no two different trees hash alike (moving
    bytes from one file's end to the next file's name changes the digest). Files are read in
    1 MiB chunks: a SavedModel's variables can be many gigabytes. Symbolic links to files are
    followed (TF Serving reads through them); links to directories are not entered, which
    rules out loops. Empty directories do not count: TF Serving cannot tell them apart either.
    The digest is stored in etcd (``versions/<m>/<v>``): its framing is a contract.
    """
    root = Path(path)
    try:
        root_stat = root.stat()
    except FileNotFoundError:
        raise ChecksumError(f"version directory {root} does not exist") from None
    except OSError as exc:
        raise ChecksumError(f"version directory {root} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise ChecksumError(f"{root} is not a directory")

    files: list[tuple[str, Path]] = []

    def walk_error(exc: OSError) -> None:
        raise ChecksumError(f"cannot list {exc.filename} under {root}: {exc.strerror}")

    for directory, _dirs, names in os.walk(root, onerror=walk_error):
        for name in names:
            full = Path(directory) / name
            if full.is_file():  # follows symlinks; sockets, fifos and dangling links are skipped
                files.append((full.relative_to(root).as_posix(), full))
    files.sort()

    digest = hashlib.sha256()
    total = 0
    for relative, full in files:
        encoded = relative.encode()
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
        total += _hash_file(digest, full, relative, root)
    created = dt.datetime.fromtimestamp(root_stat.st_mtime, tz=dt.timezone.utc)
    return f"sha256:{digest.hexdigest()}", total, created


def _hash_file(digest: Any, full: Path, relative: str, root: Path) -> int:
    try:
        with open(full, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest.update(size.to_bytes(8, "big"))
            read = 0
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
                read += len(chunk)
    except OSError as exc:
        raise ChecksumError(f"cannot read {relative} in {root}: {exc.strerror}") from None
    if read != size:
        raise ChecksumError(f"{relative} in {root} changed while it was being checksummed ({size} bytes, then {read}); wait until the copy is complete")
    return size
