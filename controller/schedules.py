"""Scheduled actions: promote a canary, abort a rollout, or roll a model back at a given time.

The actions live in etcd (``<prefix>/schedules/<model>/<id>``), so whichever controller
leads when one falls due runs it; the pass only tells the loop when the next one is due
(Outcome.requeue_after, tfleet/loop.py), so the leader wakes at the right moment.

Running one action is three steps, each safe to repeat after a crash or a failover:

1. claim: a fenced compare-and-swap on the schedule key records ``outcome: "running"`` and,
   for a rollback, the history sequence it will restore (so that running it twice restores
   the same intent, not "the one before the last" twice);
2. act: promote / abort set a flag in the intent, rollback restores a history entry; all
   three are idempotent, through the registry's compare-and-swap;
3. record: a fenced write sets ``done_at`` and the outcome in words.

A deposed leader fails step 1 or 3 on its fence and stops.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from tfleet import schema
from tfleet.controller.snapshot import FleetSnapshot
from tfleet.keyspace import Keyspace
from tfleet.logs import Logger
from tfleet.ports import Fence, IntentRegistry, Store
from tfleet.registry import ConflictError, RegistryError
from tfleet.schema import ScheduledAction
from tfleet.store import Compare, Put


@dataclass(frozen=True)
class Due:
    model: str
    schedule_id: str
    action: ScheduledAction
    revision: int


def due_actions(snap: FleetSnapshot, now: dt.datetime) -> list[Due]:
    """Valid actions not done yet whose time has come, oldest first (pure)."""
    due = [
        Due(model, schedule_id, parsed.value, parsed.revision)
        for (model, schedule_id), parsed in snap.schedules.items()
        if parsed.value is not None and parsed.value.done_at is None and parsed.value.at <= now
    ]
    return sorted(due, key=lambda d: (d.action.at, d.model, d.schedule_id))


def next_due(snap: FleetSnapshot) -> dt.datetime | None:
    """When the next pending action falls due (pure)."""
    pending = [p.value.at for p in snap.schedules.values() if p.value is not None and p.value.done_at is None]
    return min(pending, default=None)


class ScheduleRunner:
    def __init__(
        self, *, store: Store, keyspace: Keyspace, registry: IntentRegistry, election: Fence, log: Logger, now: Callable[[], dt.datetime] = schema.utc_now
    ) -> None:
        self._store = store
        self._ks = keyspace
        self._registry = registry
        self._election = election
        self._log = log
        self._now = now

    def run_due(self, snap: FleetSnapshot) -> int:
        """Run every due action; returns how many finished. NotLeader propagates (stop at once)."""
        finished = 0
        for due in due_actions(snap, self._now()):
            intent = snap.intents.get(due.model)
            claimed = self._claim(due, intent.revision if intent is not None else 0)
            if claimed is None:
                continue  # changed meanwhile (edited, or claimed by a previous term): next pass
            outcome = self._act(due.model, claimed)
            self._record(due, claimed, outcome)
            finished += 1
        return finished

    def _claim(self, due: Due, intent_revision: int) -> ScheduledAction | None:
        action = due.action
        if action.action == "rollback" and action.to_sequence is None:
            # "The change before the last" must be read from a history that holds the last
            # change: the recorder (its own thread) may not have recorded it yet.
            self._registry.await_recorded(due.model, intent_revision)
            action = action.model_copy(update={"to_sequence": self._default_rollback_target(due.model)})
        claimed = action.model_copy(update={"outcome": "running"})
        key = self._ks.schedule(due.model, due.schedule_id)
        if not self._election.fenced_txn([Put(key, schema.encode(claimed))], [Compare(key, "mod", "==", due.revision)]):
            return None
        return claimed

    def _default_rollback_target(self, model: str) -> int | None:
        """The entry before the last change, resolved once at claim time."""
        entries = [e for e in self._registry.history(model, limit=10) if e.new is not None]
        return entries[-2].sequence if len(entries) >= 2 else None

    def _act(self, model: str, action: ScheduledAction) -> str:
        author = f"schedule ({action.created_by or 'unknown'})"
        try:
            if action.action == "rollback":
                if action.to_sequence is None:
                    return "failed: no earlier intent in the history to roll back to"
                self._registry.rollback(model, to_sequence=action.to_sequence, author=author)
                return f"rolled back to history entry {action.to_sequence}"
            intent, _ = self._registry.get_intent(model)
            if intent is None:
                return f"failed: model {model} has no valid intent"
            flag = "promote" if action.action == "promote" else "abort"
            if getattr(intent.rollout, flag):
                return f"{flag} was already set"
            rollout = intent.rollout.model_copy(update={flag: True})
            self._registry.apply_intent(model, intent.model_copy(update={"rollout": rollout}), author=author)
            return f"set rollout.{flag}"
        except (RegistryError, ConflictError) as exc:
            return f"failed: {exc}"

    def _record(self, due: Due, claimed: ScheduledAction, outcome: str) -> None:
        key = self._ks.schedule(due.model, due.schedule_id)
        done = claimed.model_copy(update={"done_at": self._now(), "outcome": outcome})
        self._election.fenced_txn([Put(key, schema.encode(done))])
        self._log.info("scheduled_action", model=due.model, id=due.schedule_id, action=claimed.action, outcome=outcome)
