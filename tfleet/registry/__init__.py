"""The model registry: intents, their full history, and registered versions.

Operators change a model's intent (``models/<m>``) through this package (the CLI) or with
plain etcdctl. Either way they need to know who changed what, compare two revisions and
restore an earlier one, and two people editing at once must never silently overwrite each
other. Hence every intent write is a compare-and-swap with its history entry in the same
transaction, and a failed compare says who changed the model (intents.py); the history is a
set of append-only keys read in bounded pages (history.py); registered versions are
create-only (versions.py).

Registry is the one object callers use; it is assembled from one part per job, each in its
own module, sharing the store, keyspace and clock (base.py):

* base.py      the shared state, and reading intents (get_intent, models)
* history.py   history reads, retention and pruning (HistoryReads); normal_form
* intents.py   apply / delete / roll back an intent with its history entry (IntentWrites)
* versions.py  register and list versions (VersionRegistration)
* errors.py    RegistryError, ConflictError

Every method raises StoreError (from the store) when etcd cannot be reached; the callers
(CLI, controller) decide whether to retry.
"""

from __future__ import annotations

from tfleet.registry.errors import ConflictError, RegistryError
from tfleet.registry.history import DEFAULT_HISTORY_KEEP, HISTORY_PAGE, HistoryReads, normal_form
from tfleet.registry.intents import IntentWrites
from tfleet.registry.versions import VersionRegistration


class Registry(IntentWrites, VersionRegistration):
    """Reads and writes intents, history and versions of one installation (one keyspace).

    Registry(store, keyspace, clock=utc_now, *, log=None, recorder_wait=2.0): see RegistryBase.
    """


__all__ = [
    "DEFAULT_HISTORY_KEEP",
    "HISTORY_PAGE",
    "ConflictError",
    "HistoryReads",
    "IntentWrites",
    "Registry",
    "RegistryError",
    "VersionRegistration",
    "normal_form",
]
