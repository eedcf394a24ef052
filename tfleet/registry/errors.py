"""What the registry's callers (the CLI, the controller) catch: bad input, and lost races."""

from __future__ import annotations


class RegistryError(Exception):
    """Bad input or unusable stored data: a missing version directory, an unknown model or
    history sequence, an intent in etcd that does not match its schema."""


class ConflictError(Exception):
    """A compare-and-swap failed: someone else changed the model since it was read.

    The message says who (author and source of the newest history entry, or "outside tfleet"
    when etcd holds a change without one) and the current revision, so the operator can
    look at the change and apply again on top of it.
    """

    def __init__(self, message: str, *, model: str, current_revision: int = 0, expected_revision: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.current_revision = current_revision
        self.expected_revision = expected_revision
