"""Re-placing the replicas of lost hosts: one pass, and its echoes plan nothing again.

The real fleet cache and reconciler over bench/cache_pass.py's in-memory store (what
bench/loss_pass.py measures at 100,000 models), small enough for the unit suite.
"""

from __future__ import annotations

import itertools

from bench import cache_pass
from bench.controller_plan import KS, NOW, build
from bench.loss_pass import lose_hosts, report_moved
from tfleet import schema
from tfleet.controller import incremental
from tfleet.controller import placement as placement_module
from tfleet.controller import reconciler as reconciler_module
from tfleet.controller.planner import plan
from tfleet.controller.snapshot import read
from tfleet.keyspace import Section
from tfleet.schema import HostRecord, ModelStatusReport, RouteTable
from tfleet.store import Delete, Snapshot, StoreUnavailable


class _Lines:
    """The reconciler's log lines at info and warning, as (event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def info(self, event: str, **fields) -> None:
        self.lines.append((event, fields))

    warning = info

    def __getattr__(self, level: str):
        return lambda *args, **kwargs: None


def _converged(models: int = 40, hosts: int = 8, log=None, clock=lambda: 0.0):
    store = cache_pass.MemoryStore(build(models, hosts))
    reconciler = cache_pass.in_memory_controller(store, clock, log=log).reconciler
    _until_quiet(store, reconciler)
    return store, reconciler


def _until_quiet(store, reconciler) -> list[tuple[int, int]]:
    """(writes, models planned) of each pass until one writes nothing with nothing pending."""
    passes = []
    for _ in range(20):
        store.deliver()
        outcome = reconciler.reconcile()
        assert outcome.result == "ok", outcome
        passes.append((outcome.writes, len(reconciler.planner.planned)))
        if not outcome.writes and not store.pending:
            return passes
    raise AssertionError(f"no quiet pass: {passes}")


def _fresh_plan_needs_nothing(store) -> None:
    """What a new leader would plan from a full read of the store: no assignment to write."""
    snapshot = Snapshot(store.revision, tuple(store.items.values()))
    result = plan(read(snapshot, KS), {}, NOW)
    assert not result.puts and not result.deletes


def _lost_and_holding(store) -> tuple[list[str], list[str]]:
    """Two hosts to lose, and the model of each replica they hold."""
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lost = hosts[:2]
    held = [KS.classify(k).model for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost]
    return lost, held


def test_lost_hosts_replicas_are_re_placed_in_one_pass_whose_echoes_plan_nothing() -> None:
    store, reconciler = _converged()
    lost, held = _lost_and_holding(store)
    assert held
    lose_hosts(store, lost)
    passes = _until_quiet(store, reconciler)
    # the pass that saw the loss planned the models the lost hosts held; the echoes of its
    # writes (new replicas, reports, routes) none; the next pass, in which no host was lost,
    # deleted the lost hosts' assignments, planning nothing again
    (writes, planned), (deleted, replanned), *echoes = passes
    assert writes > 0 and planned == len(set(held))
    assert deleted == len(held) and replanned == 0, passes
    assert all(p == (0, 0) for p in echoes), passes
    assert not any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost for k in store.items)
    _fresh_plan_needs_nothing(store)
    # the new hosts report their replicas ready: every model is whole again (or says why not)
    assert report_moved(store) > 0
    _until_quiet(store, reconciler)
    for model in set(held):
        report = schema.parse(ModelStatusReport, store.items[KS.modelstatus(model)].value, model)
        ready = [r.host for r in report.replicas if r.ready]
        assert sorted(ready) == sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).model == model)
        assert len(ready) == report.wanted_replicas or report.reasons, report
    _fresh_plan_needs_nothing(store)


def test_the_deletes_of_a_model_whose_intent_went_with_its_hosts_still_end_its_report() -> None:
    """The deletes whose echo is a change: the last assignments of a model without an
    intent (its report goes once they are gone), here all on hosts that died."""
    store, reconciler = _converged()
    model = "m00001"
    holders = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).model == model)
    assert holders and KS.modelstatus(model) in store.items
    store.txn([], [Delete(KS.model(model))])
    lose_hosts(store, holders)
    _until_quiet(store, reconciler)
    assert not any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).model == model for k in store.items)
    assert KS.modelstatus(model) not in store.items
    _fresh_plan_needs_nothing(store)


def test_the_pass_that_re_places_logs_what_it_planned_and_where_its_time_went() -> None:
    """An operator reading a slow pass in the log sees how many models it planned and how its
    time split between taking the cache's changes, planning and writing."""
    log = _Lines()
    ticks = itertools.count()
    store, reconciler = _converged(log=log, clock=lambda: next(ticks) / 1000)  # a millisecond per look
    lost, held = _lost_and_holding(store)
    lose_hosts(store, lost)
    log.lines.clear()
    (writes, planned), *_ = _until_quiet(store, reconciler)
    event, fields = log.lines[0]
    assert event == "reconcile" and fields["result"] == "ok"
    assert fields["planned"] == planned == len(set(held)) and fields["writes"] == writes
    assert fields["hosts"] == 8 - len(lost)
    for phase in ("take_s", "plan_s", "write_s"):
        assert isinstance(fields[phase], float) and fields[phase] > 0, fields
    # the lost hosts' assignments wait for the next pass, which says none waits any more
    assert fields["gone_waiting"] == len(set(held))
    assert log.lines[1][0] == "reconcile" and log.lines[1][1]["gone_waiting"] == 0


