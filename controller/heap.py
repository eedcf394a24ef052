"""The controller process's C heap: fewer malloc arenas, and free pages handed back.

Why (docs/operations.md, "The controller's memory"): at 100,000 models the controller's
Python objects are ~0.7 GB, yet its RSS was ~1.1 GB. Much of the rest is memory the process
freed but kept: the first load and the first passes move ~1,000,000 keys through gRPC, the
watch and the parser (their bytes, protobuf messages and pydantic-core's buffers live in the
C heap, not in CPython's small-object arenas), and glibc keeps freed pages mapped, in as many
heaps ("arenas") as threads have run into contention (up to 8 per core). Two things help:

* ``limit_arenas``: at most ``ARENAS`` malloc arenas (glibc's M_ARENA_MAX; the
  MALLOC_ARENA_MAX environment variable does the same): the gRPC, watch, pass and HTTP threads
  then reuse each other's freed memory instead of each keeping its own high-water mark;
* ``Trimmer``: ``malloc_trim(0)`` (glibc >= 2.8 returns every whole free page of every arena,
  not only the top of the main heap) after a pass, at most once per ``every`` seconds, so a
  burst's garbage does not stay resident for the process's life.

Both are no-ops where the C library is not glibc (musl, macOS): the controller behaves the
same, it only keeps more memory. Neither changes what any Python object holds.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2
TRIM_EVERY = 30.0  # seconds between trims at most (a trim of a ~1 GB heap takes a few ms)


def glibc(load: Callable[[str | None], Any] = ctypes.CDLL) -> Any:
    """The process's C library if it is glibc, else None (nothing to tune). (dlopen(NULL):
    the library python is linked with, without searching for it.)"""
    try:
        libc = load(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's malloc_trim is a stub)
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS, *, libc: Any = None) -> bool:
    """Cap glibc's malloc arenas (call before the process starts its threads); False where
    it cannot be done."""
    libc = libc if libc is not None else glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


class Trimmer:
    """Hands the C heap's free pages back to the system, at most once per ``every`` seconds."""

    def __init__(self, *, every: float = TRIM_EVERY, clock: Callable[[], float] = time.monotonic, libc: Any = None) -> None:
        """libc: the C library (default: glibc() of this process; None there: trims nothing)."""
        self._libc = libc if libc is not None else glibc()
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._libc is not None

    def maybe_trim(self) -> bool:
        """Trim unless one ran less than ``every`` seconds ago; True when it trimmed."""
        now = self._clock()
        if self._libc is None or (self._last is not None and now - self._last < self._every):
            return False
        self._libc.malloc_trim(0)
        self._last = self._clock()
        self.trims += 1
        return True


__all__ = ["ARENAS", "TRIM_EVERY", "Trimmer", "glibc", "limit_arenas"]
