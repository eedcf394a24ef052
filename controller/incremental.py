"""The controller's planner with memory: the result of ``planner.plan``, in time proportional
to what changed since the previous pass.

Each pass plans from one snapshot at one revision (level-triggered), kept current from the
fleet cache (controller/fleetcache.py) by the keys that changed. The snapshot tells which
models and hosts had keys added, changed or removed (the controller's own modelstatus and
route writes coming back are not changes); only these are planned again:

* a model whose intent, assignments, agent statuses, report or registered versions changed;
* a model that placement may now put differently: one with a replica on a changed host,
  or one short of replicas (capacity may have appeared);
* a model whose failure backoff has just ended;
* the models on a host whose TF Serving has not answered for longer than the grace (its
  unresponsive flag flips with time alone: only such hosts are looked at).

The returned plan holds the writes and reports of the models planned again; the others'
were returned by an earlier pass and are in etcd. A snapshot without change sets (the first,
or after ``FleetBuilder.forget``) plans everything, and so does the pass after ``reset()``,
which the reconciler calls on a new term or an unexpected error. tests/unit/test_incremental.py checks the
results equal the full planner's.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from tfleet.controller.placement import DEFAULT_UNRESPONSIVE_GRACE, IncrementalPlacer, Placement, PlacementInput
from tfleet.controller.planner import (
    ControllerPlan,
    ModelPlan,
    ready_holders,
    combine,
    merge,
    demand_of,
    EffectiveIntent,
    effective_intents,
    host_info,
    placement_input,
    ModelCase,
    plan_model_safely,
)
from tfleet.controller.snapshot import FleetSnapshot, note_change
from tfleet.keyspace import Keyspace
from tfleet.schema import ModelIntent, ModelStatusReport

# Models planned at a time in a pass (IncrementalPlanner.plan_chunks): ~400 writes, a few
# transactions, so that the next chunk is planned while those are in flight.
PLAN_CHUNK = 100
# What changed in a placement input: hosts, demands, current, ready (None: removed).
_InputChanges = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


class IncrementalPlanner:
    def __init__(self, unresponsive_grace: float = DEFAULT_UNRESPONSIVE_GRACE) -> None:
        self._grace = unresponsive_grace
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next pass plans every model."""
        self._placer: IncrementalPlacer | None = None
        self._input: PlacementInput | None = None
        self._placement: Placement | None = None
        self._intents: dict[str, EffectiveIntent] = {}
        # model -> its report as last planned (None: none, e.g. an unmanaged model's): only the
        # report is kept of a model's plan, not its writes (at 100,000 models the plans' write
        # maps and sets were ~40 MB that nothing read after the pass)
        self._results: dict[str, ModelStatusReport | None] = {}
        self._wakes: dict[str, dt.datetime] = {}  # model -> when its failure backoff ends
        # the placement input before the current one, and the changes that lead from it to the
        # current one (double buffering: see _next_input)
        self._spare: PlacementInput | None = None
        self._pending: _InputChanges | None = None
        # what the last pass planned (models planned again, and whether it was a full plan)
        self.planned: frozenset[str] = frozenset()
        self.full = True
        # hosts whose TF Serving does not answer: each plan checks whether the grace ran out
        self._unanswering: set[str] = set()

    @property
    def reports(self) -> Mapping[str, ModelStatusReport]:
        """The latest report of every managed model (for gauges and the dashboard)."""
        return {m: r for m, r in self._results.items() if r is not None}

    @property
    def known_models(self) -> Iterable[str]:
        """The models the planner keeps a result of (a view, not a copy)."""
        return self._results.keys()

    def plans_all(self, snap: FleetSnapshot) -> bool:
        """Whether the next plan() of snap plans every model."""
        return self._placer is None or snap.changed_models is None or snap.changed_hosts is None

    def plan(self, snap: FleetSnapshot, last_valid: Mapping[str, ModelIntent], now: dt.datetime, echoed: Collection[str] = ()) -> ControllerPlan:
        """The whole plan of the pass at once (see ``plan_chunks``): the results of the models
        it planned, kept once the last chunk is planned."""
        return merge(list(self.plan_chunks(snap, last_valid, now, echoed)))

    def plan_chunks(
        self, snap: FleetSnapshot, last_valid: Mapping[str, ModelIntent], now: dt.datetime, echoed: Collection[str] = ()
    ) -> Iterator[ControllerPlan]:
        """The pass's plan in chunks of at most PLAN_CHUNK models, each planned only when the
        caller asks for it, so that a pass writes the first chunks' keys while it plans the
        next ones (the reconciler's transactions are in flight meanwhile). Placement, which
        is global, is decided now, and ``planned`` and ``full`` are set now; the planner's
        results are updated once the last chunk has been planned (an abandoned iteration,
        a failed write, leaves them as they were: the reconciler plans those models again).

        echoed: models whose new replicas' assignments (this planner's own writes, see
        ``quiet_assignment``) came back: their placement input takes the new holders, but
        they are planned again only if their placement moved."""
        if self.plans_all(snap):
            return self._full(snap, last_valid, now)
        assert self._placer is not None and snap.changed_models is not None and snap.changed_hosts is not None  # (plans_all)
        models = set(snap.changed_models) | {m for m, at in self._wakes.items() if at <= now}
        hosts = set(snap.changed_hosts) | self._grace_expired(snap, now)
        self.full = False
        inputs = models | set(echoed)
        if not inputs and not hosts:
            self.planned = frozenset()
            return iter(())
        for model in models:
            self._intents.pop(model, None)
        changed_view = FleetSnapshot(snap.revision)
        changed_view.intents = {m: snap.intents[m] for m in models if m in snap.intents}
        self._intents.update(effective_intents(changed_view, last_valid))
        managed = _Managed(self._intents, snap.modelstatus)  # (not a union: that would cost the fleet)
        self._input = self._next_input(snap, models, inputs - models, hosts, managed, now)
        self._placement = self._placer.update(self._input, inputs, hosts)
        # the changed models, and those whose placement (hosts or reasons) moved with them
        replan = models | self._placer.changed
        self.planned = frozenset(replan)
        return self._chunks(snap, sorted(m for m in replan if m in managed), now, {m for m in replan if m not in managed})

    def _chunks(self, snap: FleetSnapshot, models: list[str], now: dt.datetime, gone: set[str], full: bool = False) -> Iterator[ControllerPlan]:
        """Plan models PLAN_CHUNK at a time; then keep the results (all of them on a full
        pass; else those of models, and forget those of gone)."""
        results: dict[str, ModelPlan] = {}
        for start in range(0, len(models), PLAN_CHUNK):
            chunk = {model: self._plan_one(snap, model, now) for model in models[start : start + PLAN_CHUNK]}
            results.update(chunk)
            yield combine(chunk)
        wakes = {m: r.wake_at for m, r in results.items() if r.wake_at is not None}
        if full:
            self._results, self._wakes = {m: r.report for m, r in results.items()}, wakes
            return
        for model in gone:
            self._results.pop(model, None)
        for model in itertools.chain(models, gone):
            self._wakes.pop(model, None)
        self._results.update((m, r.report) for m, r in results.items())
        self._wakes.update(wakes)

    # -- internals ---------------------------------------------------------------------------------
    def _full(self, snap: FleetSnapshot, last_valid: Mapping[str, ModelIntent], now: dt.datetime) -> Iterator[ControllerPlan]:
        self._intents = effective_intents(snap, last_valid)
        managed = self._intents.keys() | snap.modelstatus.keys()
        current = {model: hosts for model, hosts in snap.holders.items() if model in managed}
        self._input = placement_input(snap, self._intents, current, now, self._grace)
        self._unanswering = {name for name, record in snap.hosts.items() if record.tfs_unresponsive_since is not None}
        self._spare, self._pending = None, None
        self._placer = IncrementalPlacer(self._input)
        self._placement = self._placer.placement
        self.planned, self.full = frozenset(managed), True
        return self._chunks(snap, sorted(managed), now, set(), full=True)

    def report(self, model: str) -> ModelStatusReport | None:
        return self._results.get(model)

    def _grace_expired(self, snap: FleetSnapshot, now: dt.datetime) -> set[str]:
        """Hosts whose unresponsive flag flips with time alone (the grace ran out): O(hosts
        whose TF Serving does not answer), not O(hosts)."""
        assert self._input is not None
        flipped = set()
        for name in self._unanswering:
            known = self._input.hosts.get(name)
            if name in snap.hosts and known is not None and host_info(snap, name, now, self._grace).unresponsive != known.unresponsive:
                flipped.add(name)
        return flipped

    def _next_input(self, snap: FleetSnapshot, models: set[str], echoed: set[str], hosts: set[str], managed: _Managed, now: dt.datetime) -> PlacementInput:
        """The previous placement input with the changed models and hosts replaced; echoed:
        models whose only change is their new holders (their demand is as it was: an intent
        or versions change would have made them changed models).

        The placer compares the previous input with the new one, so the new one must be other
        mappings. Copying four fleet-sized maps every pass would cost the fleet, so two inputs
        take turns (double buffering): the spare one (two passes old) is brought up to date by
        the previous pass's changes and this pass's, in time proportional to them.
        """
        assert self._input is not None
        changes: _InputChanges = ({}, {}, {}, {})
        host_changes, demand_changes, current_changes, ready_changes = changes
        for host in hosts:
            if host in snap.hosts:
                host_changes[host] = host_info(snap, host, now, self._grace)
                if snap.hosts[host].tfs_unresponsive_since is not None:
                    self._unanswering.add(host)
                else:
                    self._unanswering.discard(host)
            else:
                host_changes[host] = None
                self._unanswering.discard(host)
        was_demands = self._input.demands
        for model in models:
            entry = self._intents.get(model)
            demand_changes[model] = demand_of(snap, model, entry.intent, was_demands.get(model)) if entry is not None and entry.intent is not None else None
            holders = snap.holders.get(model) if model in managed else None
            current_changes[model] = frozenset(holders) if holders else None
            ready_changes[model] = ready_holders(snap, model, holders) if holders else None
        was_ready = self._input.ready
        for model in echoed:
            holders = snap.holders.get(model) if model in managed else None
            current_changes[model] = frozenset(holders) if holders else None
            if not holders:
                ready_changes[model] = None
            elif model in snap.changed_by_status:  # (its readiness moved, and waits: reconciler._defer_readiness)
                ready_changes[model] = ready_holders(snap, model, holders)
            else:
                ready_changes[model] = _still_ready(holders, was_ready.get(model, frozenset()))
        spare, pending = self._spare, self._pending
        if spare is None:  # the first incremental pass after a full one: make the second buffer
            spare = PlacementInput(dict(self._input.hosts), dict(self._input.demands), dict(self._input.current), dict(self._input.ready))
            pending = None
        for batch in (pending, changes):
            if batch is None:
                continue
            for mapping, updates in zip((spare.hosts, spare.demands, spare.current, spare.ready), batch, strict=True):
                for name, value in updates.items():
                    if value is None:
                        mapping.pop(name, None)  # type: ignore[attr-defined]
                    else:
                        mapping[name] = value  # type: ignore[index]
        self._spare, self._pending = self._input, changes
        return spare

    def _plan_one(self, snap: FleetSnapshot, model: str, now: dt.datetime) -> ModelPlan:
        assert self._placement is not None
        return plan_model_safely(snap, ModelCase.of(model, self._intents.get(model), snap.holders.get(model, set()), self._placement), now)


