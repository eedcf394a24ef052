"""SimServer: the whole simulated tensorflow_model_server in one object.

It wires the parts together (manager, file-system source, core, gRPC servicers, REST app,
metrics, background threads) and owns their lifecycle. Tests of the agent run it
in-process; `tfleet tfs-sim` runs it as a process. Each instance has its own metrics
registry and its own threads, so several can run side by side.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import structlog

from tfleet.logs import Logger
from tfleet.sim.core import SimCore
from tfleet.sim.faults import Faults
from tfleet.sim.grpc_services import ModelService, PredictionService
from tfleet.sim.manager import ModelManager
from tfleet.sim.metrics import SimMetrics
from tfleet.sim.rest import RestApi, RestServer
from tfleet.sim.runtime import ManagerLoop, Poller
from tfleet.sim.source import FileSystemSource
from tfleet.sim.status import Status
from tfleet.tfs.pb import model_service_pb2_grpc, prediction_service_pb2_grpc
from tfleet.tfs.types import VersionState

# Reloads that hang (a missing base_path) each hold a gRPC thread until they finish; a large
# pool keeps GetModelStatus and Predict answering meanwhile. Threads are created on demand.
_GRPC_THREADS = 128


@dataclass(frozen=True)
class _Options:
    """The flags of one server process, kept to build its parts again on a restart."""

    max_load_retries: int
    load_retry_interval: float
    num_load_threads: int
    poll_wait_seconds: float
    allow_labels_for_unavailable: bool


class SimServer:
    def __init__(
        self,
        grpc_port: int = 0,
        rest_port: int = 0,
        poll_wait_seconds: float = 1.0,
        load_retry_interval: float = 60.0,
        max_load_retries: int = 5,
        allow_labels_for_unavailable: bool = False,
        *,
        host: str = "127.0.0.1",
        num_load_threads: int = 0,
        logger: Logger | None = None,
    ) -> None:
        self.host = host
        self._grpc_port, self._rest_port = grpc_port, rest_port
        self._log: Logger = logger if logger is not None else structlog.get_logger("tfleet.sim").bind(component="tfs-sim")
        self._options = _Options(max_load_retries, load_retry_interval, num_load_threads, poll_wait_seconds, allow_labels_for_unavailable)
        self._stop_lock = threading.Lock()
        self._loads: dict[tuple[str, int], int] = {}
        self._loads_lock = threading.Lock()
        self._build()

    def _build(self) -> None:
        """Every part of one server process, fresh: no model, no label, no fault."""
        o = self._options
        self.metrics = SimMetrics()
        self.faults = Faults()
        self.manager = ModelManager(
            max_load_retries=o.max_load_retries,
            load_retry_interval=o.load_retry_interval,
            num_load_threads=o.num_load_threads,
            on_event=self._on_version_event,
            on_attempt=self._on_attempt,
        )
        self.source = FileSystemSource(self.manager.set_aspired, on_problem=self._on_source_problem)
        self.core = SimCore(
            self.manager,
            self.source,
            allow_labels_for_unavailable=o.allow_labels_for_unavailable,
            on_reload=self._on_reload,
            faults=self.faults,
        )
        self.metrics.watch(self.manager.all_states, self.manager.served_versions)
        self._loop = ManagerLoop(self.manager)
        self._poller = Poller(self.source, o.poll_wait_seconds)
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._stopped = threading.Event()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> SimServer:
        server = grpc.server(ThreadPoolExecutor(_GRPC_THREADS, "sim-grpc"))
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.core), server)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(self.core, self.metrics), server)
        bound = server.add_insecure_port(f"{self.host}:{self._grpc_port}")
        if bound == 0:
            raise OSError(f"cannot bind the gRPC port {self.host}:{self._grpc_port}")
        self._grpc_port = bound
        self._rest = RestServer(RestApi(self.core, self.metrics), self.host, self._rest_port)
        self._rest_port = self._rest.port
        self._grpc = server
        server.start()
        self._rest.start()
        self._loop.start()
        self._poller.start()
        self._log.info("sim_started", grpc_address=self.grpc_address, rest_address=self.rest_address)
        return self

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def rest_port(self) -> int:
        return self._rest_port

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self._grpc_port}"

    @property
    def rest_address(self) -> str:
        return f"{self.host}:{self._rest_port}"

    def load_count(self, model: str, version: int) -> int:
        """How many times this version started loading (retries of one load count once).

        Lets a test prove that something was NOT reloaded, which no TF Serving API shows.
        """
        with self._loads_lock:
            return self._loads.get((model, version), 0)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving. Hanging reloads and load retries are interrupted, not waited for."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self.faults.release()  # held (frozen) requests fail instead of blocking the stop
            done = self._grpc.stop(grace) if self._grpc is not None else None
            self.manager.stop()  # releases reloads blocked in wait_models
            self._poller.stop()
            self._loop.stop()
            if self._rest is not None:
                self._rest.stop()
            if done is not None:
                done.wait((grace or 0) + 5.0)
            self._stopped.set()
            self._log.info("sim_stopped", grpc_address=self.grpc_address)

    def restart(self) -> SimServer:
        """Restart empty, as a real tensorflow_model_server restarted by its supervisor: the
        process goes away (clients see UNAVAILABLE), then serves again on the same ports with
        no model, no label and no fault: it has forgotten every config it was sent."""
        self.stop(0)
        self._log.info("sim_restarting", grpc_address=self.grpc_address)
        self._build()
        return self.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished; False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(0)

    # ----------------------------------------------------------------- hooks: logs and metrics
    def _on_reload(self, status: Status, models: list[str], new: list[str], seconds: float) -> None:
        self.metrics.reloads.labels(status.code_name).inc()
        log = self._log.info if status.ok else self._log.warning
        log(
            "reload",
            outcome=status.code_name,
            message=status.message,
            models=models,
            new_models=new,
            duration_s=round(seconds, 3),
        )

    def _on_attempt(self, model: str, version: int, status: Status) -> None:
        self.metrics.load_attempts.labels(model, str(version), status.code_name).inc()
        if not status.ok:
            self._log.warning("load_attempt_failed", model=model, version=version, error=str(status))

    def _on_version_event(self, model: str, version: int, state: VersionState, status: Status) -> None:
        if state is VersionState.LOADING:
            with self._loads_lock:
                self._loads[(model, version)] = self._loads.get((model, version), 0) + 1
        elif state is VersionState.AVAILABLE:
            self._log.info("version_available", model=model, version=version)
        elif state is VersionState.END:
            event = "version_unloaded" if status.ok else "version_failed"
            self._log.info(event, model=model, version=version, error=str(status) if not status.ok else "")

    def _on_source_problem(self, message: str) -> None:
        self._log.warning("file_system_poll", problem=message)