class _FailingStore(cache_pass.MemoryStore):
    """The in-memory store, whose ``fail_after``-th next transaction fails (etcd timed out)."""

    fail_after: int | None = None

    def txn(self, compares, success, failure=()):
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.fail_after = None
                raise StoreUnavailable("etcd txn failed on the only member: deadline_exceeded (test)")
            self.fail_after -= 1
        return super().txn(compares, success, failure)


def test_a_failed_write_plans_again_the_models_of_that_pass_not_the_fleet() -> None:
    """One transaction of the re-placing pass times out: the next pass plans the models that
    pass was for (their writes may or may not have landed), not all of them (at 100,000
    models planning everything took ~30 s), and the fleet still ends whole."""
    models = 300
    store = _FailingStore(build(models, 8))
    lines = _Lines()
    reconciler = cache_pass.in_memory_controller(store, log=lines).reconciler
    _until_quiet(store, reconciler)
    lost, held = _lost_and_holding(store)
    lose_hosts(store, lost)
    store.fail_after = 1  # the pass's first transaction lands, its second fails
    store.deliver()
    assert reconciler.reconcile().result == "etcd_unavailable"
    passes = _until_quiet(store, reconciler)
    assert passes[0][1] == len(set(held)) < models, passes  # (all of them: 300)
    # the warning says how many models the next pass owes (what it then planned)
    failed = [fields for event, fields in lines.lines if event == "reconcile" and fields.get("result") == "etcd_unavailable"]
    assert [f["replan"] for f in failed] == [passes[0][1]], failed
    assert not any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost for k in store.items)
    for model in set(held):
        report = schema.parse(ModelStatusReport, store.items[KS.modelstatus(model)].value, model)
        assert len(report.replicas) == report.wanted_replicas or report.reasons, report
        assert not {r.host for r in report.replicas} & set(lost), report
    _fresh_plan_needs_nothing(store)


def test_a_failed_write_of_route_tables_alone_is_written_again() -> None:
    """A host's address changes: no model is planned again (placement is the same), but the
    route tables of its models are rewritten. When that write fails, the next pass still
    writes them (the models of a failed pass's route tables are owed too, not only the
    models it planned)."""
    store = _FailingStore(build(300, 8))
    reconciler = cache_pass.in_memory_controller(store).reconciler
    _until_quiet(store, reconciler)
    host = "h0001"
    record = schema.parse(HostRecord, store.items[KS.host(host)].value, host)
    store.write(KS.host(host), schema.encode(record.model_copy(update={"grpc_address": "moved:1"})))
    store.fail_after = 0
    store.deliver()
    assert reconciler.reconcile().result == "etcd_unavailable"
    _until_quiet(store, reconciler)
    held = {KS.classify(k).model for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host == host}
    assert held
    for model in held:
        table = schema.parse(RouteTable, store.items[KS.routes(model)].value, model)
        assert {e.grpc_address for e in table.endpoints if e.host == host} == {"moved:1"}, table
    _fresh_plan_needs_nothing(store)


def _models_on(store, host: str) -> set[str]:
    return {KS.classify(k).model for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host == host}


