"""The dashboard in a real browser: an etcdctl write shows up on the open page, without a reload.

A small fleet runs in this process (simulators, agents, one controller serving the dashboard);
Debian's chromium, driven by Playwright, opens the page. Playwright never downloads a browser
here: without /usr/bin/chromium (scripts/ensure-system-deps installs it) the test skips.
"""

from __future__ import annotations

import json
import pathlib
import threading
import urllib.error
import urllib.request

import pytest

from tests.helpers import wait_until
from tests.integration.agent_harness import stop_running
from tests.integration.controller_harness import ControlledFleet, add_host, start_controller
from tfleet import logs
from tfleet.controller.app import Controller
from tfleet.controller.dashboard import Dashboard
from tfleet.controller.settings import ControllerSettings
from tfleet.etcd_local import free_port
from tfleet.keyspace import Keyspace
from tfleet.sim.fixtures import make_model
from tfleet.store import EtcdSettings, EtcdStore

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture
def sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure-system-deps installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}); install the test extra")
    return sync_playwright


@pytest.fixture
def dashboard_fleet(store, prefix, etcd_server, sim_factory, tmp_path):
    fleet = ControlledFleet(store, prefix)
    for name, zone in (("h1", "a"), ("h2", "b")):
        add_host(fleet, name, sim_factory, etcd_server.client_url, prefix, tmp_path, labels={"zone": zone})
    running = start_controller("c1", etcd_server.client_url, prefix, dashboard_port=free_port(), dashboard_host="127.0.0.1")
    fleet.controller = running.controller
    yield fleet
    stop_running(running, *fleet.agents.values())


def api_state(url: str) -> dict:
    with urllib.request.urlopen(url + "api/state", timeout=5) as response:
        return json.loads(response.read())


def test_page_shows_an_etcdctl_write_live(dashboard_fleet, etcd_server, sync_playwright, tmp_path) -> None:
    fleet = dashboard_fleet
    ks = fleet.keyspace
    url = fleet.controller.dashboard.url
    models = tmp_path / "models"
    make_model(models, "resnet", [1, 2], load_seconds=0.3)
    wait_until(lambda: fleet.controller.election.is_leader, 15, message="controller c1 leads")
    wait_until(lambda: len(api_state(url)["hosts"]) == 2, 15, message="dashboard state lists both hosts")
    leader = json.loads(fleet.store.get(ks.leader()).value)
    assert leader["dashboard_address"] == fleet.controller.dashboard.advertised_address

    errors: list[str] = []
    navigations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
            page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(frame.url))
            page.goto(url)
            page.wait_for_selector("#live.live", timeout=15_000)
            page.wait_for_selector('#grid thead th[data-host="h2"]', timeout=15_000)
            load_id = page.evaluate("window.tfleetDashboard.loadId")
            updates_before = page.evaluate("window.tfleetDashboard.updates")
            assert page.locator('#grid td[data-model="resnet"]').count() == 0

            # operator actions, with etcdctl, while the page stays open
            etcd_server.etcdctl(
                "put",
                ks.model("resnet"),
                json.dumps(
                    {
                        "base_path": str(models / "resnet"),
                        "model_version_policy": {"specific": {"versions": [1]}},
                        "version_labels": {"stable": 1},
                        "replicas": 2,
                        "spread_by": "zone",
                        "owner": "vision-team",
                        "description": "image classifier",
                    }
                ),
            )
            etcd_server.etcdctl("put", ks.model("giant"), json.dumps({"base_path": str(models / "resnet"), "memory_mb": 100_000}))

            # the model becomes AVAILABLE on both replicas, on the open page
            page.wait_for_function(
                '() => document.querySelectorAll(\'#grid td[data-model="resnet"] .chip[data-version="1"][data-state="AVAILABLE"]\').length === 2',
                timeout=30_000,
            )
            page.wait_for_selector('#grid th[data-model="resnet"] [data-ready="2/2"]', timeout=15_000)
            # a cordon keeps the replica where it is (no new ones): the host column says so
            etcd_server.etcdctl("put", ks.hostctl("h2"), json.dumps({"cordoned": True, "reason": "kernel upgrade tonight"}))
            page.wait_for_selector('#grid thead th[data-host="h2"].cordoned', timeout=15_000)
            page.wait_for_selector('#errors li[data-kind="placement"]', timeout=15_000)
            assert "giant" in page.inner_text("#errors")

            # the model's history, one click away
            page.click('#grid th[data-model="resnet"] .modelbtn')
            page.wait_for_selector('#history li[data-sequence="1"]', timeout=15_000)
            assert "create" in page.inner_text("#history")
            assert "vision-team" in page.inner_text("#detail")

            # no reload: the same page object, one navigation, pushed updates
            assert page.evaluate("window.tfleetDashboard.loadId") == load_id
            assert page.evaluate("window.tfleetDashboard.updates") > updates_before
            assert page.evaluate("window.tfleetDashboard.patches") > 0  # changes came as patches, not whole states
            assert navigations == [url], navigations
            assert "AVAILABLE" in page.inner_text('#grid tr[data-model="resnet"]')

            # the state the page built from patches is the server's state
            def same_as_server() -> bool:
                mine = page.evaluate("JSON.stringify(window.tfleetDashboard.state)")
                return json.loads(mine) == api_state(url)

            wait_until(same_as_server, 10, interval=0.2, message="page state (full state + patches) equals /api/state")

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors

    state = api_state(url)
    resnet = next(m for m in state["models"] if m["name"] == "resnet")
    assert resnet["ready_replicas"] == 2 and resnet["available"] == {"1": 2}
    assert {h for h, cell in state["cells"]["resnet"].items() if cell["versions"].get("1", {}).get("state") == "AVAILABLE"} == {"h1", "h2"}


