"""bench/scale_parts.py's probes of the controller: the Prometheus-like scraper, one sample of
/metrics, and the wait for the mass write's backlog."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.scale_parts import Scraper, controller_sample, controller_txns, wait_quiet

BODY = (
    b'# HELP tfleet_controller_history_lag_revisions lag\ntfleet_controller_history_lag_revisions 7.0\nother_metric{a="b"} 1.0\n'
    b"tfleet_controller_write_txn_duration_seconds_count 12.0\ntfleet_controller_write_txn_duration_seconds_sum 0.5\n"
)


@pytest.fixture
def metrics_url():
    hits: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", hits
    finally:
        server.shutdown()
        server.server_close()


def test_the_scraper_gets_metrics_every_interval_until_stopped(metrics_url) -> None:
    url, hits = metrics_url
    scraper = Scraper(url, 0.05)
    deadline = time.monotonic() + 20
    while len(hits) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = scraper.stop()
    assert summary["scrapes"] >= 3 and summary["errors"] == 0 and summary["mean_s"] is not None
    count = len(hits)
    time.sleep(0.2)
    assert len(hits) == count, "a stopped scraper scraped again"
    assert Scraper(url, 0).stop()["scrapes"] == 0  # (0: no scraping at all)


def test_one_sample_is_read_by_its_exact_name(metrics_url) -> None:
    url, _ = metrics_url
    assert controller_sample(url, "tfleet_controller_history_lag_revisions") == 7.0
    assert controller_sample(url, "tfleet_controller_history_lag") is None  # (a prefix is not the name)
    assert controller_sample("http://127.0.0.1:9/metrics", "x") is None  # (no answer)


def test_the_transaction_histogram_is_read_in_one_scrape(metrics_url) -> None:
    """Each read is a whole /metrics answer (~17 MB at 100,000 models): count and sum from one."""
    url, hits = metrics_url
    before = len(hits)
    assert controller_txns(url) == {"count": 12.0, "sum": 0.5}
    assert len(hits) == before + 1
    assert controller_txns("http://127.0.0.1:9/metrics") == {"count": 0.0, "sum": 0.0}


class _Counters:
    def __init__(self, writes: list[float]) -> None:
        self.writes = iter(writes)

    def read(self) -> dict[str, float]:
        return {"etcd_mvcc_put_total": next(self.writes), "etcd_mvcc_txn_total": 0.0}


def test_the_backlog_waits_for_a_quiet_etcd_and_for_the_history_recorder() -> None:
    # etcd quiet from the second window on; the recorder behind until the fourth check
    lags = iter([30.0, 12.0, 0.0])
    waited = wait_quiet(_Counters([0, 100, 101, 101, 101, 101]), timeout=30, window=0.01, behind=lambda: next(lags))
    assert waited >= 0.04  # (four windows: one busy, two quiet but behind, one quiet and caught up)
    # without the lag, the first quiet window ends the wait
    assert wait_quiet(_Counters([0, 100, 101]), timeout=30, window=0.01) < 5
