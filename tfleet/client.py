"""A Python client that sends Predict requests straight to the hosts serving a model.

``TfleetClient`` keeps the model's route table (``<prefix>/routes/<model>``) fresh through an
etcd watch, picks an endpoint per request round-robin, and fails over::

    from tfleet.client import TfleetClient
    from tfleet.store import EtcdSettings

    with TfleetClient(EtcdSettings(("http://etcd:2379",)), model="resnet", label="stable") as client:
        reply = client.predict({"x": [1.0, 2.0]}, timeout=5.0)
        print(list(reply.outputs["y"].float_val))

Failover rules (docs/routing.md):

* UNAVAILABLE (host down, connection refused or reset), or a connection that could not be
  made within ``connect_timeout``: the endpoint is marked unhealthy for ``cooldown`` seconds
  and the request goes to the next endpoint. Every endpoint is tried at most once per call,
  and all attempts share the call's ``timeout``.
* NOT_FOUND: the route table lags the host by a moment (the version or label moved away);
  the next endpoint is tried, and the host is not marked unhealthy.
* Any other error (INVALID_ARGUMENT, a DEADLINE_EXCEEDED of a request that reached a
  server, ...) is the server's answer and is raised at once: retrying would not help, or
  could run a slow request twice.
* Unhealthy endpoints are tried last, when every healthy one failed: better a second chance
  than a certain failure.

Time, the gRPC channels and the store are passed in; there is no module-level state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from tfleet.keyspace import Keyspace, validate_name
from tfleet.routing import parse_route_table
from tfleet.schema import RouteEndpoint, RouteTable, SchemaError
from tfleet.tfs.pb import predict_pb2, prediction_service_pb2_grpc, tensorflow_types_pb2

if TYPE_CHECKING:  # the store is imported when a client is made (below), not with this module
    from tfleet.ports import Store, WatchHandle
    from tfleet.store import EtcdSettings, Snapshot, WatchEvent

# Reconnect quickly after a host restarts (gRPC's default backoff grows to 120 s).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
_CONNECTED = grpc.ChannelConnectivity.READY
# grpc's connectivity poller thread (behind subscribe) looks at the channel every 0.2 s until it
# notices that nobody is subscribed; closing the channel before that makes it raise in its thread.
_POLLER_GRACE = 0.3
_SETTLED = frozenset({grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN})


def default_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)


class TfleetClientError(Exception):
    """A request could not be answered; the message names the model, selection and hosts."""


class NoRoute(TfleetClientError):
    """The route table lists no endpoint for the model (and version or label) asked for."""


@dataclass(frozen=True)
class Attempt:
    host: str
    address: str
    code: grpc.StatusCode | None  # None: the connection could not be made in time
    details: str


class PredictFailed(TfleetClientError):
    """Every endpoint tried failed, or one gave an answer that retrying cannot change."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)

    @property
    def code(self) -> grpc.StatusCode | None:
        """The gRPC status of the last attempt (None when it could not connect)."""
        return self.attempts[-1].code if self.attempts else None


@dataclass(frozen=True)
class EndpointState:
    """One endpoint of the current selection, as the client sees it."""

    host: str
    grpc_address: str
    healthy: bool
    cooling_until: float | None  # clock time when an unhealthy endpoint is preferred again
    requests: int  # requests sent to it
    failures: int  # failures that marked it unhealthy


class _Connection:
    """The channel of one endpoint, its connectivity, health, and how many calls use it."""

    def __init__(self, endpoint: RouteEndpoint, channel: grpc.Channel) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.state: grpc.ChannelConnectivity | None = None
        self.changed = threading.Condition()
        self.cooling_until: float | None = None
        self.requests = 0
        self.failures = 0
        self.users = 0
        self.retired = False
        channel.subscribe(self._on_state, try_to_connect=True)  # connect before the first request

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        with self.changed:
            self.state = state
            self.changed.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """Wait until connected or failed (not still connecting); False on timeout.

        An idle channel (gRPC drops unused connections) is asked to connect first.
        """
        if self.state in _SETTLED:
            return True
        nudge = grpc.channel_ready_future(self.channel) if self.state in (None, grpc.ChannelConnectivity.IDLE) else None
        try:
            with self.changed:
                return self.changed.wait_for(lambda: self.state in _SETTLED, timeout)
        finally:
            if nudge is not None:
                nudge.cancel()

    def unsubscribe(self) -> None:
        try:
            self.channel.unsubscribe(self._on_state)
        except Exception:  # noqa: BLE001 (closing is best effort)
            pass

    def close_later(self) -> None:
        """Close once gRPC's connectivity poller has let go of the channel (see _POLLER_GRACE)."""
        self.unsubscribe()
        timer = threading.Timer(_POLLER_GRACE, self.channel.close)
        timer.daemon = True
        timer.start()


