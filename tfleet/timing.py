"""The timing rule every leased daemon (agent, controller) is held to at start-up.

A lease is renewed every TTL/3. If one etcd call could take longer than that, a single slow
call would let the lease lapse while the process is healthy: its keys would vanish (agent)
or another controller would take over (controller). So the call deadline must be shorter
than the renew interval, and the TTL long enough for etcd to honour it.
"""

from __future__ import annotations

MIN_LEASE_TTL = 3  # etcd rounds shorter TTLs up; below 3 s one slow call loses the lease


def check_lease_timing(lease_ttl: int, call_timeout: float, consequence: str) -> None:
    """Raise ValueError saying what to change when the pair is unsafe."""
    if lease_ttl < MIN_LEASE_TTL:
        raise ValueError(f"--lease-ttl {lease_ttl} is too short: use at least {MIN_LEASE_TTL} seconds")
    renew_every = lease_ttl / 3
    if call_timeout >= renew_every:
        raise ValueError(
            f"the etcd call timeout ({call_timeout:g} s) must be shorter than the lease renew "
            f"interval (lease TTL {lease_ttl} s / 3 = {renew_every:g} s), or {consequence}"
        )
