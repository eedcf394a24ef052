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
* ``fix_mmap_threshold``: allocations of ``MMAP_THRESHOLD`` bytes or more get pages of their
  own, handed back when freed (glibc's M_MMAP_THRESHOLD; MALLOC_MMAP_THRESHOLD_ does the
  same). Left to itself glibc raises that threshold to the size of each such block freed,
  up to 32 MiB: after the first watch responses (fragments of up to ~2 MiB) and encoded
  batches, buffers that size came from the arenas and their pages stayed resident. Setting
  it keeps it where it is. At 100,000 models (bench/scale, three runs) the controller's
  RSS was 908-948 MB converged and 930-955 MB at the end with it, against 924-1,074 and
  955-1,038 MB in this round's runs without it;
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
M_MMAP_THRESHOLD = -3  # glibc's malloc.h
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept
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


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD, *, libc: Any = None) -> bool:
    """Serve allocations of ``threshold`` bytes or more by mmap, always (glibc then stops
    moving the threshold up); False where it cannot be done."""
    libc = libc if libc is not None else glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1)


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


__all__ = ["ARENAS", "MMAP_THRESHOLD", "TRIM_EVERY", "Trimmer", "fix_mmap_threshold", "glibc", "limit_arenas"]
