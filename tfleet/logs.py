"""structlog set-up shared by the daemons: one JSON object per line on stderr.

structlog's configuration is process-wide by design, so only entry points (CLI commands) call
``configure``; components receive a bound logger and never configure anything.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", *, json: bool = True) -> None:
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    renderer: structlog.typing.Processor = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class Logger(Protocol):
    """What a component calls on the logger it is given: a structlog bound logger (``get``)
    or an OutageLog around one (the controller's), so a signature takes either; a unit test
    passes a recorder of the same shape. One event name, then the line's fields."""

    def bind(self, **context: object) -> Logger: ...

    def debug(self, event: str, **fields: object) -> None: ...

    def info(self, event: str, **fields: object) -> None: ...

    def warning(self, event: str, **fields: object) -> None: ...

    def error(self, event: str, **fields: object) -> None: ...

    def exception(self, event: str, **fields: object) -> None: ...


def get(name: str, **context: object) -> structlog.typing.FilteringBoundLogger:
    # structlog.get_logger is typed Any: what it returns is the wrapper_class configure() set.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger.bind(component=name, **context)


class OutageLog:
    """A logger for a daemon's loops: the events that report etcd unreachable are logged at
    warning and at most once per ``interval`` seconds each (the next line says how many were
    left out), everything else passes through unchanged.

    Why: while etcd is down a controller retries every second or two, forever; at info level
    every retry buried the one thing an operator needs to see, and at full rate it filled the
    disk. ``events`` names events (``"campaign_failed"``) or event/result pairs
    (``"reconcile:etcd_unavailable"``). ``bind`` keeps the shared limiter, so components that
    bind their own context are limited together.
    """

    def __init__(
        self,
        inner: structlog.typing.FilteringBoundLogger,
        events: frozenset[str],
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        _state: dict[str, list[float]] | None = None,
    ) -> None:
        self._inner = inner
        self._events = events
        self._interval = interval
        self._clock = clock
        self._state = _state if _state is not None else {}  # key -> [last logged at, left out since]

    def bind(self, **context: object) -> OutageLog:
        return OutageLog(self._inner.bind(**context), self._events, self._interval, self._clock, self._state)

    def _key(self, event: str, fields: dict[str, object]) -> str | None:
        if event in self._events:
            return event
        keyed = f"{event}:{fields.get('result')}"
        return keyed if keyed in self._events else None

    def _outage(self, event: str, fields: dict[str, object]) -> bool:
        """Log ``event`` as an outage report if it is one; True when it was handled here."""
        key = self._key(event, fields)
        if key is None:
            return False
        now = self._clock()
        last = self._state.get(key)
        if last is not None and now - last[0] < self._interval:
            last[1] += 1
            return True
        left_out = int(last[1]) if last is not None else 0
        self._state[key] = [now, 0]
        extra = {"left_out": left_out, "per_seconds": self._interval} if left_out else {}
        self._inner.warning(event, **fields, **extra)
        return True

    def debug(self, event: str, **fields: object) -> None:
        if not self._outage(event, fields):
            self._inner.debug(event, **fields)

    def info(self, event: str, **fields: object) -> None:
        if not self._outage(event, fields):
            self._inner.info(event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        if not self._outage(event, fields):
            self._inner.warning(event, **fields)

    def error(self, event: str, **fields: object) -> None:
        self._inner.error(event, **fields)  # never limited: errors are not retries

    def exception(self, event: str, **fields: object) -> None:
        self._inner.exception(event, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# What a controller logs, every retry, while etcd is unreachable (controller/election/,
# controller/reconciler.py).
CONTROLLER_OUTAGE_EVENTS = frozenset(
    {
        "campaign_failed",
        "campaign_unanswered",
        "leader_renew_failed",
        "leader_watch_failed",
        "lease_revoke_failed",
        "reconcile:etcd_unavailable",
    }
)
