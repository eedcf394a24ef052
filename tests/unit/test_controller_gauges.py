"""The per-model gauges say what the reports say, pass after pass: a model's replicas wanted
and ready, exactly one rollout phase, and nothing once the model is gone."""

from __future__ import annotations

from bench import cache_pass
from bench.controller_plan import KS, build
from bench.loss_pass import lose_hosts
from tfleet import schema
from tfleet.keyspace import Section
from tfleet.schema import ModelStatusReport
from tfleet.store import Delete


def _until_quiet(store, reconciler) -> None:
    for _ in range(20):
        store.deliver()
        outcome = reconciler.reconcile()
        if not outcome.writes and not store.pending:
            return
    raise AssertionError("no quiet pass")


def _gauges_match_reports(store, metrics) -> None:
    reports = {
        KS.classify(key).model: schema.parse(ModelStatusReport, kv.value, key) for key, kv in store.items.items() if KS.in_section(key, Section.MODELSTATUS)
    }
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in metrics.registry.collect() for s in family.samples}
    wanted = {dict(labels)["model"]: v for (name, labels), v in samples.items() if name == "tfleet_controller_replicas_wanted"}
    ready = {dict(labels)["model"]: v for (name, labels), v in samples.items() if name == "tfleet_controller_replicas_ready"}
    phases = [dict(labels) for (name, labels), v in samples.items() if name == "tfleet_controller_rollout_phase" and v == 1]
    assert wanted == {m: r.wanted_replicas for m, r in reports.items()}
    assert ready == {m: sum(1 for x in r.replicas if x.ready) for m, r in reports.items()}
    assert sorted((p["model"], p["phase"]) for p in phases) == sorted((m, r.rollout.phase) for m, r in reports.items())


def test_the_model_gauges_follow_the_reports_through_a_host_loss_and_a_removal() -> None:
    store = cache_pass.MemoryStore(build(40, 8))
    controller = cache_pass.in_memory_controller(store)
    reconciler, metrics = controller.reconciler, controller.metrics
    _until_quiet(store, reconciler)
    _gauges_match_reports(store, metrics)
    hosts = sorted(KS.classify(k).host for k in store.items if KS.in_section(k, Section.HOSTS))
    lose_hosts(store, hosts[:2])
    store.deliver()
    reconciler.reconcile()  # the lost replicas are re-placed, not ready yet
    _gauges_match_reports(store, metrics)
    assert any(s.value < 2 for family in metrics.registry.collect() for s in family.samples if s.name == "tfleet_controller_replicas_ready")
    store.txn([], [Delete(KS.model("m00001"))])
    _until_quiet(store, reconciler)
    assert KS.modelstatus("m00001") not in store.items
    _gauges_match_reports(store, metrics)
