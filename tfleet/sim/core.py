"""The simulated ServerCore: config reloads, version labels, and request routing.

What a HandleReloadConfigRequest does here, in the real server's order (server_core.cc):

1. Take the server-wide reload lock and hold it until the end, waiting included: a second
   reload queues behind the first, however long that one hangs.
2. Reject a request without a model_config_list (INVALID_ARGUMENT), a model listed twice, a
   relative base_path, or a model whose platform changes (INVALID_ARGUMENT).
3. Check version labels against the CURRENT version states: each label must point at a
   version that is AVAILABLE now, else FAILED_PRECONDITION and nothing else changes (not the
   loaded models, not the labels). With allow_labels_for_unavailable, a label may point
   anywhere unless it already exists with another version. Hence a new version and its label
   always take two reloads.
4. Give the file-system source the new list (left-out models are un-aspired at once) and
   wait, with no timeout, until every NEWLY named model has a version that reached AVAILABLE
   or END since step 4 began. Models already configured are not waited for, even if their
   policy changed. A new model that ended in END fails the reload with UNKNOWN.

The simulator starts like a tensorflow_model_server given a --model_config_file with an empty
model_config_list: the file-system source polls from the start and no label is defined.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tfleet.sim.faults import Faults
from tfleet.sim.manager import ModelManager, MonitorEntry, ServedVersion
from tfleet.sim.source import FileSystemSource, ServableToMonitor
from tfleet.sim.status import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK_STATUS,
    SimError,
    Status,
)
from tfleet.tfs.pb import model_management_pb2, model_server_config_pb2
from tfleet.tfs.types import VersionPolicy, VersionState

SUPPORTED_PLATFORMS = ("tensorflow",)
_TENSORFLOW_MODEL_TYPE = 1

# on_reload(status, models, new_models, seconds): one call per reload outcome.
ReloadHook = Callable[[Status, list[str], list[str], float], None]


@dataclass(frozen=True)
class ModelEntry:
    """One ModelConfig of a reload, decoded."""

    name: str
    base_path: str
    model_platform: str
    model_type: int
    policy: VersionPolicy
    labels: dict[str, int] = field(default_factory=dict)

    def platform(self) -> str:
        """The platform as GetPlatform() derives it; SimError when the fields are invalid."""
        if self.model_type:
            if self.model_platform:
                raise SimError(
                    INVALID_ARGUMENT,
                    "Illegal setting both ModelServerConfig::model_type (deprecated) and ModelServerConfig::model_platform.",
                )
            if self.model_type != _TENSORFLOW_MODEL_TYPE:
                raise SimError(INVALID_ARGUMENT, f"ModelServerConfig::model_type choice {self.model_type} not supported.")
            return "tensorflow"
        if not self.model_platform:
            raise SimError(
                INVALID_ARGUMENT,
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform.",
            )
        return self.model_platform


def decode_policy(config: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=tuple(policy.specific.versions))
    num = policy.latest.num_versions if choice == "latest" else 1
    return VersionPolicy("latest", num_versions=max(num, 1))


def decode_models(request: model_management_pb2.ReloadConfigRequest) -> list[ModelEntry]:
    if not request.HasField("config") or request.config.WhichOneof("config") != "model_config_list":
        raise SimError(
            INVALID_ARGUMENT,
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
        )
    return [
        ModelEntry(c.name, c.base_path, c.model_platform, int(c.model_type), decode_policy(c), dict(c.version_labels))
        for c in request.config.model_config_list.config
    ]


class SimCore:
    def __init__(
        self,
        manager: ModelManager,
        source: FileSystemSource,
        *,
        allow_labels_for_unavailable: bool = False,
        on_reload: ReloadHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
    ) -> None:
        self._manager, self._source = manager, source
        self.faults = faults or Faults()
        self._allow_unavailable = allow_labels_for_unavailable
        self._on_reload, self._clock = on_reload, clock
        self._reload_lock = threading.Lock()
        self._config: list[ModelEntry] = []
        self._labels_lock = threading.Lock()
        self._labels: dict[str, dict[str, int]] = {}

    # ----------------------------------------------------------------- reload
    def reload(self, request: model_management_pb2.ReloadConfigRequest) -> Status:
        names: list[str] = []
        new: list[str] = []
        with self._reload_lock:
            started = self._clock()
            self.faults.delay_reload()
            try:
                models = decode_models(request)
                names = [m.name for m in models]
                new = sorted(set(names) - self._source.names())
                status = self._reload_locked(models, new)
            except SimError as err:
                status = err.status
            if self._on_reload is not None:
                self._on_reload(status, names, new, self._clock() - started)
        return status

    def _reload_locked(self, models: list[ModelEntry], new: list[str]) -> Status:
        seen: set[str] = set()
        for model in models:
            if model.name in seen:
                raise SimError(INVALID_ARGUMENT, f"Illegal to list model {model.name} multiple times in config list")
            seen.add(model.name)
        for model in models:
            if "://" not in model.base_path and not model.base_path.startswith("/"):
                raise SimError(
                    INVALID_ARGUMENT,
                    f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}",
                )
        old = {m.name: m for m in self._config}
        for model in models:
            if model.name in old:
                was, now = old[model.name].platform(), model.platform()
                if was != now:
                    raise SimError(
                        INVALID_ARGUMENT,
                        f"Illegal to change a model's platform. For model {model.name} platform was {was} and new platform requested is {now}",
                    )
        self._config = models
        self._update_labels(models)
        for model in models:
            platform = model.platform()
            if platform not in SUPPORTED_PLATFORMS:
                raise SimError(INVALID_ARGUMENT, f"Model {model.name} requests unsupported platform {platform}")
        since = self._manager.seq()
        self._source.update_config([ServableToMonitor(m.name, m.base_path, m.policy) for m in models])
        result = self._manager.wait_models(new, since)
        return OK_STATUS if result is None else result

    def _update_labels(self, models: list[ModelEntry]) -> None:
        new_map: dict[str, dict[str, int]] = {}
        for model in models:
            states = self._manager.version_states(model.name)
            for label, version in sorted(model.labels.items()):
                allowed = False
                if self._allow_unavailable:
                    existing = self.label_version(model.name, label)
                    allowed = existing is None or existing == version
                entry = states.get(version)
                if not allowed and (entry is None or entry.state is not VersionState.AVAILABLE):
                    raise SimError(
                        FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model.name}, which is not currently available for inference",
                    )
                new_map.setdefault(model.name, {})[label] = version
        with self._labels_lock:
            self._labels = new_map

    # ----------------------------------------------------------------- queries
    def label_version(self, model: str, label: str) -> int | None:
        with self._labels_lock:
            return self._labels.get(model, {}).get(label)

    def labels(self) -> dict[str, dict[str, int]]:
        with self._labels_lock:
            return {name: dict(labels) for name, labels in self._labels.items()}

    def resolve_version(self, model: str, version: int | None, label: str | None) -> int | None:
        """The version a request names (None: the latest); SimError for an unknown label."""
        if label is None:
            return version
        found = self.label_version(model, label)
        if found is None:
            raise SimError(INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        return found

    def servable(self, model: str, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The AVAILABLE version a Predict or GetModelMetadata request is routed to."""
        if not model:
            raise SimError(INVALID_ARGUMENT, "ModelSpec has no name specified.")
        wanted = self.resolve_version(model, version, label)
        served = self._manager.serving(model, wanted)
        if served is None:
            request = f"Latest({model})" if wanted is None else f"Specific({model}, {wanted})"
            raise SimError(NOT_FOUND, f"Servable not found for request: {request}")
        return served

    def model_status(self, model: str, version: int | None = None) -> list[tuple[int, MonitorEntry]]:
        """GetModelStatus: every version ever seen, or just `version`; NOT_FOUND as the real server."""
        states = self._manager.version_states(model)
        if version is not None:
            if version not in states:
                raise SimError(NOT_FOUND, f"Could not find version {version} of model {model}")
            return [(version, states[version])]
        if not states:
            raise SimError(NOT_FOUND, f"Could not find any versions of model {model}")
        return sorted(states.items())