def test_readiness_waits_a_pass_behind_the_replacement_of_lost_hosts() -> None:
    """Hosts die in two waves: the pass that re-places the second wave's replicas does not
    also report the first wave's new replicas ready (their statuses came in meanwhile); the
    next pass, at once, does."""
    store = cache_pass.MemoryStore(build(300, 8))
    reconciler = cache_pass.in_memory_controller(store, defer_readiness_at=1).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lose_hosts(store, [hosts[0]])
    _until_quiet(store, reconciler)
    second = hosts[1]
    on_second = _models_on(store, second)
    assert report_moved(store) > 0  # the first wave's new replicas are ready; not yet taken
    lose_hosts(store, [second])
    store.deliver()
    outcome = reconciler.reconcile()
    assert outcome.result == "ok" and outcome.requeue_after == 0.0
    assert reconciler.planner.planned == on_second  # placement only: the statuses wait
    for model in on_second:  # every replica of the lost host has its replacement
        placed = [k for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).model == model]
        report = schema.parse(ModelStatusReport, store.items[KS.modelstatus(model)].value, model)
        assert len([k for k in placed if KS.classify(k).host != second]) == report.wanted_replicas or report.reasons, report
        assert second not in {r.host for r in report.replicas}
    waited, *_ = _until_quiet(store, reconciler)
    assert waited[1] > 0  # the next pass planned the models whose statuses waited
    assert not _models_on(store, second)  # (and deleted the lost host's assignments)
    assert report_moved(store) > 0  # (the second wave's new replicas)
    _until_quiet(store, reconciler)
    for key, kv in store.items.items():  # every replica's report says it is ready
        if KS.in_section(key, Section.MODELSTATUS):
            report = schema.parse(ModelStatusReport, kv.value, key)
            assert all(r.ready for r in report.replicas), report
    _fresh_plan_needs_nothing(store)


class _CountingStore(cache_pass.MemoryStore):
    """The in-memory store, noting at each transaction how many models had been planned."""

    planned_at_txn: list[int]
    planned = 0

    def txn(self, compares, success, failure=()):
        self.planned_at_txn.append(self.planned)
        return super().txn(compares, success, failure)


def test_a_pass_writes_its_first_models_before_it_plans_the_last(monkeypatch) -> None:
    """Planning overlaps the writes: the first chunk of a pass's models is written (its
    transactions in flight) before the next chunk is planned, not after every model is. At
    100,000 models a pass that re-placed 65 hosts' replicas planned for 1.6 s before its
    first write, then waited on etcd for most of its 3.4 s of writes."""
    models = 3 * incremental.PLAN_CHUNK
    store = _CountingStore(build(models, 8))
    store.planned_at_txn = []
    real = incremental.plan_model_safely

    def counted(*args, **kwargs):
        store.planned += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(incremental, "plan_model_safely", counted)
    reconciler = cache_pass.in_memory_controller(store).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lose_hosts(store, hosts[:4])  # half the fleet: most models lose a replica
    store.deliver()
    store.planned, store.planned_at_txn = 0, []
    assert reconciler.reconcile().result == "ok"
    moved = len(reconciler.planner.planned)
    assert moved > 2 * incremental.PLAN_CHUNK and store.planned == moved
    assert store.planned_at_txn[0] == incremental.PLAN_CHUNK, store.planned_at_txn[:5]
    assert store.planned_at_txn[-1] == moved
    _until_quiet(store, reconciler)
    _fresh_plan_needs_nothing(store)


class _OrderStore(cache_pass.MemoryStore):
    """The in-memory store, noting every operation of every transaction in order."""

    ops: list

    def txn(self, compares, success, failure=()):
        self.ops.extend(success)
        return super().txn(compares, success, failure)


def test_lost_hosts_assignments_are_deleted_last_by_the_first_pass_without_a_lost_host() -> None:
    """The pass that re-places lost hosts' replicas leaves the deletes of their assignments
    (nothing waits for them; the next pass, which re-places the hosts lost meanwhile, would
    wait for them); the first pass in which no host was lost writes them, after everything
    else it writes, without planning those models again."""
    store = _OrderStore(build(3 * incremental.PLAN_CHUNK, 8))
    store.ops = []
    reconciler = cache_pass.in_memory_controller(store).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lost = set(hosts[:4])
    lose_hosts(store, sorted(lost))
    store.deliver()
    store.ops = []

    def lost_host_delete(op) -> bool:
        return isinstance(op, Delete) and KS.in_section(op.key, Section.ASSIGNMENTS) and KS.classify(op.key).host in lost

    outcome = reconciler.reconcile()
    assert outcome.result == "ok" and outcome.requeue_after == 0.0  # (the deletes want the next pass)
    assert store.ops and not any(lost_host_delete(op) for op in store.ops)
    assert report_moved(store) > 0  # the new replicas are ready: the next pass reports it
    store.deliver()
    store.ops = []
    assert reconciler.reconcile().result == "ok"
    kinds = [lost_host_delete(op) for op in store.ops]
    first = kinds.index(True)
    assert first > 0 and all(kinds[first:]), "a write came after a lost host's assignment was deleted"
    assert {KS.classify(op.key).section for op in store.ops[:first]} >= {Section.MODELSTATUS, Section.ROUTES}
    assert not any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost for k in store.items)
    _until_quiet(store, reconciler)
    _fresh_plan_needs_nothing(store)


