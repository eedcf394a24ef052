"""``versions/<model>/<version>``: the registry's record of one version (create-only: a
version number names one set of files for ever, so a rollback brings back what it was)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from tfleet.schema.base import OperatorDocument
from tfleet.schema.fields import NonNegativeInt, PathText, ShortText


class VersionRecord(OperatorDocument):
    """``<prefix>/versions/<model>/<version>``: metadata of one registered version."""

    model: ShortText
    version: NonNegativeInt
    path: PathText
    source_uri: str = ""
    source_commit: str = ""
    checksum: str  # "sha256:<hex>" over the version directory's files (names and contents)
    size_bytes: NonNegativeInt
    created_at: dt.datetime  # modification time of the version directory
    registered_at: dt.datetime
    registered_by: str = ""
    description: str = ""
    tags: list[str] = Field(default_factory=list)