def float_request(
    model: str,
    inputs: Mapping[str, Sequence[float]],
    *,
    version: int | None = None,
    label: str | None = None,
    signature_name: str = "",
) -> predict_pb2.PredictRequest:
    """A PredictRequest with one 1-D DT_FLOAT tensor per input name."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label
    if signature_name:
        request.model_spec.signature_name = signature_name
    for name, values in inputs.items():
        tensor = request.inputs[name]
        tensor.dtype = tensorflow_types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=len(values))
        tensor.float_val.extend(float(v) for v in values)
    return request


class TfleetClient:
    """Predict requests for one model (optionally one version or label), spread over its hosts."""

    def __init__(
        self,
        etcd: EtcdSettings | Store,  # settings, or a store (EtcdStore) the caller keeps and closes
        *,
        prefix: str = "/tfleet",
        model: str,
        version: int | None = None,
        label: str | None = None,
        cooldown: float = 5.0,
        connect_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        channel_factory: Callable[[str], grpc.Channel] = default_channel,
        logger: logging.Logger | None = None,
    ) -> None:
        from tfleet.store import EtcdSettings, EtcdStore

        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise ValueError(f"version must be a non-negative integer, not {version!r}")
        if cooldown < 0 or connect_timeout <= 0:
            raise ValueError("cooldown must be >= 0 and connect_timeout > 0 (seconds)")
        self.model = validate_name("model", model)
        self.version = version
        self.label = label
        self._keyspace = Keyspace(prefix)
        self._key = self._keyspace.routes(model)
        self._cooldown = cooldown
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._channel_factory = channel_factory
        self._log = logger or logging.getLogger("tfleet.client")
        self._owns_store = isinstance(etcd, EtcdSettings)
        self._store: Store = EtcdStore(etcd) if isinstance(etcd, EtcdSettings) else etcd
        self._lock = threading.Lock()
        self._table: RouteTable | None = None
        self._connections: dict[str, _Connection] = {}  # grpc_address -> connection
        self._turn = 0
        self._closed = False
        self._watch: WatchHandle | None = None
        try:
            snapshot = self._store.list_prefix(self._key)
            self._apply_snapshot(snapshot)
            self._watch = self._store.watch_prefix(self._key, snapshot.revision + 1, on_events=self._on_events, on_reset=self._apply_snapshot)
        except BaseException:
            self.close()
            raise

    # -- the route table ------------------------------------------------------------------------
    def _selection(self) -> str:
        if self.version is not None:
            return f"model {self.model!r} version {self.version}"
        if self.label is not None:
            return f"model {self.model!r} label {self.label!r}"
        return f"model {self.model!r}"

    def _apply_snapshot(self, snapshot: Snapshot) -> None:
        kv = snapshot.get(self._key)
        self._apply(kv.value if kv is not None else None)

    def _on_events(self, events: Sequence[WatchEvent]) -> None:
        mine = [event for event in events if event.key == self._key]  # a prefix watch also sees <model>2
        if mine:
            last = mine[-1]
            self._apply(last.value if last.kind == "put" else None)

    def _apply(self, value: bytes | None) -> None:
        """Take a new stored value of the routes key (None: deleted) and reconcile channels."""
        if value is None:
            table = None
        else:
            try:
                table = parse_route_table(self._key, value, self._keyspace)
            except SchemaError as exc:
                self._log.warning("route table of %s unreadable, keeping the previous one: %s", self._selection(), exc)
                return
        with self._lock:
            if self._closed:
                return
            self._table = table
            wanted = {e.grpc_address: e for e in self._candidates_locked()}
            for address, connection in list(self._connections.items()):
                if address not in wanted:
                    del self._connections[address]
                    connection.retired = True
                    if connection.users == 0:
                        connection.close_later()
            for address, endpoint in wanted.items():
                existing = self._connections.get(address)
                if existing is None:
                    self._connections[address] = _Connection(endpoint, self._channel_factory(address))
                else:
                    existing.endpoint = endpoint  # the host name may change with the address kept
        self._log.info("routes of %s: %s", self._selection(), ", ".join(sorted(wanted)) or "no endpoint")

    def _candidates_locked(self) -> list[RouteEndpoint]:
        table = self._table
        if table is None:
            return []
        if self.version is not None:
            found = table.versions.get(str(self.version), [])
        elif self.label is not None:
            found = table.labels.get(self.label, [])
        else:
            found = table.endpoints
        unique = {e.grpc_address: e for e in found}  # one connection per address
        return sorted(unique.values(), key=lambda e: (e.host, e.grpc_address))

    def endpoints(self) -> list[EndpointState]:
        """The endpoints of the current selection, in routing order (by host)."""
        now = self._clock()
        with self._lock:
            result = []
            for endpoint in self._candidates_locked():
                connection = self._connections[endpoint.grpc_address]
                cooling = connection.cooling_until if connection.cooling_until and connection.cooling_until > now else None
                result.append(EndpointState(endpoint.host, endpoint.grpc_address, cooling is None, cooling, connection.requests, connection.failures))
            return result

    # -- requests --------------------------------------------------------------------------------
    def _plan(self) -> list[_Connection]:
        """This call's order of endpoints: healthy ones round-robin, then the cooling ones."""
        now = self._clock()
        with self._lock:
            connections = [self._connections[e.grpc_address] for e in self._candidates_locked()]
            if not connections:
                where = "has no route table (no live host serves it)" if self._table is None else "has no endpoint in its route table"
                raise NoRoute(f"{self._selection()} {where}: {self._key}")
            healthy = [c for c in connections if not c.cooling_until or c.cooling_until <= now]
            cooling = sorted((c for c in connections if c.cooling_until and c.cooling_until > now), key=lambda c: c.cooling_until or 0.0)
            if healthy:
                start = self._turn % len(healthy)
                healthy = healthy[start:] + healthy[:start]
            self._turn += 1
            for connection in connections:
                connection.users += 1
            return healthy + cooling

    def _release(self, connections: Sequence[_Connection]) -> None:
        with self._lock:
            for connection in connections:
                connection.users -= 1
                if connection.retired and connection.users == 0:
                    connection.close_later()

    def _mark(self, connection: _Connection, healthy: bool) -> None:
        with self._lock:
            if healthy:
                connection.cooling_until = None
            else:
                connection.failures += 1
                connection.cooling_until = self._clock() + self._cooldown

    def _request(self, inputs: Mapping[str, Sequence[float]] | predict_pb2.PredictRequest) -> predict_pb2.PredictRequest:
        if not isinstance(inputs, predict_pb2.PredictRequest):
            return float_request(self.model, inputs, version=self.version, label=self.label)
        request = predict_pb2.PredictRequest()
        request.CopyFrom(inputs)
        spec = request.model_spec
        if spec.name and spec.name != self.model:
            raise ValueError(f"the request names model {spec.name!r}, but this client routes {self._selection()}")
        spec.name = self.model
        choice = spec.WhichOneof("version_choice")
        if choice is None:
            if self.version is not None:
                spec.version.value = self.version
            elif self.label is not None:
                spec.version_label = self.label
        elif (choice == "version" and self.version is not None and spec.version.value != self.version) or (
            choice == "version_label" and self.label is not None and spec.version_label != self.label
        ):
            raise ValueError(f"the request's model_spec asks for another version than this client routes ({self._selection()})")
        return request

    def predict(self, inputs: Mapping[str, Sequence[float]] | predict_pb2.PredictRequest, timeout: float = 5.0) -> predict_pb2.PredictResponse:
        """Send one Predict, failing over as the module docstring says; ``timeout`` covers every attempt.

        ``inputs`` is {name: [float, ...]} (one 1-D DT_FLOAT tensor each) or a PredictRequest
        (its model name and version are filled in when missing). Raises NoRoute or PredictFailed.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        request = self._request(inputs)
        deadline = self._clock() + timeout
        plan = self._plan()
        attempts: list[Attempt] = []
        try:
            for connection in plan:
                endpoint = connection.endpoint
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                if not connection.wait_settled(min(self._connect_timeout, remaining)):
                    attempts.append(Attempt(endpoint.host, endpoint.grpc_address, None, f"no connection within {min(self._connect_timeout, remaining):.3g}s"))
                    self._mark(connection, healthy=False)
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                with self._lock:
                    connection.requests += 1
                try:
                    reply: predict_pb2.PredictResponse = connection.stub.Predict(request, timeout=remaining)
                except grpc.RpcError as err:
                    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
                    details = (err.details() if callable(getattr(err, "details", None)) else None) or str(err)
                    attempts.append(Attempt(endpoint.host, endpoint.grpc_address, code, details))
                    if code == grpc.StatusCode.UNAVAILABLE:
                        self._mark(connection, healthy=False)
                        continue
                    if code == grpc.StatusCode.NOT_FOUND:
                        continue  # stale route: the servable moved away a moment ago
                    raise PredictFailed(
                        f"Predict of {self._selection()} on host {endpoint.host!r} ({endpoint.grpc_address}) failed: {code.name}: {details}",
                        attempts,
                    ) from None
                self._mark(connection, healthy=True)
                return reply
        finally:
            self._release(plan)
        tried = "; ".join(f"{a.host} ({a.address}): {a.code.name if a.code else 'CONNECT'}: {a.details}" for a in attempts) or "none"
        untried = len(plan) - len(attempts)
        budget = f"; the {timeout:g}s timeout ran out with {untried} endpoint(s) untried" if untried else ""
        raise PredictFailed(f"Predict of {self._selection()} failed on every endpoint tried: {tried}{budget}", attempts)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the watch, close the channels, and the store when this client created it."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.unsubscribe()
        if connections:
            time.sleep(_POLLER_GRACE)
        for connection in connections:
            connection.channel.close()
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> TfleetClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = [
    "Attempt",
    "EndpointState",
    "NoRoute",
    "PredictFailed",
    "TfleetClient",
    "TfleetClientError",
    "default_channel",
    "float_request",
]
