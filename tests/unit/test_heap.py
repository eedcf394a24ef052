"""controller/heap.py: the C heap's free pages are handed back at most once per interval;
nothing is tuned where the C library is not glibc."""

from __future__ import annotations

import pytest

from tfleet.controller import heap


class _Libc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def gnu_get_libc_version(self) -> bytes:
        return b"2.36"

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", (pad,)))
        return 1

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", (param, value)))
        return 1


def test_a_trim_runs_at_most_once_per_interval() -> None:
    now, libc = [100.0], _Libc()
    trimmer = heap.Trimmer(every=30.0, clock=lambda: now[0], libc=libc)
    assert trimmer.maybe_trim()
    now[0] += 29.0
    assert not trimmer.maybe_trim()
    now[0] += 1.0
    assert trimmer.maybe_trim() and trimmer.trims == 2
    assert libc.calls == [("malloc_trim", (0,))] * 2


def test_the_arenas_are_capped_through_mallopt() -> None:
    libc = _Libc()
    assert heap.limit_arenas(2, libc=libc)
    assert libc.calls == [("mallopt", (heap.M_ARENA_MAX, 2))]


def test_the_mmap_threshold_is_fixed_through_mallopt() -> None:
    libc = _Libc()
    assert heap.fix_mmap_threshold(libc=libc)
    assert libc.calls == [("mallopt", (heap.M_MMAP_THRESHOLD, 128 * 1024))]


def test_without_glibc_nothing_is_tuned() -> None:
    class Musl:
        def malloc_trim(self, pad: int) -> int:  # (musl has the symbol, as a stub)
            raise AssertionError("not called")

    def missing(name: str | None) -> object:
        raise OSError("no such library")

    assert heap.glibc(lambda name: Musl()) is None and heap.glibc(missing) is None


def test_this_process_trims_where_it_runs_on_glibc() -> None:
    if heap.glibc() is None:
        pytest.skip("not glibc")
    assert heap.Trimmer().maybe_trim()