def test_dashboard_is_read_only_and_stops_with_the_controller(dashboard_fleet) -> None:
    controller: Controller = dashboard_fleet.controller
    url = controller.dashboard.url
    wait_until(lambda: api_state(url)["dashboard"]["loaded"], 15, message="dashboard read etcd")
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(url + "api/state", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 405
    # a browser that goes away is forgotten; an open live stream does not hold the controller up
    gone = urllib.request.urlopen(url + "api/events", timeout=10)
    stream = urllib.request.urlopen(url + "api/events", timeout=10)
    assert stream.readline() == b"retry: 2000\n"
    assert stream.readline() == b"\n" and stream.readline() == b"event: state\n" and stream.readline().startswith(b"data: {")
    wait_until(lambda: controller.dashboard._broadcaster.subscribers == 2, 5, message="two streams open")
    gone.close()
    wait_until(lambda: controller.dashboard._broadcaster.subscribers == 1, 5, message="closed stream forgotten")
    controller.stop()
    assert controller.wait_stopped(10)
    assert not any(t.name.startswith("dashboard-") for t in threading.enumerate())
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "api/state", timeout=2)
    stream.close()


def test_every_dashboard_response_carries_the_security_headers(dashboard_fleet) -> None:
    """Issue 8: no X-Frame-Options before; the page shows strings anyone with etcdctl writes."""
    url = dashboard_fleet.controller.dashboard.url
    wait_until(lambda: api_state(url)["dashboard"]["loaded"], 15, message="dashboard read etcd")
    responses = []
    for path in ("", "dashboard.js", "api/state", "api/history/none", "api/events"):
        response = urllib.request.urlopen(url + path, timeout=10)
        responses.append((path, response.headers))
        response.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "no-such-page", timeout=5)
    responses.append(("no-such-page", missing.value.headers))
    for path, headers in responses:
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "default-src 'none'" in policy, path
    # loopback unless a deployment says otherwise (the dashboard has no login)
    assert ControllerSettings(id="c1", etcd=EtcdSettings(endpoints=("http://127.0.0.1:2379",)), http_port=0).dashboard_host == "127.0.0.1"


def test_dashboard_reports_etcd_outage_and_recovers(etcd_factory) -> None:
    etcd = etcd_factory()
    ks = Keyspace("/outage")
    store = EtcdStore(EtcdSettings((etcd.client_url,), call_timeout=0.5))
    dashboard = Dashboard(store, ks, "127.0.0.1", 0, controller_id="c9", log=logs.get("dashboard"))
    dashboard.start()
    try:
        url = dashboard.url
        wait_until(lambda: api_state(url)["dashboard"]["loaded"], 15, message="dashboard read etcd")
        etcd.etcdctl("put", ks.hostctl("h1"), json.dumps({"cordoned": True}))
        wait_until(lambda: [h["cordoned"] for h in api_state(url)["hosts"]] == [True], 10, message="change seen through the watch")
        etcd.stop()
        down = wait_until(lambda: (s := api_state(url))["dashboard"]["etcd_error"] and s, 30, message="outage reported")
        assert [h["name"] for h in down["hosts"]] == ["h1"]  # the last state read stays on the page
        etcd.start()
        wait_until(lambda: api_state(url)["dashboard"]["etcd_error"] is None, 30, message="recovery reported")
        etcd.etcdctl("put", ks.hostctl("h1"), json.dumps({"draining": True}))
        wait_until(lambda: [h["draining"] for h in api_state(url)["hosts"]] == [True], 15, message="watch resumed after the outage")
    finally:
        dashboard.stop()
        store.close()
