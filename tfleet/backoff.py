"""The one backoff of the code base: jittered, capped, exponential.

Every wait after a failure uses it: the store's watch reconnections (tfleet/store/watch.py),
the pass guard of every daemon loop (tfleet/passguard.py), the loop's retry of a pass that
could not reach etcd (tfleet/loop.py), the history recorder and the agent's retry of a
reload TF Serving refused. One class, so that a fix to the arithmetic (overflow at a large
attempt number, jitter that cannot reach zero) is made once.

Pure: the random source is passed in, so a test fixes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before attempt ``n`` (1-based): ``initial * 2**(n-1)``, capped at
    ``cap``, of which the last ``jitter`` fraction is random.

    Jitter keeps a fleet of processes that failed together (etcd went away for all of them)
    from retrying in lockstep; the cap bounds how long a loop stays idle after the cause is
    gone. ``jitter=0`` gives a fixed sequence, for a retry nobody else shares (an agent's
    own TF Serving).
    """

    initial: float = 0.2
    cap: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap):
            raise ValueError(f"backoff needs 0 < initial <= cap, got {self.initial}, {self.cap}")
        if not (0 <= self.jitter <= 1):
            raise ValueError(f"backoff jitter must be a fraction in [0, 1], got {self.jitter}")

    def base(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt`` (the exponent is bounded: no overflow)."""
        return min(self.cap, self.initial * 2.0 ** min(max(attempt, 1) - 1, 32))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number ``attempt`` (1-based): in
        [base * (1 - jitter), base]."""
        base = self.base(attempt)
        fixed = base * (1 - self.jitter)
        return fixed + (rng.uniform(0, base - fixed) if self.jitter else 0.0)
