"""Pushing the dashboard's state to browsers: each browser's stream gets the whole state first,
then patches, merged while it lags (so a slow browser never holds up the others)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

FULL = "full"  # what a subscriber gets first: the whole state, read when it is sent


def merge_patches(older: dict[str, Any] | None, newer: dict[str, Any]) -> dict[str, Any]:
    """One patch with the effect of ``older`` then ``newer`` (every value in a patch is absolute)."""
    if older is None:
        return newer
    return {**older, **newer, "models": {**older.get("models", {}), **newer.get("models", {})}}


class _Subscriber:
    """One browser's stream: the whole state first, then patches (merged while it lags)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self.needs_full = True
        self.pending: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self.ready.set()

    def offer(self, patch: dict[str, Any]) -> None:  # runs in the subscriber's loop
        if self.needs_full:
            return  # the whole state it is about to get is read after this patch was made
        self.pending = merge_patches(self.pending, patch)
        self.ready.set()

    def close(self) -> None:  # runs in the subscriber's loop
        self.closed = True
        self.ready.set()

    async def next(self, timeout: float) -> str | dict[str, Any] | None:
        """FULL, a patch, or None after ``timeout`` seconds without news (time for a keepalive)."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return None
        self.ready.clear()
        if self.needs_full:
            self.needs_full = False  # patches from now on are kept; one already in the state is harmless
            return FULL
        patch, self.pending = self.pending, None
        return patch


class _Broadcaster:
    """Hands each patch from the state thread to every subscriber's event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self.closed = False

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self) -> _Subscriber:
        """Called from a request handler (inside the server's event loop)."""
        subscriber = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            subscriber.closed = self.closed
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, patch: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._subscribers)
        for subscriber in targets:
            _call_in(subscriber.loop, subscriber.offer, patch)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            targets = list(self._subscribers)
        for subscriber in targets:
            _call_in(subscriber.loop, subscriber.close)


def _call_in(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:  # the loop is closed: the server is gone
        pass