def _still_ready(holders: frozenset[str], was_ready: frozenset[str]) -> frozenset[str]:
    """ready_holders of an echoed model none of whose statuses changed: the holders that
    were ready. Its other holders' assignments and statuses did not change (either would
    have made it a changed model), and its new holders are not ready: their assignments are
    this pass's echoes, at a revision no agent had acted on when the snapshot was taken (a
    status that acted on it would be a change of the model). At 30,000 models the echo of
    re-placing lost hosts' replicas read ~13,000 replicas' readiness for this."""
    ready = frozenset(name for name in holders if name in was_ready)
    return holders if len(ready) == len(holders) else ready


def quiet_assignment(snap: FleetSnapshot, host: str, model: str) -> bool:
    """Whether the echo of a put of this assignment changes no decision: a new replica (the
    snapshot holds no assignment of the model on that host). It was not ready before the
    put and cannot be after it (no agent has acted on the new revision yet), the rollout
    step of a model whose other replicas did not change is the same with it, and placement
    keeps it (rule 1) where it had just placed it. Not so for a changed assignment: its new
    revision makes a ready replica not ready, which moves the rollout (and the report); nor
    for a delete, whose echo can end an unmanaged model's report. Property tests:
    tests/unit/test_fleetcache.py."""
    return (host, model) not in snap.assignments


