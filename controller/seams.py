"""Checked by mypy, imported by nothing: the concrete classes satisfy tfleet.ports.

The Protocols in tfleet/ports.py are satisfied structurally; these assignments make mypy
(make check) fail when a concrete class drifts from the seam its users are typed against.
They live on the controller's side because the core may not import the controller, not even
for a type check (tests/unit/test_layering.py); the agent's seam to TF Serving (ModelServer)
is checked here too, since it names only core classes.
"""

from __future__ import annotations

from tfleet.controller.election import Election
from tfleet.ports import Fence, IntentRegistry, ModelServer, Store
from tfleet.registry import Registry
from tfleet.store import EtcdStore
from tfleet.tfs.client import TfsClient


def store_seam(store: EtcdStore) -> Store:
    return store


def fence_seam(election: Election) -> Fence:
    return election


def registry_seam(registry: Registry) -> IntentRegistry:
    return registry


def model_server_seam(client: TfsClient) -> ModelServer:
    return client
