"""TfleetClient against real simulators and the session etcd, with hand-written route tables."""

from __future__ import annotations

import pathlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.helpers import FakeClock, wait_until
from tfleet import schema
from tfleet.client import NoRoute, PredictFailed, TfleetClient
from tfleet.keyspace import Keyspace
from tfleet.schema import RouteTable
from tfleet.sim.fixtures import make_model
from tfleet.sim.server import SimServer
from tfleet.tfs.client import TfsClient
from tfleet.tfs.pb import predict_pb2
from tfleet.tfs.types import ModelConfigSpec, VersionPolicy

NOW = schema.utc_now()


def load(sim: SimServer, base: pathlib.Path, labels: dict[str, int] | None = None) -> None:
    """Serve model m version 1 (y = 2x + 1) on sim, straight through TF Serving's API."""
    spec = ModelConfigSpec("m", str(base / "m"), model_version_policy=VersionPolicy("specific", versions=(1,)))
    with TfsClient(sim.grpc_address) as tfs:
        tfs.reload_config([spec], timeout=10)
        if labels:  # a label needs its version AVAILABLE first
            tfs.reload_config(
                [ModelConfigSpec(spec.name, spec.base_path, model_version_policy=spec.model_version_policy, version_labels=tuple(sorted(labels.items())))],
                timeout=10,
            )


def served(sim: SimServer) -> int:
    """Predict requests of model m this simulator answered."""
    value = sim.metrics.registry.get_sample_value("tensorflow_serving_request_count_total", {"model_name": "m", "status": "OK", "entrypoint": "GRPC"})
    return int(value or 0)


def endpoint(name: str, sim_or_address: SimServer | str) -> dict:
    if isinstance(sim_or_address, SimServer):
        return {"host": name, "grpc_address": sim_or_address.grpc_address, "rest_address": sim_or_address.rest_address}
    return {"host": name, "grpc_address": sim_or_address, "rest_address": sim_or_address}


class Routes:
    def __init__(self, store, prefix: str) -> None:
        self.store = store
        self.ks = Keyspace(prefix.rstrip("/"))

    def put(self, endpoints: list[dict], versions: dict | None = None, labels: dict | None = None) -> None:
        table = RouteTable(model="m", endpoints=endpoints, versions=versions or {"1": endpoints}, labels=labels or {}, updated_at=NOW)
        self.store.put(self.ks.routes("m"), schema.encode(table))

    def delete(self) -> None:
        self.store.delete(self.ks.routes("m"))


@pytest.fixture
def models(tmp_path: pathlib.Path) -> pathlib.Path:
    make_model(tmp_path / "models", "m", [1], scale=2.0, bias=1.0)
    return tmp_path / "models"


@pytest.fixture
def two_sims(sim_factory, models) -> tuple[SimServer, SimServer]:
    a, b = sim_factory(), sim_factory()
    load(a, models)
    load(b, models)
    return a, b


@pytest.fixture
def routes(store, prefix) -> Routes:
    return Routes(store, prefix)