def quiet_delete(snap: FleetSnapshot, host: str, model: str) -> bool:
    """Whether the echo of a delete of this assignment changes no decision: its host is gone
    and the model has an intent key. Placement already ignores a gone host's replica (rule
    2), it was not ready (its status went with the host's lease, and a gone host serves no
    route), and the rollout and report look only at placed hosts; the intent key means the
    echo cannot end the model's report either (an unmanaged model's last delete does). This
    is what makes re-placing the replicas of lost hosts one pass, not two: at 100,000
    models the 20,000 deletes' echoes re-planned every affected model for nothing
    (bench/loss_pass.py). Property tests: tests/unit/test_fleetcache.py."""
    return host not in snap.hosts and model in snap.intents


class EchoLedger:
    """Which of the controller's own writes may come back quiet.

    A quiet echo (fleetcache.py) is not planned again because the plan that wrote it
    already decided with it in mind. That holds only while that plan is the model's latest:
    when the model was planned again before the echo arrived (another change of it came
    first), the newer plan did not see the write, so the echo is a change after all. The
    ledger remembers which plan wrote each announced key and which plan last planned its
    model (only for models with writes in flight: it holds the writes in flight, not the
    fleet)."""

    def __init__(self, keyspace: Keyspace) -> None:
        self._ks = keyspace
        self.reset()

    def reset(self) -> None:
        """Nothing is in flight any more (the cache forgot its echoes: everything is planned)."""
        self._plan = 0
        self._written: dict[str, tuple[str, int]] = {}  # key -> (its model, the plan that wrote it)
        self._in_flight: dict[str, int] = {}  # model -> how many of its writes are in flight
        self._planned: dict[str, int] = {}  # model with writes in flight -> the last plan of it

    def planned(self, models: Iterable[str]) -> None:
        """A plan ran (call once per plan, before ``announce`` of its writes)."""
        self._plan += 1
        for model in models:
            if model in self._in_flight:
                self._planned[model] = self._plan

    def announce(self, keys: Iterable[str], models: Mapping[str, str] | None = None) -> None:
        """The latest plan writes these keys (announced to the cache as echoes); models: each
        key's model when the writer knows it (else it is parsed from the key)."""
        for key in keys:
            model = models[key] if models is not None and key in models else _model_of(self._ks, key)
            if model is None:
                continue
            if key not in self._written:
                self._in_flight[model] = self._in_flight.get(model, 0) + 1
            self._written[key] = (model, self._plan)

    def arrived(self, keys: Iterable[str], quiet: Collection[str]) -> tuple[set[str], set[str]]:
        """The keys a take brought, and which of them came back quiet. Returns the models to
        plan again after all (quiet echoes of writes their model was planned again after),
        and the models of the other quiet echoes of assignments (``plan(echoed=...)``)."""
        stale: set[str] = set()
        echoed: set[str] = set()
        prefix = self._ks.assignments_prefix()
        written_by, in_flight, planned = self._written, self._in_flight, self._planned
        for key in keys:
            written = written_by.pop(key, None)
            if written is None:
                if key in quiet:  # (announced before a reset: plan it again)
                    announced = _model_of(self._ks, key)
                    if announced is not None:
                        stale.add(announced)
                continue
            model, plan = written
            if key in quiet:
                if planned.get(model, plan) > plan:
                    stale.add(model)
                elif key.startswith(prefix):
                    echoed.add(model)
            left = in_flight[model] - 1
            if left:
                in_flight[model] = left
            else:
                del in_flight[model]
                planned.pop(model, None)
        return stale, echoed - stale


def _model_of(keyspace: Keyspace, key: str) -> str | None:
    models: set[str] = set()
    note_change(keyspace, key, models, set())
    return next(iter(models), None)


class _Managed:
    """Whether a model is managed (it has an intent or a modelstatus key), without building
    the union of both key sets."""

    __slots__ = ("_intents", "_reports")

    def __init__(self, intents: Mapping[str, object], reports: Mapping[str, object]) -> None:
        self._intents, self._reports = intents, reports

    def __contains__(self, model: object) -> bool:
        return model in self._intents or model in self._reports
