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
  writers can never record different changes under the same number; it continues from the
  newest key (one key read, etcd range sorted descending), never from a read of the whole
  history, and the same transaction prunes the entries that fall out of the retention
  window (one range delete), so a write costs the same with 5 entries or 5,000;
* etcdctl writes have no history entry of their own: the leading controller's recorder
  (controller/history.py) replays the watch of ``models/`` and appends one, fenced by its
  leadership.

An entry written in the same transaction as its change stores ``"revision": null`` because
the revision a transaction will get is unknowable before it commits; etcd gives the entry
key the very same ``mod_revision`` as the intent write, and readers (history()) fill the
field in from it. Entries appended later (by the recorder) store the revision explicitly.
History keys must therefore never be rewritten, only appended or pruned.

Every read of the history is bounded: history() pages through it newest first with a limit,
and entry() reads one key.

Registered versions (``versions/<m>/<v>``) are create-only: a version number names one set
of files for ever, and re-registering different files under the same number is refused,
because rolling back to "version 3" must bring back what version 3 was.

Every method raises StoreError (from the store) when etcd cannot be reached; the callers
(CLI, controller) decide whether to retry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tfleet import logs, schema
from tfleet.jsondiff import FieldChange, diff_values  # Registry.diff returns FieldChange
from tfleet.keyspace import InvalidName, Keyspace, Section
from tfleet.ports import KeyReader, NumberedEntry, Store
from tfleet.modelfs import SAVED_MODEL_FILES, ChecksumError, checksum_version_dir, local_path
from tfleet.schema import HistoryCursor, HistoryEntry, ModelIntent, SchemaError, VersionRecord, encode, parse, utc_now
from tfleet.store import Compare, Delete, KeyValue, Put

# How many times a write is retried when only the history sequence number it wanted was
# taken (by the controller recording an etcdctl change): the intent itself did not change,
# so retrying loses nothing. A real conflict on the intent is never retried.
_SEQUENCE_ATTEMPTS = 5
# Retention of the history when no controller has published one (docs/keyspace.md).
DEFAULT_HISTORY_KEEP = 100
# History entries read per etcd range request: a read never grows with the history.
HISTORY_PAGE = 100
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


# -- pure helpers --------------------------------------------------------------------------


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


normal_form = _normal_form  # what the history recorder (controller/history.py) stores of a value


def _intent_document(intent: ModelIntent) -> dict[str, Any]:
    return intent.model_dump(mode="json")


# -- the registry -----------------------------------------------------------------------------


