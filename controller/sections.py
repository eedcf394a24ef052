"""How the controller reads the planning sections of the keyspace (never history/).

``read_sections``/``iter_sections`` read each section of a FleetSnapshot (controller/
snapshot.py SECTIONS) through a ``PrefixReader``, at one revision when the reader can pin
one: ``PagedReader`` (the default) uses the store's paginated read; ``RangeReader`` models a
store that cannot pin a revision (each section at its own revision), so the fleet cache's
handling of that case stays tested. The fleet cache (controller/fleetcache.py) fills itself
with these reads and re-lists with them after a compaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from tfleet.controller.snapshot import SECTIONS
from tfleet.keyspace import Keyspace
from tfleet.ports import KeyReader
from tfleet.store import KeyValue, Snapshot


class PrefixReader(Protocol):
    def read(self, prefix: str, revision: int | None) -> Snapshot:
        """Every key under prefix as of revision (None: now), however many pages that takes.

        The returned snapshot's revision is the revision the keys are as of (an implementation
        that cannot pin a revision returns the one it read at)."""
        ...


class RangeReader:
    """A read of each section at whatever revision etcd is at (a store that cannot pin one)."""

    pins = False  # cannot read at a given revision

    def __init__(self, store: KeyReader) -> None:
        self._store = store

    def read(self, prefix: str, revision: int | None) -> Snapshot:
        return self._store.list_prefix(prefix)  # (no revision: read at the current one)


class PagedReader:
    """The store's paginated read at one revision (EtcdStore.list_prefix(prefix, revision=R))."""

    pins = True

    def __init__(self, store: KeyReader) -> None:
        self._store = store

    def read(self, prefix: str, revision: int | None) -> Snapshot:
        return self._store.list_prefix(prefix, revision=revision)


def default_reader(store: KeyReader) -> PrefixReader:
    return PagedReader(store)


def section_prefixes(ks: Keyspace, sections: Iterable[str] = SECTIONS) -> dict[str, str]:
    fixed = {"leader": ks.leader()}
    return {s: fixed.get(s, f"{ks.prefix}/{s}/") for s in sections}


def section_of(ks: Keyspace, key: str) -> str | None:
    """The cached section a key belongs to; None for history/ and anything unknown."""
    section = ks.section(key)
    return section if section in SECTIONS else None


class PinnedReader:
    """A pinning reader with its first read pinned too (read_sections pins the later ones)."""

    def __init__(self, reader: PrefixReader, revision: int) -> None:
        self._reader, self._revision = reader, revision

    def read(self, prefix: str, revision: int | None) -> Snapshot:
        return self._reader.read(prefix, revision or self._revision)


@dataclass(frozen=True)
class SectionRead:
    """A read of some sections: the keys, and the revision each section is as of."""

    revisions: Mapping[str, int]
    items: tuple[KeyValue, ...]

    @property
    def revision(self) -> int:
        """The revision every section has reached (the watch resumes after it)."""
        return min(self.revisions.values())


# One section's keys, with the revision its read is as of: what a load parses.
Chunk = tuple[Mapping[str, int], list[KeyValue]]


def iter_sections(reader: PrefixReader, ks: Keyspace, sections: Iterable[str] = SECTIONS) -> Iterator[Chunk]:
    """Read the sections one by one, at one revision when the reader can pin one (the first
    read's): ({section: revision}, its keys) each.

    One section at a time so that a load can parse each before the next is read: at 100,000
    models the stored bytes of every section at once (~710,000 keys) were a few hundred MB,
    freed after the load but left scattered in the process's heap (docs/operations.md)."""
    pinned: int | None = None
    for section, prefix in section_prefixes(ks, sections).items():
        snapshot = reader.read(prefix, pinned)
        pinned = pinned or snapshot.revision
        revision, items = snapshot.revision, [kv for kv in snapshot.items if section_of(ks, kv.key) == section]
        del snapshot  # (not held while the caller parses, nor while the next section is read)
        yield {section: revision}, items


def read_sections(reader: PrefixReader, ks: Keyspace, sections: Iterable[str] = SECTIONS) -> SectionRead:
    """Read the sections, at one revision when the reader can pin one (the first read's)."""
    revisions: dict[str, int] = {}
    items: list[KeyValue] = []
    for section_revisions, section_items in iter_sections(reader, ks, sections):
        revisions.update(section_revisions)
        items.extend(section_items)
    return SectionRead(revisions, tuple(items))
