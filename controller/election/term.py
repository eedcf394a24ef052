"""The pure parts of the election: its timing rules, one term as seen locally, and how a
term ends (the LOST_* reasons, NotLeader). No I/O: the rules are testable with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TTL = 10
MIN_TTL = 3  # etcd rounds shorter TTLs up (to ~2 s); below 3 s one slow call ends a term

# Why a term ended (Election.last_lost_reason, and logged); stable strings, fit for a metric label.
LOST_DEADLINE = "deadline"  # no successful renewal for TTL - margin
LOST_LEASE = "lease_lost"  # etcd said the lease is gone (expired or revoked)
LOST_FENCE = "fence_failed"  # a fenced transaction found the leader key gone or re-created
LOST_KEY = "leader_key_gone"  # the watch or a check saw the leader key deleted or re-created


class NotLeader(Exception):
    """This controller does not lead (any more): stop acting, write nothing.

    reason is one of the LOST_* strings when the leadership ended during the call (e.g. the
    fence failed in etcd), or "standby" when it was not held to begin with.
    """

    def __init__(self, message: str, reason: str = "standby") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ElectionTiming:
    """The election's clock settings, validated against each other at start-up.

    call_timeout (the etcd call deadline), when given, must be shorter than the renew
    interval, so a hanging renewal ends before the next one is due.
    """

    ttl: int = DEFAULT_TTL
    margin: float | None = None
    call_timeout: float | None = None

    def __post_init__(self) -> None:
        ttl = self.ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < MIN_TTL:
            raise ValueError(f"leader lease TTL must be a whole number of seconds >= {MIN_TTL}, not {ttl!r}")
        margin = ttl / 5 if self.margin is None else self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin < ttl / 3:
            raise ValueError(
                f"leadership margin {margin!r} s must be above 0 and below TTL/3 ({ttl / 3:g} s): "
                "a larger margin gives up leadership after a single failed renewal"
            )
        object.__setattr__(self, "margin", float(margin))
        if self.call_timeout is not None and self.call_timeout >= self.renew_interval:
            raise ValueError(
                f"the etcd call timeout ({self.call_timeout:g} s) must be shorter than the leader renew interval (TTL {ttl} s / 3 = {self.renew_interval:g} s)"
            )

    @property
    def renew_interval(self) -> float:
        """How often the owner calls renew() (leader: refresh; standby: campaign)."""
        return self.ttl / 3

    @property
    def renew_jitter(self) -> float:
        """Jitter for the owner's scheduler, so that controllers do not renew in lockstep."""
        return self.renew_interval / 10

    def deadline(self, sent_at: float, granted_ttl: float | None = None) -> float:
        """Until when leadership is held locally after a refresh (or grant) sent at sent_at.

        granted_ttl is what etcd reported; a smaller one than configured is believed, a
        larger one (etcd rounds short TTLs up) is not relied upon.
        """
        ttl = self.ttl if granted_ttl is None else min(float(self.ttl), float(granted_ttl))
        assert self.margin is not None
        return sent_at + ttl - self.margin


class Term:
    """One tenure as leader: the fence, the lease, and the local deadline.

    The deadline only moves forward: a late answer to an older refresh cannot shorten it.
    """

    __slots__ = ("fence", "lease_id", "deadline")

    def __init__(self, fence: int, lease_id: int, deadline: float) -> None:
        self.fence = fence
        self.lease_id = lease_id
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"Term(fence={self.fence}, lease={self.lease_id:x}, deadline={self.deadline:.3f})"

    def held(self, now: float) -> bool:
        return now < self.deadline

    def extend(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)
