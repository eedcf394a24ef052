"""Registering versions: ``versions/<m>/<v>``, create-only.

A version number names one set of files for ever: re-registering different files under the
same number is refused, because rolling back to "version 3" must bring back what version 3
was. The record holds the checksum of the version directory (tfleet/modelfs.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tfleet.keyspace import InvalidName
from tfleet.modelfs import SAVED_MODEL_FILES, ChecksumError, checksum_version_dir, local_path
from tfleet.registry.base import RegistryBase
from tfleet.registry.errors import ConflictError, RegistryError
from tfleet.schema import SchemaError, VersionRecord, encode, parse
from tfleet.store import Compare, KeyValue, Put


class VersionRegistration(RegistryBase):
    """The version part of the Registry: register a version directory, list the registered ones."""

    def register_version(
        self,
        model: str,
        version: int,
        *,
        base_path: str | None = None,
        source_uri: str = "",
        source_commit: str = "",
        description: str = "",
        tags: Iterable[str] = (),
        registered_by: str = "",
    ) -> VersionRecord:
        """Record version ``version`` of ``model``: where it is, its checksum, size and dates.

        Create-only: registering the same files again returns the existing record unchanged;
        registering different files under a registered number raises ConflictError.
        """
        key = self._version_key(model, version)
        if base_path is None:
            intent, _ = self.get_intent(model)
            if intent is None:
                raise RegistryError(f"model {model} has no intent, so its base_path is unknown: give the base_path")
            base_path = intent.base_path
        local = local_path(base_path)
        if local is None:
            raise RegistryError(f"base_path {base_path} is not a local path: only local directories can be checksummed and registered")
        version_dir = Path(local) / str(version)
        if not version_dir.is_dir():
            raise RegistryError(f"version {version} of model {model}: directory {version_dir} does not exist (expected {version_dir}/saved_model.pb)")
        if not any((version_dir / name).is_file() for name in SAVED_MODEL_FILES):
            raise RegistryError(f"version {version} of model {model}: {version_dir} holds no saved_model.pb, so TF Serving could not load it")
        try:
            checksum, size, created = checksum_version_dir(version_dir)
        except ChecksumError as exc:
            raise RegistryError(str(exc)) from None
        record = VersionRecord(
            model=model,
            version=version,
            path=f"{base_path.rstrip('/')}/{version}",
            source_uri=source_uri,
            source_commit=source_commit,
            checksum=checksum,
            size_bytes=size,
            created_at=created,
            registered_at=self._clock(),
            registered_by=registered_by,
            description=description,
            tags=list(tags),
        )
        result = self._store.txn([Compare(key, "version", "==", 0)], [Put(key, encode(record))])
        if result.succeeded:
            self._log.info("version_registered", model=model, version=version, checksum=checksum, size_bytes=size)
            return record
        kv = self._store.get(key)
        if kv is None:  # deleted again in between: extremely unlikely, and safe to report
            raise ConflictError(f"version {version} of model {model} was registered and removed while registering; try again", model=model)
        existing = self._parse_version(kv)
        if existing.checksum == checksum:
            return existing
        raise ConflictError(
            f"version {version} of {model} is already registered with checksum {existing.checksum}, "
            f"the directory now has {checksum}: register a new version number",
            model=model,
            current_revision=kv.mod_revision,
        )

    def versions(self, model: str) -> list[VersionRecord]:
        """The registered versions of a model, by version number."""
        try:
            prefix = self._keys.versions_prefix(model)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        records = []
        for kv in self._store.list_prefix(prefix).items:
            if not self._keys.classify(kv.key).ok:
                self._log.warning("version_key_ignored", key=kv.key, error="not a version number")
                continue
            records.append(self._parse_version(kv))
        return sorted(records, key=lambda record: record.version)

    def _version_key(self, model: str, version: int) -> str:
        try:
            return self._keys.version(model, version)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _parse_version(self, kv: KeyValue) -> VersionRecord:
        try:
            return parse(VersionRecord, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(str(exc)) from None