@pytest.fixture
def make_client(store, prefix) -> Iterator:
    made: list[TfleetClient] = []

    def make(**kwargs) -> TfleetClient:
        client = TfleetClient(store, prefix=prefix.rstrip("/"), model="m", **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def hosts_of(client: TfleetClient) -> list[str]:
    return [e.host for e in client.endpoints()]


def test_requests_alternate_between_the_endpoints(two_sims, routes, make_client) -> None:
    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    client = make_client()
    assert hosts_of(client) == ["a", "b"]
    order = []
    for _ in range(6):
        before = (served(a), served(b))
        reply = client.predict({"x": [1.0, 2.0]})
        assert list(reply.outputs["y"].float_val) == [3.0, 5.0]
        after = (served(a), served(b))
        order.append("a" if after[0] > before[0] else "b")
        assert sum(after) == sum(before) + 1
    assert order in (["a", "b"] * 3, ["b", "a"] * 3)


def test_a_stopped_host_is_skipped_and_cools_down(two_sims, routes, make_client) -> None:
    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    clock = FakeClock()
    client = make_client(clock=clock, cooldown=5.0)
    client.predict({"x": [1.0]})
    a.stop(0)
    b_before = served(b)
    for _ in range(6):
        assert list(client.predict({"x": [1.0]}).outputs["y"].float_val) == [3.0]
    assert served(b) == b_before + 6
    state = {e.host: e for e in client.endpoints()}
    assert not state["a"].healthy and state["a"].failures == 1  # tried once, then left alone while cooling
    assert state["b"].healthy
    requests_to_a = state["a"].requests

    clock.now += 5.1  # cool-down over: a gets its turn again (and fails over again)
    for _ in range(2):
        client.predict({"x": [1.0]})
    state = {e.host: e for e in client.endpoints()}
    assert state["a"].requests == requests_to_a + 1 and state["a"].failures == 2


def test_every_endpoint_down_fails_after_trying_each_once(two_sims, routes, make_client) -> None:
    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    client = make_client()
    a.stop(0)
    b.stop(0)
    with pytest.raises(PredictFailed) as failure:
        client.predict({"x": [1.0]}, timeout=5)
    assert sorted(attempt.host for attempt in failure.value.attempts) == ["a", "b"]
    assert failure.value.code is not None and failure.value.code.name == "UNAVAILABLE"
    assert "model 'm'" in str(failure.value)


def test_a_server_error_is_not_retried(two_sims, routes, make_client) -> None:
    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    client = make_client()
    before = served(a) + served(b)
    with pytest.raises(PredictFailed) as failure:
        client.predict({"wrong_input": [1.0]})
    assert failure.value.code.name == "INVALID_ARGUMENT" and len(failure.value.attempts) == 1
    assert served(a) + served(b) == before


def test_a_host_that_never_completes_the_connection_is_skipped(two_sims, routes, make_client) -> None:
    """TCP accepts (kernel backlog) but no HTTP/2 handshake ever comes: a connect failure, not a slow server."""
    a, _ = two_sims
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        routes.put([endpoint("a", a), endpoint("z-silent", address)])
        client = make_client(connect_timeout=0.5)
        started = time.monotonic()
        for _ in range(4):
            assert list(client.predict({"x": [0.0]}, timeout=5).outputs["y"].float_val) == [1.0]
        assert time.monotonic() - started < 4
        state = {e.host: e for e in client.endpoints()}
        assert not state["z-silent"].healthy and state["z-silent"].requests == 0
    finally:
        silent.close()


def test_the_client_follows_route_changes(two_sims, routes, make_client, sim_factory, models) -> None:
    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    client = make_client()
    c = sim_factory()
    load(c, models)
    routes.put([endpoint("c", c)])
    wait_until(lambda: hosts_of(client) == ["c"], 10, message="the client saw the new table")
    before = (served(a), served(b), served(c))
    for _ in range(3):
        client.predict({"x": [1.0]})
    assert (served(a), served(b), served(c)) == (before[0], before[1], before[2] + 3)

    routes.delete()
    wait_until(lambda: hosts_of(client) == [], 10, message="the client saw the table go")
    with pytest.raises(NoRoute, match="no route table"):
        client.predict({"x": [1.0]})
    routes.put([endpoint("b", b)])
    wait_until(lambda: hosts_of(client) == ["b"], 10, message="the client saw the table come back")
    client.predict({"x": [1.0]})


def test_version_and_label_select_their_endpoints(sim_factory, models, routes, make_client) -> None:
    a, b = sim_factory(), sim_factory()
    load(a, models)
    load(b, models, labels={"stable": 1})
    routes.put([endpoint("a", a), endpoint("b", b)], versions={"1": [endpoint("a", a)]}, labels={"stable": [endpoint("b", b)]})
    by_version = make_client(version=1)
    by_label = make_client(label="stable")
    assert hosts_of(by_version) == ["a"] and hosts_of(by_label) == ["b"]
    for _ in range(2):
        reply = by_version.predict({"x": [1.0]})
        assert reply.model_spec.version.value == 1
    assert (served(a), served(b)) == (2, 0)
    request = predict_pb2.PredictRequest()
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].float_val.append(4.0)
    assert list(by_label.predict(request).outputs["y"].float_val) == [9.0]
    assert (served(a), served(b)) == (2, 1)
    with pytest.raises(NoRoute, match="label 'canary'"):
        make_client(label="canary").predict({"x": [1.0]})


def test_construction_with_settings_owns_its_store(etcd_server, two_sims, routes, prefix) -> None:
    from tfleet.store import EtcdSettings

    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    with TfleetClient(EtcdSettings((etcd_server.client_url,)), prefix=prefix.rstrip("/"), model="m") as client:
        assert list(client.predict({"x": [2.0]}).outputs["y"].float_val) == [5.0]


def test_concurrent_calls_while_the_routes_change(two_sims, routes, make_client) -> None:
    """Channels leave and join the table under running calls: no call fails, none is lost."""
    import threading

    a, b = two_sims
    routes.put([endpoint("a", a), endpoint("b", b)])
    client = make_client()
    errors: list[BaseException] = []
    done = threading.Event()
    counts = [0] * 4

    def caller(index: int) -> None:
        while not done.is_set():
            try:
                client.predict({"x": [1.0]}, timeout=5)
                counts[index] += 1
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
                return

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for table in ([endpoint("a", a)], [endpoint("b", b)], [endpoint("a", a), endpoint("b", b)], [endpoint("b", b)]) * 2:
            routes.put(table)
            wait_until(lambda table=table: hosts_of(client) == sorted(e["host"] for e in table), 10, message="the client saw the table")
            time.sleep(0.1)
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
    assert not errors, errors
    assert all(count > 0 for count in counts)
    assert served(a) + served(b) == sum(counts)
