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


def unresponsive_detection_seconds(probe_interval: float, call_timeout: float, failures: int) -> float:
    """The longest a hung TF Serving goes unnoticed by its agent: ``failures`` probes in a row
    must pass their deadline, one probe every probe_interval (each lasting up to call_timeout)."""
    return failures * (probe_interval + call_timeout)


def check_unresponsive_timing(lease_ttl: int, probe_interval: float, call_timeout: float, failures: int) -> None:
    """A hung TF Serving must leave the routes about as fast as a dead host does.

    A dead host leaves when its lease expires (one TTL); a host whose TF Serving hangs keeps its
    lease (the agent is fine), so only the agent's probes can take it out. Detection slower
    than 4 TTLs would keep traffic on a host that answers nothing for much longer than a host
    that died; a probe interval shorter than the call deadline would pile probes up.
    """
    if failures < 1:
        raise ValueError(f"--tfs-unresponsive-after must be at least 1, not {failures}")
    if probe_interval < call_timeout:
        raise ValueError(
            f"--tfs-probe-interval ({probe_interval:g} s) must not be shorter than --status-timeout "
            f"({call_timeout:g} s): a probe must end before the next one is due"
        )
    detection = unresponsive_detection_seconds(probe_interval, call_timeout, failures)
    if detection > 4 * lease_ttl:
        raise ValueError(
            f"a hung TF Serving would go unnoticed for up to {detection:g} s "
            f"(--tfs-unresponsive-after {failures} x (--tfs-probe-interval {probe_interval:g} s + "
            f"--status-timeout {call_timeout:g} s)), more than 4 x --lease-ttl ({4 * lease_ttl} s; "
            f"a dead host leaves after one): probe more often or fail sooner"
        )