def test_a_lost_host_back_before_its_waiting_deletes_were_written_ends_consistent() -> None:
    """A host lost and back under its name before the deletes were written keeps what the
    plan gives it; the assignments on hosts still gone are deleted."""
    store, reconciler = _converged()
    lost, held = _lost_and_holding(store)
    records = {KS.host(h): store.items[KS.host(h)] for h in lost}
    lose_hosts(store, lost)
    store.deliver()
    assert reconciler.reconcile().result == "ok"
    back = lost[0]
    store.write(KS.host(back), records[KS.host(back)].value)  # (its agent registers again)
    _until_quiet(store, reconciler)
    left = {KS.classify(k).host for k in store.items if KS.in_section(k, Section.ASSIGNMENTS)}
    assert not (set(lost) - {back}) & left
    _fresh_plan_needs_nothing(store)


def test_deletes_wait_at_most_a_while_when_hosts_keep_being_lost() -> None:
    """A fleet that loses a host in every pass still gets the deletes written, once they
    have waited GONE_DELETES_WAIT_AT_MOST."""
    now = [0.0]
    store = cache_pass.MemoryStore(build(200, 8))
    reconciler = cache_pass.in_memory_controller(store, clock=lambda: now[0]).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))

    def assignments_on(host: str) -> int:
        return sum(1 for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host == host)

    for step, host in enumerate(hosts[:3]):
        now[0] = step * (reconciler_module.GONE_DELETES_WAIT_AT_MOST / 2 + 1)
        held = assignments_on(host)
        lose_hosts(store, [host])
        store.deliver()
        assert reconciler.reconcile().result == "ok"
        if step < 2:
            assert assignments_on(host) == held > 0  # (a pass that lost a host leaves its deletes)
    # the third pass came after the first deletes had waited longer than allowed: it wrote
    # every waiting delete, and its own
    assert [assignments_on(host) for host in hosts[:3]] == [0, 0, 0]
    _until_quiet(store, reconciler)
    _fresh_plan_needs_nothing(store)


def test_the_rolling_resync_waits_for_the_pass_after_hosts_were_lost() -> None:
    """A pass that re-places lost hosts' replicas plans no resync slice (the net can wait a
    pass; the replicas cannot); the next pass takes the slice that was owed."""
    log = _Lines()
    now = [0.0]
    store = cache_pass.MemoryStore(build(40, 8))
    reconciler = cache_pass.in_memory_controller(store, lambda: now[0], log=log, full_plan_interval=60.0, resync_slice=10).reconciler
    _until_quiet(store, reconciler)
    lost, held = _lost_and_holding(store)
    now[0] = 30.0  # half the interval: half the fleet's resync is owed
    lose_hosts(store, lost)
    log.lines.clear()
    store.deliver()
    reconciler.reconcile()
    ((event, loss),) = log.lines
    assert event == "reconcile" and loss["resynced"] == 0 and loss["planned"] == len(set(held))
    store.deliver()
    reconciler.reconcile()
    assert log.lines[1][1]["resynced"] > 0


def _three_hosts_lost_one_by_one(now: list[float]):
    """A converged fleet whose first lost host's replicas were re-placed and reported ready
    (statuses not taken yet), and a function that loses the next host and runs one pass."""
    store = cache_pass.MemoryStore(build(300, 8))
    reconciler = cache_pass.in_memory_controller(store, lambda: now[0], defer_readiness_at=1).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lose_hosts(store, [hosts[0]])
    _until_quiet(store, reconciler)
    assert report_moved(store) > 0  # the first wave's new replicas are ready; not yet taken
    first = {KS.classify(e.key).model for e in store.pending}

    def lose(host: str) -> set[str]:
        lose_hosts(store, [host])
        store.deliver()
        outcome = reconciler.reconcile()
        assert outcome.result == "ok" and outcome.requeue_after == 0.0
        return set(reconciler.planner.planned)

    return store, reconciler, hosts, first, lose


