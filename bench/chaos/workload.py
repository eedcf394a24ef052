"""The workload: a writer that keeps changing intents through the Registry (compare-and-swap),
recording every outcome, including "unknown" (etcd error: it may or may not have applied)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench.chaos.fleet import VERSIONS, Fleet, wait_until
from bench.chaos.invariants import Timeline, WriteRecord

EXTRA_LABEL = "prod"  # the second label a "labels" change toggles on and off


def intent_document(fleet: Fleet, model: str, version: int, replicas: int, extra_label: bool) -> dict[str, Any]:
    from tfleet.schema import ModelIntent

    labels = {"stable": version, **({EXTRA_LABEL: version} if extra_label else {})}
    intent = ModelIntent.model_validate(
        {
            "base_path": str(fleet.models_dir / model),
            "model_version_policy": {"specific": {"versions": [version]}},
            "version_labels": labels,
            "replicas": replicas,
            "memory_mb": 256,
            "owner": "chaos",
        }
    )
    return intent.model_dump(mode="json")


class Writer:
    """Keeps changing intents through the Registry (compare-and-swap), recording every outcome."""

    def __init__(self, fleet: Fleet, timeline: Timeline, seed: int, interval: tuple[float, float]) -> None:
        from tfleet.registry import Registry

        self.fleet = fleet
        self.timeline = timeline
        self.rng = random.Random(seed * 7919 + 1)
        self.interval = interval
        self.store = fleet.new_store()
        self.registry = Registry(self.store, fleet.keyspace)
        self.lock = threading.Lock()
        self.wanted: dict[str, dict[str, Any]] = {}
        self.highest: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-writer", daemon=True)

    def create_all(self) -> None:
        for model in self.fleet.models:
            document = intent_document(self.fleet, model, 1, 2, False)
            wait_until(lambda m=model, d=document: self.write(m, d) == "ok", 60, f"the intent of {model} to be written")

    def write(self, model: str, document: dict[str, Any]) -> str:
        from tfleet.registry import ConflictError
        from tfleet.schema import ModelIntent
        from tfleet.store import StoreError

        with self.lock:
            at = time.time()
            try:
                revision = self.registry.apply_intent(model, ModelIntent.model_validate(document), author="chaos-writer")
                outcome = "ok"
            except ConflictError:
                revision, outcome = 0, "conflict"
            except StoreError:
                revision, outcome = 0, "unknown"
            with self.timeline.lock:
                self.timeline.writes.append(WriteRecord(model, at, outcome, document, revision))
            if outcome != "conflict":
                self.wanted[model] = document
            return outcome

    def change(self, model: str, kind: str) -> str:
        current = self.wanted[model]
        version = current["model_version_policy"]["specific"]["versions"][0]
        replicas = current["replicas"]
        extra = EXTRA_LABEL in current["version_labels"]
        if kind == "version":
            if self.fleet.settings.writer_mode == "forward":
                self.highest[model] = min(self.highest.get(model, 1) + 1, len(self.fleet.versions))
                version = self.highest[model]
            else:
                version = self.rng.choice([v for v in VERSIONS if v != version])
        elif kind == "replicas":
            replicas = 5 - replicas  # 2 <-> 3
        else:
            extra = not extra
        return self.write(model, intent_document(self.fleet, model, version, replicas, extra))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.interval)):
            self.change(self.rng.choice(self.fleet.models), self.rng.choice(("version", "version", "replicas", "labels")))