class Registry:
    """Reads and writes intents, history and versions of one installation (one keyspace)."""

    def __init__(self, store: Store, keyspace: Keyspace, clock: Callable[[], dt.datetime] = utc_now, *, log: Any = None, recorder_wait: float = 2.0) -> None:
        """recorder_wait: how long a write waits for the controller to record an etcdctl
        change of the same model first (0: never waits)."""
        self._recorder_wait = recorder_wait
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
        if to_sequence is None:
            entries = self.history(model, limit=2)
            if len(entries) < 2:
                raise RegistryError(f"model {model} has {len(entries)} history entr{'y' if len(entries) == 1 else 'ies'}: nothing earlier to roll back to")
            target = entries[-2]
        else:
            target = self.entry(model, to_sequence)
        if target.new is None:
            what = {"delete": "records a delete", "gap": "is a gap after which the model had no intent"}.get(target.action, "holds no intent")
            raise RegistryError(f"history entry {target.sequence} of model {model} {what}; pick an entry that holds an intent")
        try:  # as strict as an intent read from etcd
            intent = schema.validate(ModelIntent, target.new, "new")
        except SchemaError as exc:
            raise RegistryError(f"history entry {target.sequence} of model {model} does not hold a valid intent ({exc}); pick another entry") from None
        return self._write(model, _intent_document(intent), intent, author=author, expected=None, source="cli", action="rollback")

    # -- history ----------------------------------------------------------------------------

    def history(self, model: str, *, limit: int | None = None, before: int | None = None) -> list[HistoryEntry]:
        """The model's recorded changes, oldest first (also after a delete).

        limit: only the newest ``limit`` entries; before: only entries with a smaller sequence
        number (to page further back). Read newest first, HISTORY_PAGE keys per request, so
        the caller decides how much of a long history it wants.
        """
        if limit is not None and limit < 1:
            raise RegistryError(f"limit must be at least 1, not {limit}")
        found = [numbered.entry for numbered in self.newest(model, limit=limit, before=before)]
        found.reverse()
        return found

    def newest(self, model: str, *, limit: int | None = None, before: int | None = None) -> Iterable[NumberedEntry]:
        """(sequence, entry) newest first, read page by page only as far as the caller
        iterates; ``revision`` is filled in for entries written with their change."""
        page = min(limit, HISTORY_PAGE) if limit is not None else HISTORY_PAGE
        for count, (sequence, kv) in enumerate(self._scan(model, descending=True, before=before, page=page), start=1):
            yield NumberedEntry(sequence, self._entry_of(kv))
            if limit is not None and count >= limit:
                return  # before the scan asks etcd for another page

    def entry(self, model: str, sequence: int) -> HistoryEntry:
        """History entry ``sequence`` (one key read); a RegistryError that says which entries
        exist when it does not, and that it was pruned when it is older than the oldest kept."""
        try:
            key = self._keys.history(model, sequence)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None
        kv = self._store.get(key)
        if kv is not None:
            return self._entry_of(kv)
        bounds = self.history_bounds(model)
        if bounds is None:
            raise RegistryError(f"model {model} has no history entry {sequence} (it has no history entries)")
        oldest, newest = bounds
        if sequence < oldest:
            raise RegistryError(
                f"entry {sequence} was pruned: model {model} keeps entries {oldest}..{newest} (retention {self.retention()}); pick one of those"
            )
        raise RegistryError(f"model {model} has no history entry {sequence} (entries: {oldest}..{newest})")

    def history_bounds(self, model: str) -> tuple[int, int] | None:
        """(oldest, newest) sequence numbers kept for the model, or None: two one-key reads."""
        newest = next(self._scan(model, descending=True, page=1), None)
        oldest = next(self._scan(model, descending=False, page=1), None)
        if newest is None or oldest is None:
            return None
        return oldest[0], newest[0]

    def last_valid_intent(self, model: str, *, max_entries: int = 50, page: int = 5) -> ModelIntent | None:
        """The newest valid intent recorded in the model's history, reading ``page`` entries
        at a time and at most ``max_entries`` (what the controller keeps serving while the
        intent in etcd is invalid)."""
        seen = 0
        before: int | None = None
        while seen < max_entries:
            entries = self.history(model, limit=min(page, max_entries - seen), before=before)
            for entry in reversed(entries):
                if entry.new is not None:
                    try:
                        return schema.validate(ModelIntent, entry.new, "new")
                    except SchemaError:
                        continue
            if len(entries) < min(page, max_entries - seen):
                return None
            seen += len(entries)
            before = entries[0].sequence
        return None

    def models_with_history(self) -> Iterator[str]:
        """Every model that has history keys, in key order: one one-key read per model (a
        skip scan), never a read of the entries themselves. For rare, fleet-wide questions
        (the history recorder after a gap: which models may have been deleted in it)."""
        prefix = self._keys.history_prefix()
        start, end = prefix, prefix[:-1] + "0"  # "0" follows "/": the end of the prefix
        while True:
            found = _range(self._store, start, end, limit=1, descending=False)
            if not found:
                return
            name = self._keys.first_segment(found[0].key, Section.HISTORY)
            try:
                self._keys.history_prefix(name)
            except InvalidName:
                self._log.warning("history_key_ignored", key=found[0].key, error="not under history/<model>/")
            else:
                yield name
            start = f"{prefix}{name}0"  # past every key of history/<name>/

    def diff(self, model: str, seq_a: int, seq_b: int) -> list[FieldChange]:
        """What changed from the intent recorded at seq_a to the one recorded at seq_b."""
        a = self.entry(model, seq_a)
        b = self.entry(model, seq_b)
        return diff_values(a.new, b.new)

    def retention(self) -> int:
        """How many entries per model the history keeps: what the leading controller's
        recorder published in its cursor (--history-keep), else DEFAULT_HISTORY_KEEP."""
        kv = self._store.get(self._keys.history_cursor())
        if kv is not None:
            try:
                cursor = parse(HistoryCursor, kv.value, kv.key)
            except SchemaError as exc:
                self._log.warning("history_cursor_unreadable", key=kv.key, error=str(exc))
            else:
                if cursor.keep is not None:
                    return cursor.keep
        return DEFAULT_HISTORY_KEEP

    def prune_op(self, model: str, newest: int, keep: int) -> Delete | None:
        """The range delete that keeps entries newest-keep+1..newest (None: nothing to drop)."""
        floor = newest - keep + 1
        if floor <= 1:
            return None
        start, end = self._keys.history_range(model, None, floor)
        return Delete(start, end=end)

    def prune_history(self, model: str, *, keep: int) -> int:
        """Delete all but the newest ``keep`` history entries (keep >= 1) in one range delete;
        returns how many were deleted. The newest entry is always kept, because the next
        sequence number is counted on from it."""
        if keep < 1:
            raise RegistryError(f"keep must be at least 1 (the newest entry numbers the next change), not {keep}")
        bounds = self.history_bounds(model)
        if bounds is None:
            return 0
        oldest, newest = bounds
        op = self.prune_op(model, newest, keep)
        if op is None:
            return 0
        doomed = max(0, newest - keep + 1 - oldest)
        self._store.txn([], [op])
        if doomed:
            self._log.info("history_pruned", model=model, deleted=doomed, kept=keep)
        return doomed

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

    def _history_range(self, model: str, first: int | None, before: int | None) -> tuple[str, str]:
        try:
            return self._keys.history_range(model, first, before)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _entry_of(self, kv: KeyValue) -> HistoryEntry:
        try:
            entry = parse(HistoryEntry, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(f"{exc} (history keys are written by tfleet only; restore or delete this one)") from None
        if entry.revision is None:
            # Written in the same transaction as the change: same mod_revision.
            entry = entry.model_copy(update={"revision": kv.mod_revision})
        return entry

    def _newest_sequence(self, model: str) -> int:
        """The highest sequence key (from the key name, so that an unreadable entry value
        cannot stop new changes from being recorded); 0 without entries. One key read."""
        return self._newest_with_revision(model)[0]

    def _newest_with_revision(self, model: str) -> tuple[int, int | None]:
        """(highest sequence, the revision its entry records or None if unreadable); (0, None)."""
        newest = next(self._scan(model, descending=True, page=1), None)
        if newest is None:
            return 0, None
        try:
            revision = self._entry_of(newest[1]).revision
        except RegistryError:
            revision = None
        return newest[0], revision

    def _scan(self, model: str, *, descending: bool, before: int | None = None, page: int = HISTORY_PAGE) -> Iterator[tuple[int, KeyValue]]:
        """(sequence, key) of the model's history keys, newest (or oldest) first, ``page`` keys
        per etcd request, fetched only as far as the caller iterates. A key in the range that
        is not a 12-digit sequence (written by hand) is skipped with a warning."""
        start, end = self._history_range(model, None, before)
        while True:
            kvs = _range(self._store, start, end, limit=page, descending=descending)
            for kv in kvs:
                try:
                    yield self._keys.history_sequence(kv.key, model), kv
                except InvalidName as exc:
                    self._log.warning("history_key_ignored", key=kv.key, error=str(exc))
            if len(kvs) < page:
                return
            page = HISTORY_PAGE
            if descending:
                end = kvs[-1].key
            else:
                start = kvs[-1].key + "\0"

    def await_recorded(self, model: str, revision: int) -> None:
        """Wait (at most recorder_wait seconds) until the leader's history recorder has
        recorded the model's changes up to ``revision``; at once when no controller leads."""
        if revision > 0 and self._recorder_wait > 0:
            self._await_recorder(model, revision)

    def _await_recorder(self, model: str, revision: int) -> None:
        """Give the controller's recorder a moment to record an etcdctl change of the model
        (at ``revision``) before this write numbers its own entry, so that the history's
        order stays the order of changes. Returns at once when no controller leads (the next
        leader records it later, after this entry), and after recorder_wait seconds anyway."""
        deadline = time.monotonic() + self._recorder_wait
        while time.monotonic() < deadline:
            kv = self._store.get(self._keys.history_cursor())
            try:
                reached = parse(HistoryCursor, kv.value, kv.key).revision if kv is not None else 0
            except SchemaError:
                return
            if reached >= revision or self._store.get(self._keys.leader()) is None:
                return
            time.sleep(0.05)
        self._log.info("history_order", model=model, revision=revision, note="the controller did not record an etcdctl change in time; this entry comes first")

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
        keep: int | None = None
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
            newest, newest_revision = self._newest_with_revision(model)
            if current is not None and newest_revision is not None and newest_revision < current_revision and self._recorder_wait > 0:
                self._await_recorder(model, current_revision)  # an etcdctl change is not recorded yet
                newest, newest_revision = self._newest_with_revision(model)
            sequence = newest + 1
            entry = HistoryEntry(
                sequence=sequence,
                model=model,
                action=kind,
                revision=None,
                at=self._clock(),
                author=author,
                source=source,
                previous=previous,
                new=document,
            )
            entry_key = self._keys.history(model, sequence)
            change: Put | Delete = Delete(key) if intent is None else Put(key, encode(intent))
            if keep is None:
                keep = self.retention()  # once per write: what the leading controller publishes
            prune = self.prune_op(model, sequence, keep)
            result = self._store.txn(
                [Compare(key, "mod", "==", wanted), Compare(entry_key, "version", "==", 0)],
                [change, Put(entry_key, encode(entry)), *([prune] if prune is not None else [])],
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
            model=model,
            current_revision=now_revision,
            expected_revision=wanted,
        )

    @staticmethod
    def _same_intent(current: KeyValue, intent: ModelIntent) -> bool:
        try:
            return parse(ModelIntent, current.value, current.key) == intent
        except SchemaError:
            return False  # an invalid stored intent always differs from a valid one

    def _conflict(self, model: str, key: str, current: KeyValue | None, expected: int) -> ConflictError:
        """Say who changed the model: the newest history entry if it records the current
        revision, else "outside tfleet" (etcdctl, not yet recorded by the controller)."""
        revision = current.mod_revision if current is not None else 0
        try:
            last = next((numbered.entry for numbered in self.newest(model, limit=1)), None)
        except RegistryError:
            last = None
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
            model=model,
            current_revision=revision,
            expected_revision=expected,
        )


def _who(entry: HistoryEntry) -> str:
    if entry.author:
        return f"{entry.author} via {entry.source}"
    return "etcdctl" if entry.source == "etcd" else f"an unnamed {entry.source} user"


def _range(store: KeyReader, start: str, end: str, *, limit: int, descending: bool) -> list[KeyValue]:
    """At most ``limit`` keys of [start, end), in key order or reversed: ONE etcd range request
    (the store's ``list_range``). The one place the registry reads a bounded range."""
    return list(store.list_range(start, end, limit=limit, descending=descending).items)