def test_readiness_waits_again_while_hosts_keep_being_lost() -> None:
    """The statuses that came in while hosts were being lost wait pass after pass while more
    hosts are lost (each pass places a wave's replicas, nothing else); the first pass in
    which no host was lost plans them, and every model ends ready."""
    now = [0.0]
    store, reconciler, hosts, first, lose = _three_hosts_lost_one_by_one(now)
    assert first
    waited = set(first)
    for host in hosts[1:3]:
        on_host = _models_on(store, host)
        now[0] += 2.0
        assert lose(host) == on_host  # placement only: the first wave's statuses wait
        waited -= on_host  # (those on the lost host were planned with it)
    assert waited
    store.deliver()
    reconciler.reconcile()  # no host lost: the statuses that waited are planned now
    assert waited <= reconciler.planner.planned
    report_moved(store)
    _until_quiet(store, reconciler)
    for key, kv in store.items.items():
        if KS.in_section(key, Section.MODELSTATUS):
            report = schema.parse(ModelStatusReport, kv.value, key)
            assert all(r.ready for r in report.replicas), report
    _fresh_plan_needs_nothing(store)


def test_readiness_waits_at_most_a_while_when_hosts_keep_being_lost() -> None:
    now = [0.0]
    store, reconciler, hosts, first, lose = _three_hosts_lost_one_by_one(now)
    waited = first - lose(hosts[1])  # the statuses start waiting
    assert waited
    now[0] += reconciler_module.DEFER_READINESS_AT_MOST
    on_host = _models_on(store, hosts[2])
    planned = lose(hosts[2])
    assert waited <= planned  # they waited long enough: planned with the last wave's models
    assert on_host <= planned


def test_a_failed_pass_that_deleted_some_waiting_assignments_leaves_the_rest_to_the_next() -> None:
    """The pass that writes the waiting deletes of lost hosts' assignments fails part-way
    (its transactions of deletes come last: some land, the rest do not): the next pass
    deletes what is left, and the fleet ends as a fresh plan would leave it."""
    models = 300
    store = _FailingStore(build(models, 8))
    reconciler = cache_pass.in_memory_controller(store).reconciler
    _until_quiet(store, reconciler)
    lost, held = _lost_and_holding(store)
    lose_hosts(store, lost)
    store.deliver()
    assert reconciler.reconcile().result == "ok"  # re-placed; the deletes wait
    left = [k for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost]
    assert len(left) == len(held) > reconciler_module.WRITE_BATCH  # (more than one transaction of deletes)
    store.deliver()
    store.fail_after = 1  # (that pass writes only the deletes) its first transaction lands, the next fails
    assert reconciler.reconcile().result == "etcd_unavailable"
    still = [k for k in store.items if KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost]
    assert 0 < len(still) < len(left)  # some deletes landed, some did not
    _until_quiet(store, reconciler)
    assert not any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host in lost for k in store.items)
    _fresh_plan_needs_nothing(store)


def test_the_next_waves_pass_takes_the_last_waves_new_replicas_without_rules_1_to_3(monkeypatch) -> None:
    """While hosts keep being lost, the pass that re-places the next wave also takes the
    echoes of the last wave's new replicas, with the last wave's lost assignments still there
    (their deletes wait): those models are settled as placed (placement_hold.held_as_placed),
    not run through rules 1-3 again; only the models of the newly lost host are."""
    now = [0.0]
    store = cache_pass.MemoryStore(build(300, 8))
    reconciler = cache_pass.in_memory_controller(store, lambda: now[0]).reconciler
    _until_quiet(store, reconciler)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    first_wave = _models_on(store, hosts[0])
    lose_hosts(store, [hosts[0]])
    store.deliver()
    assert reconciler.reconcile().result == "ok"  # the first wave's replicas, placed
    assert any(KS.in_section(k, Section.ASSIGNMENTS) and KS.classify(k).host == hosts[0] for k in store.items)  # (deletes wait)
    second_wave = _models_on(store, hosts[1])
    held: list[str] = []
    real_hold = placement_module.hold
    monkeypatch.setattr(placement_module, "hold", lambda demand, *rest: held.append(demand.name) or real_hold(demand, *rest))
    lose_hosts(store, [hosts[1]])
    store.deliver()  # the second wave's loss, and the first wave's echoes
    assert reconciler.reconcile().result == "ok"
    assert set(held) <= second_wave, sorted(set(held) - second_wave)
    assert first_wave - second_wave and not (first_wave - second_wave) & set(held)
    monkeypatch.undo()
    report_moved(store)
    _until_quiet(store, reconciler)
    _fresh_plan_needs_nothing(store)
