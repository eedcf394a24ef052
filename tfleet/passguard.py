"""What a daemon's loop does when one of its passes raises something nobody expected.

A pass never dies (the team's rule): whatever a value in etcd, a TF Serving reply or a bug
makes a pass raise, the loop that runs it must go on serving everything else. Every loop
(tfleet/loop.py: agent-loop, controller-loop, dashboard-state, history-recorder, routes-watch)
therefore runs its pass under a PassGuard:

* the error is logged once with its traceback (the same error again, pass after pass, is
  logged at debug level until a pass succeeds, so a stuck value does not flood the log);
* it is counted (``tfleet_<daemon>_pass_errors_total``) and a gauge says the loop is
  currently failing, so an alert can fire on it;
* the loop waits a jittered, capped, exponential backoff before the next attempt (a bug
  that fails at once must not spin a core), then runs a full pass again.

Errors the pass itself handles (etcd unreachable, TF Serving down) never get here.
"""

from __future__ import annotations

import random

from prometheus_client import Counter, Gauge

from tfleet.backoff import Backoff
from tfleet.logs import Logger

DEFAULT_BACKOFF = Backoff(initial=1.0, cap=30.0)


class PassGuard:
    def __init__(
        self,
        name: str,
        log: Logger,
        errors: Counter | None,
        failing: Gauge | None = None,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        """errors: a prometheus Counter (or None); failing: a Gauge set to 1 while passes fail."""
        self._name = name
        self._log = log
        self._errors = errors
        self._failing = failing
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._failures = 0
        self._last_signature: tuple[str, str] | None = None
        self.last_error: str | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed passes (0 after a pass succeeded)."""
        return self._failures

    def failed(self, error: BaseException, **context: object) -> float:
        """Record one failed pass; the seconds to wait before the next one."""
        self._failures += 1
        message = f"{type(error).__name__}: {error}"[:2000]
        signature = (type(error).__name__, str(error)[:500])
        self.last_error = message
        if self._errors is not None:
            self._errors.inc()
        if self._failing is not None:
            self._failing.set(1)
        delay = self._backoff.delay(self._failures, self._rng)
        if signature != self._last_signature:
            self._last_signature = signature
            self._log.error(
                "pass_failed", loop=self._name, error=message, retry_in=round(delay, 2), action="keeps serving; backing off", exc_info=error, **context
            )
        else:
            self._log.debug("pass_failed", loop=self._name, error=message, retry_in=round(delay, 2), failures=self._failures, **context)
        return delay

    def succeeded(self) -> None:
        if self._failures:
            self._log.info("pass_recovered", loop=self._name, after_failures=self._failures)
        self._failures = 0
        self._last_signature = None
        self.last_error = None
        if self._failing is not None:
            self._failing.set(0)
