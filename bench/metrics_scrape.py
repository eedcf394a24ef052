"""What one Prometheus scrape of the controller costs its interpreter, at M models.

    python -m bench.metrics_scrape [--models 100000] [--rounds 3]

The controller's real metrics (controller/metrics.py) with every per-model gauge set as a
converged fleet sets them (replicas wanted and ready, one rollout phase per model: 3 x M
series), written as /metrics writes them (tfleet/exposition.generate) and as
prometheus_client's ``generate_latest`` writes them (what /metrics did before), each
``--rounds`` times: CPU seconds of the fastest round, the answer's size, and whether the
two texts are the same bytes. The controller runs its passes in the same interpreter, so
every second a scrape takes is a second a pass waits (bench/scale scrapes it every 15 s,
as deploy/prometheus does).
"""

from __future__ import annotations

import argparse
import json
import time

from prometheus_client import generate_latest

from tfleet.controller.metrics import ControllerMetrics
from tfleet.exposition import generate


def fleet_metrics(models: int) -> ControllerMetrics:
    metrics = ControllerMetrics()
    names = [f"model-{i:06d}" for i in range(models)]
    metrics.replicas_wanted.update({(m,): 2 for m in names})
    metrics.replicas_ready.update({(m,): 2 if i % 50 else 1 for i, m in enumerate(names)})
    metrics.rollout_phase.update({(m, "stable" if i % 100 else "adding"): 1 for i, m in enumerate(names)})
    metrics.reconcile_seconds.observe(0.4)
    metrics.writes.labels("assignment", "put").inc(2 * models)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    metrics = fleet_metrics(options.models)
    result: dict[str, object] = {"models": options.models, "series": 3 * options.models}
    texts = {}
    for name, render in (("generate_latest", generate_latest), ("exposition.generate", generate)):
        times = []
        for _ in range(options.rounds):
            started = time.thread_time()
            texts[name] = render(metrics.registry)
            times.append(time.thread_time() - started)
        result[name] = {"cpu_s": round(min(times), 3), "mb": round(len(texts[name]) / 1024**2, 1)}
        print(f"{name:20s} {min(times):.3f} s CPU (best of {options.rounds}), {len(texts[name]) / 1024**2:.1f} MB", flush=True)
    result["same_bytes"] = texts["generate_latest"] == texts["exposition.generate"]
    print(f"same bytes: {result['same_bytes']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
