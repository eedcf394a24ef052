"""Writing intents: compare-and-swap on ``models/<m>``, with its history entry in the same
transaction (never one without the other).

* every write is a compare-and-swap on the ``mod_revision`` the writer read, and a failed
  compare is reported as a ConflictError that says who changed the model and at which
  revision, so the operator can look before trying again;
* the sequence number is taken with a create-only compare (``version == 0``), so two
  writers can never record different changes under the same number; it continues from the
  newest key (one key read), never from a read of the whole history, and the same
  transaction prunes the entries that fall out of the retention window (one range delete),
  so a write costs the same with 5 entries or 5,000;
* etcdctl writes have no history entry of their own: the leading controller's recorder
  (controller/history.py) appends one; a write here first gives it a moment to do so
  (await_recorded), so that the history's order stays the order of changes.
"""

from __future__ import annotations

import time
from typing import Any

from tfleet import schema
from tfleet.registry.errors import ConflictError, RegistryError
from tfleet.registry.history import HistoryReads, normal_form
from tfleet.schema import HistoryAction, HistoryCursor, HistoryEntry, HistorySource, ModelIntent, SchemaError, encode, parse
from tfleet.store import Compare, Delete, KeyValue, Put

# How many times a write is retried when only the history sequence number it wanted was
# taken (by the controller recording an etcdctl change): the intent itself did not change,
# so retrying loses nothing. A real conflict on the intent is never retried.
_SEQUENCE_ATTEMPTS = 5
_SOURCES: dict[str, HistorySource] = {"cli": "cli", "etcd": "etcd"}  # what apply_intent accepts as source


def _intent_document(intent: ModelIntent) -> dict[str, Any]:
    return intent.model_dump(mode="json")


class IntentWrites(HistoryReads):
    """The intent part of the Registry: apply, delete and roll back, each with its history entry."""

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
        checked = _SOURCES.get(source)
        if checked is None:
            raise RegistryError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
        return self._write(model, _intent_document(intent), intent, author=author, expected=expected_revision, source=checked, action=None)

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
        source: HistorySource,
        action: HistoryAction | None,
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
            previous = normal_form(current.value) if current is not None else None
            kind: HistoryAction = action or ("update" if current is not None else "create")
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
