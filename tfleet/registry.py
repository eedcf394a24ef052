"""The model registry: intents, their full history, and registered versions.

Operators change a model's intent (``models/<m>``) through this module (the CLI) or with
plain etcdctl. Either way they need to know who changed what, compare two revisions and
restore an earlier one, and two people editing at once must never silently overwrite each
other. Hence:

* every write is a compare-and-swap on the ``mod_revision`` the writer read, and a failed
  compare is reported as a ConflictError that says who changed the model and at which
  revision, so the operator can look before trying again;
* the history is a set of append-only keys ``history/<m>/<seq>``, written in the *same*
  transaction as the intent change it records (never one without the other). A history key
  is an ordinary current key, so it survives etcd compaction, unlike etcd's own revisions;
* the sequence number is taken with a create-only compare (``version == 0``), so two
  writers can never record different changes under the same number;
* etcdctl writes have no history entry of their own: the controller, which watches
  ``models/``, appends one with record_external_change, fenced by its leadership.

An entry written in the same transaction as its change stores ``"revision": null`` because
the revision a transaction will get is unknowable before it commits; etcd gives the entry
key the very same ``mod_revision`` as the intent write, and readers (history()) fill the
field in from it. Entries appended later (record_external_change) store the revision
explicitly. History keys must therefore never be rewritten, only appended or pruned.

Registered versions (``versions/<m>/<v>``) are create-only: a version number names one set
of files for ever, and re-registering different files under the same number is refused,
because rolling back to "version 3" must bring back what version 3 was.

Every method raises StoreError (from the store) when etcd cannot be reached; the callers
(CLI, controller) decide whether to retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tfleet import logs, schema
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.modelfs import SAVED_MODEL_FILES, local_path
from tfleet.schema import HistoryEntry, ModelIntent, SchemaError, VersionRecord, encode, explain, parse, utc_now
from tfleet.store import Compare, Delete, KeyValue, Put

# How many times a write is retried when only the history sequence number it wanted was
# taken (by the controller recording an etcdctl change): the intent itself did not change,
# so retrying loses nothing. A real conflict on the intent is never retried.
_SEQUENCE_ATTEMPTS = 5
# etcd refuses transactions with more operations than --max-txn-ops (128 by default).
_DELETES_PER_TXN = 100
_CHUNK_BYTES = 1 << 20
_SOURCES = ("cli", "etcd")


class RegistryError(Exception):
    """Bad input or unusable stored data: a missing version directory, an unknown model or
    history sequence, an intent in etcd that does not match its schema."""


class ConflictError(Exception):
    """A compare-and-swap failed: someone else changed the model since it was read.

    The message says who (author and source of the newest history entry, or "outside tfleet"
    when etcd holds a change without one) and the current revision, so the operator can
    look at the change and apply again on top of it.
    """

    def __init__(self, message: str, *, model: str, current_revision: int = 0, expected_revision: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.current_revision = current_revision
        self.expected_revision = expected_revision


@dataclass(frozen=True)
class FieldChange:
    """One changed leaf of an intent: ``path`` like ``model_version_policy.specific.versions``.

    ``old``/``new`` are None where the field (or the whole intent) is absent.
    """

    path: str
    old: Any
    new: Any


# -- pure helpers --------------------------------------------------------------------------


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


def checksum_version_dir(path: Path) -> tuple[str, int, dt.datetime]:
    """("sha256:<hex>", total bytes, the directory's mtime in UTC) of one version directory.

    The digest covers every regular file below ``path``: the sorted relative POSIX names and
    the contents, each framed by its length so that no two different trees hash alike (moving
    bytes from one file's end to the next file's name changes the digest). Files are read in
    1 MiB chunks: a SavedModel's variables can be many gigabytes. Symbolic links to files are
    followed (TF Serving reads through them); links to directories are not entered, which
    rules out loops. Empty directories do not count: TF Serving cannot tell them apart either.
    """
    root = Path(path)
    try:
        root_stat = root.stat()
    except FileNotFoundError:
        raise RegistryError(f"version directory {root} does not exist") from None
    except OSError as exc:
        raise RegistryError(f"version directory {root} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise RegistryError(f"{root} is not a directory")

    files: list[tuple[str, Path]] = []

    def walk_error(exc: OSError) -> None:
        raise RegistryError(f"cannot list {exc.filename} under {root}: {exc.strerror}")

    for directory, _dirs, names in os.walk(root, onerror=walk_error):
        for name in names:
            full = Path(directory) / name
            if full.is_file():  # follows symlinks; sockets, fifos and dangling links are skipped
                files.append((full.relative_to(root).as_posix(), full))
    files.sort()

    digest = hashlib.sha256()
    total = 0
    for relative, full in files:
        name = relative.encode()
        digest.update(len(name).to_bytes(8, "big"))
        digest.update(name)
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
        raise RegistryError(f"cannot read {relative} in {root}: {exc.strerror}") from None
    if read != size:
        raise RegistryError(f"{relative} in {root} changed while it was being checksummed ({size} bytes, then {read}); wait until the copy is complete")
    return size


def _object_of(raw: bytes) -> dict[str, Any] | None:
    """The stored JSON object, or None if the bytes are not one."""
    try:  # bounded and strict like every reader (a value nested 1,000 deep once failed every pass)
        return schema.decode_object(raw, "intent")
    except SchemaError:
        return None


def _normal_form(raw: bytes) -> dict[str, Any] | None:
    """What a history entry records of a stored intent.

    A valid intent is recorded in full (defaults filled in), so that a diff between a value
    typed by hand with defaults left out and one written by the CLI shows only real changes;
    an invalid one is recorded as written; a value that is not a JSON object as None.
    """
    try:
        return schema.parse(ModelIntent, raw, "intent").model_dump(mode="json")
    except SchemaError:
        return _object_of(raw)


def _intent_document(intent: ModelIntent) -> dict[str, Any]:
    return intent.model_dump(mode="json")


# -- the registry -----------------------------------------------------------------------------


class Registry:
    """Reads and writes intents, history and versions of one installation (one keyspace)."""

    def __init__(self, store: Any, keyspace: Keyspace, clock: Callable[[], dt.datetime] = utc_now, *, log: Any = None) -> None:
        self._store = store
        self._keys = keyspace
        self._clock = clock
        self._log = log or logs.get("registry")

    # -- intents ----------------------------------------------------------------------------

    def get_intent(self, model: str) -> tuple[ModelIntent | None, int]:
        """(intent, its mod_revision), or (None, 0) when the model has no intent."""
        kv = self._store.get(self._model_key(model))
        if kv is None:
            return None, 0
        return self._parse_intent(kv), kv.mod_revision

    def apply_intent(
        self,
        model: str,
        intent: ModelIntent,
        *,
        author: str | None,
        expected_revision: int | None = None,
        source: str = "cli",
    ) -> int:
        """Write the intent if models/<model> is still at expected_revision; returns the new
        mod_revision.

        expected_revision None means "what is there now": the key is read and the write is
        conditional on that read, so a change landing in between is still detected.
        0 means "create only". An intent equal to the stored one writes nothing (no history
        noise) and returns the current revision, even when expected_revision is stale:
        nothing would be lost. ``source`` is "cli" or "etcd" (the history's two sources).
        """
        if source not in _SOURCES:
            raise RegistryError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
        return self._write(model, _intent_document(intent), intent, author=author, expected=expected_revision, source=source, action=None)

    def delete_intent(self, model: str, *, author: str | None, expected_revision: int | None = None) -> None:
        """Delete models/<model> (the controller then unloads it everywhere), with a "delete"
        history entry. History and registered versions are kept: the model can be rolled back."""
        self._write(model, None, None, author=author, expected=expected_revision, source="cli", action="delete")

    def rollback(self, model: str, *, to_sequence: int | None = None, author: str | None) -> int:
        """Restore the intent recorded (its "new" value) at history entry to_sequence.

        The default is the entry before the last one, i.e. undo the last change; rolling back
        twice therefore toggles between the last two states, like ``cd -``.
        """
        entries = self.history(model)
        if to_sequence is None:
            if len(entries) < 2:
                raise RegistryError(f"model {model} has {len(entries)} history entr{'y' if len(entries) == 1 else 'ies'}: nothing earlier to roll back to")
            target = entries[-2]
        else:
            target = self._entry(model, entries, to_sequence)
        if target.new is None:
            raise RegistryError(f"history entry {target.sequence} of model {model} records a delete; pick an entry that holds an intent")
        try:
            intent = ModelIntent.model_validate(target.new)
        except ValidationError as exc:
            raise RegistryError(f"history entry {target.sequence} of model {model} does not hold a valid intent ({explain(exc)}); pick another entry") from None
        return self._write(model, _intent_document(intent), intent, author=author, expected=None, source="cli", action="rollback")

    # -- history ----------------------------------------------------------------------------

    def history(self, model: str) -> list[HistoryEntry]:
        """Every recorded change of the model's intent, oldest first (also after a delete)."""
        return [entry for _, _, entry in self._history_items(model)]

    def diff(self, model: str, seq_a: int, seq_b: int) -> list[FieldChange]:
        """What changed from the intent recorded at seq_a to the one recorded at seq_b."""
        entries = self.history(model)
        a = self._entry(model, entries, seq_a)
        b = self._entry(model, entries, seq_b)
        return diff_values(a.new, b.new)

    def record_external_change(self, model: str, value: bytes | None, mod_revision: int, fence: Sequence[Compare] = ()) -> bool:
        """Append a history entry (source "etcd", no author) for an intent change made without
        tfleet, typically with etcdctl; returns True if an entry was written.

        The controller calls this for every put/delete it sees on models/ (value None: the
        key is gone; mod_revision: the revision of the change, or of the snapshot in which
        the key was found missing). Idempotent: nothing is written when the newest entry
        already covers mod_revision, when the value equals what it recorded, or for a delete
        when it already records one. ``fence`` (the controller's leadership compares) is
        added to the same transaction, so a deposed leader writes nothing. A value that is
        not a JSON object cannot be recorded: False, with a warning. Raises RegistryError
        only when the stored history itself is unreadable (a hand-edited entry).
        """
        key = self._model_key(model)
        if value is not None and _object_of(value) is None:
            # Not representable in an entry; the controller reports the intent as invalid
            # anyway. Returning (not raising) keeps one bad key from failing a whole pass.
            self._log.warning("history_not_recorded", model=model, key=key, revision=mod_revision, error="the value is not a JSON object")
            return False
        new = None if value is None else _normal_form(value)
        for _ in range(_SEQUENCE_ATTEMPTS):
            items = self._history_items(model)
            last = items[-1][2] if items else None
            if last is not None and last.revision is not None and mod_revision <= last.revision:
                return False
            if (new is None and (last is None or last.new is None)) or (last is not None and new is not None and new == last.new):
                return False
            sequence = items[-1][0] + 1 if items else 1
            previous = last.new if last is not None else None
            action = "delete" if new is None else ("create" if previous is None else "update")
            entry = HistoryEntry(
                sequence=sequence, model=model, action=action, revision=mod_revision, at=self._clock(),
                author=None, source="etcd", previous=previous, new=new,
            )
            entry_key = self._keys.history(model, sequence)
            result = self._store.txn([*fence, Compare(entry_key, "version", "==", 0)], [Put(entry_key, encode(entry))])
            if result.succeeded:
                self._log.info("history_recorded", model=model, sequence=sequence, action=action, revision=mod_revision, source="etcd")
                return True
            if self._store.get(entry_key) is None:
                return False  # the sequence was free, so the fence failed: not (or no longer) the leader
        raise ConflictError(
            f"could not record the etcdctl change of model {model}: the history kept moving ({_SEQUENCE_ATTEMPTS} attempts); the next pass will try again",
            model=model,
        )

    def prune_history(self, model: str, *, keep: int) -> int:
        """Delete all but the newest ``keep`` history entries (keep >= 1); returns how many
        were deleted. The newest entry is always kept, because the next sequence number is
        counted on from it."""
        if keep < 1:
            raise RegistryError(f"keep must be at least 1 (the newest entry numbers the next change), not {keep}")
        items = self._history_items(model)
        doomed = [kv.key for _, kv, _ in items[:-keep]] if len(items) > keep else []
        for start in range(0, len(doomed), _DELETES_PER_TXN):
            self._store.txn([], [Delete(key) for key in doomed[start : start + _DELETES_PER_TXN]])
        if doomed:
            self._log.info("history_pruned", model=model, deleted=len(doomed), kept=keep)
        return len(doomed)

    # -- versions ---------------------------------------------------------------------------

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
        checksum, size, created = checksum_version_dir(version_dir)
        record = VersionRecord(
            model=model, version=version, path=f"{base_path.rstrip('/')}/{version}",
            source_uri=source_uri, source_commit=source_commit, checksum=checksum, size_bytes=size,
            created_at=created, registered_at=self._clock(), registered_by=registered_by,
            description=description, tags=list(tags),
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
            model=model, current_revision=kv.mod_revision,
        )

    def versions(self, model: str) -> list[VersionRecord]:
        """The registered versions of a model, by version number."""
        try:
            prefix = self._keys.versions_prefix(model)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        records = []
        for kv in self._store.list_prefix(prefix).items:
            segment = kv.key[len(prefix) :]
            if not segment.isdigit():
                self._log.warning("version_key_ignored", key=kv.key, error="not a version number")
                continue
            records.append(self._parse_version(kv))
        return sorted(records, key=lambda record: record.version)

    def models(self) -> dict[str, tuple[ModelIntent | None, str | None]]:
        """Every model with an intent: name -> (intent, None), or (None, why it is invalid)."""
        prefix = self._keys.models_prefix()
        found: dict[str, tuple[ModelIntent | None, str | None]] = {}
        for kv in self._store.list_prefix(prefix).items:
            try:
                name = self._keys.name_after(kv.key, prefix)
            except InvalidName as exc:
                self._log.warning("model_key_ignored", key=kv.key, error=str(exc))
                continue
            try:
                found[name] = (parse(ModelIntent, kv.value, kv.key), None)
            except SchemaError as exc:
                found[name] = (None, str(exc))
        return found

    # -- internals --------------------------------------------------------------------------

    def _model_key(self, model: str) -> str:
        try:
            return self._keys.model(model)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _version_key(self, model: str, version: int) -> str:
        try:
            return self._keys.version(model, version)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _parse_intent(self, kv: KeyValue) -> ModelIntent:
        try:
            return parse(ModelIntent, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(str(exc)) from None

    def _parse_version(self, kv: KeyValue) -> VersionRecord:
        try:
            return parse(VersionRecord, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(str(exc)) from None

    def _history_items(self, model: str) -> list[tuple[int, KeyValue, HistoryEntry]]:
        """(sequence of the key, key, entry) by sequence, with each entry's revision filled in."""
        try:
            prefix = self._keys.history_prefix(model)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        items = []
        for kv in self._store.list_prefix(prefix).items:
            segment = kv.key[len(prefix) :]
            if not segment.isdigit():
                self._log.warning("history_key_ignored", key=kv.key, error="not a sequence number")
                continue
            try:
                entry = parse(HistoryEntry, kv.value, kv.key)
            except SchemaError as exc:
                raise RegistryError(f"{exc} (history keys are written by tfleet only; restore or delete this one)") from None
            if entry.revision is None:
                # Written in the same transaction as the change: same mod_revision.
                entry = entry.model_copy(update={"revision": kv.mod_revision})
            items.append((int(segment), kv, entry))
        items.sort(key=lambda item: item[0])
        return items

    def _next_sequence(self, model: str) -> int:
        """One more than the highest sequence key (from key names, so that an unreadable entry
        value cannot stop new changes from being recorded)."""
        prefix = self._keys.history_prefix(model)
        numbers = [int(kv.key[len(prefix) :]) for kv in self._store.list_prefix(prefix).items if kv.key[len(prefix) :].isdigit()]
        return max(numbers, default=0) + 1

    def _entry(self, model: str, entries: list[HistoryEntry], sequence: int) -> HistoryEntry:
        for entry in entries:
            if entry.sequence == sequence:
                return entry
        known = f"{entries[0].sequence}..{entries[-1].sequence}" if entries else "none"
        raise RegistryError(f"model {model} has no history entry {sequence} (entries: {known})")

    def _write(
        self,
        model: str,
        document: dict[str, Any] | None,
        intent: ModelIntent | None,
        *,
        author: str | None,
        expected: int | None,
        source: str,
        action: str | None,
    ) -> int:
        """The one write path of intents: CAS on the intent, create-only on the history key.

        document None deletes. action None means create or update, decided by what is stored.
        """
        key = self._model_key(model)
        for _ in range(_SEQUENCE_ATTEMPTS):
            current = self._store.get(key)
            current_revision = current.mod_revision if current is not None else 0
            if intent is not None and current is not None and self._same_intent(current, intent):
                return current_revision
            if intent is None and current is None:
                raise RegistryError(f"model {model} has no intent to delete ({key} does not exist)")
            wanted = current_revision if expected is None else expected
            if current_revision != wanted:
                raise self._conflict(model, key, current, wanted)
            previous = _normal_form(current.value) if current is not None else None
            kind = action or ("update" if current is not None else "create")
            sequence = self._next_sequence(model)
            entry = HistoryEntry(
                sequence=sequence, model=model, action=kind, revision=None, at=self._clock(),
                author=author, source=source, previous=previous, new=document,
            )
            entry_key = self._keys.history(model, sequence)
            change: Put | Delete = Delete(key) if intent is None else Put(key, encode(intent))
            result = self._store.txn(
                [Compare(key, "mod", "==", wanted), Compare(entry_key, "version", "==", 0)],
                [change, Put(entry_key, encode(entry))],
            )
            if result.succeeded:
                self._log.info("intent_changed", model=model, action=kind, revision=result.revision, sequence=sequence, author=author, source=source)
                return result.revision
            now = self._store.get(key)
            now_revision = now.mod_revision if now is not None else 0
            if now_revision != wanted:
                raise self._conflict(model, key, now, wanted)
            # Only the sequence number was taken (the controller recorded an etcdctl change
            # of another revision in between); the intent is as read, so try again.
        raise ConflictError(
            f"model {model}: the history kept moving while writing ({_SEQUENCE_ATTEMPTS} attempts); try again",
            model=model, current_revision=now_revision, expected_revision=wanted,
        )

    @staticmethod
    def _same_intent(current: KeyValue, intent: ModelIntent) -> bool:
        try:
            return ModelIntent.model_validate_json(current.value) == intent
        except ValueError:
            return False  # an invalid stored intent always differs from a valid one

    def _conflict(self, model: str, key: str, current: KeyValue | None, expected: int) -> ConflictError:
        """Say who changed the model: the newest history entry if it records the current
        revision, else "outside tfleet" (etcdctl, not yet recorded by the controller)."""
        revision = current.mod_revision if current is not None else 0
        try:
            items = self._history_items(model)
        except RegistryError:
            items = []
        last = items[-1][2] if items else None
        if current is None:
            what = "was deleted"
            if last is not None and last.action == "delete":
                what += f" by {_who(last)} (history entry {last.sequence})"
        elif last is not None and last.revision == revision:
            what = f"was changed by {_who(last)} (history entry {last.sequence}, {last.action})"
        else:
            what = "was changed outside tfleet (etcdctl?)"
        now = f"its current revision is {revision}" if current is not None else "it has no intent now"
        base = "you expected it not to exist" if expected == 0 else f"you read revision {expected}"
        return ConflictError(
            f"model {model} {what}: {base}, {now} ({key}); read it again and re-apply your change on top",
            model=model, current_revision=revision, expected_revision=expected,
        )


def _who(entry: HistoryEntry) -> str:
    if entry.author:
        return f"{entry.author} via {entry.source}"
    return "etcdctl" if entry.source == "etcd" else f"an unnamed {entry.source} user"
