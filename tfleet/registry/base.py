"""What every part of the Registry shares: the store, the keyspace, the clock, and reading
intents (the one thing every write, history question and registration starts from)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from tfleet import logs
from tfleet.keyspace import InvalidName, Keyspace
from tfleet.ports import Store
from tfleet.registry.errors import RegistryError
from tfleet.schema import ModelIntent, SchemaError, parse, utc_now
from tfleet.store import KeyValue


class RegistryBase:
    """Reads and writes of one installation (one keyspace): the Registry's shared state."""

    def __init__(
        self,
        store: Store,
        keyspace: Keyspace,
        clock: Callable[[], dt.datetime] = utc_now,
        *,
        log: logs.Logger | None = None,
        recorder_wait: float = 2.0,
    ) -> None:
        """recorder_wait: how long a write waits for the controller to record an etcdctl
        change of the same model first (0: never waits)."""
        self._recorder_wait = recorder_wait
        self._store = store
        self._keys = keyspace
        self._clock = clock
        self._log = log or logs.get("registry")

    # -- reading intents --------------------------------------------------------------------

    def get_intent(self, model: str) -> tuple[ModelIntent | None, int]:
        """(intent, its mod_revision), or (None, 0) when the model has no intent."""
        kv = self._store.get(self._model_key(model))
        if kv is None:
            return None, 0
        return self._parse_intent(kv), kv.mod_revision

    def models(self) -> dict[str, tuple[ModelIntent | None, str | None]]:
        """Every model with an intent: name -> (intent, None), or (None, why it is invalid)."""
        prefix = self._keys.models_prefix()
        found: dict[str, tuple[ModelIntent | None, str | None]] = {}
        for kv in self._store.list_prefix(prefix).items:
            try:
                name = self._keys.name_after(kv.key, prefix)
            except InvalidName as exc:
                self._log.warning("model_key_ignored", key=kv.key, error=str(exc))
                continue
            try:
                found[name] = (parse(ModelIntent, kv.value, kv.key), None)
            except SchemaError as exc:
                found[name] = (None, str(exc))
        return found

    # -- internals --------------------------------------------------------------------------

    def _model_key(self, model: str) -> str:
        try:
            return self._keys.model(model)
        except InvalidName as exc:
            raise RegistryError(str(exc)) from None

    def _parse_intent(self, kv: KeyValue) -> ModelIntent:
        try:
            return parse(ModelIntent, kv.value, kv.key)
        except SchemaError as exc:
            raise RegistryError(str(exc)) from None
