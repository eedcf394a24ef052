"""tfleet.etcd_local.free_port: ports no outgoing connection can take before the daemon binds."""

from __future__ import annotations

import socket

from tfleet.etcd_local import _ephemeral_range, free_port


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    """An outgoing connection's local port comes from the ephemeral range: a port handed out
    from there could be taken between free_port() and the daemon's bind (tfleet dev's agent
    once exited with "Address already in use")."""
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(2500)]  # (more than the 2,000 answers it remembers)
    assert len(set(ports[-2000:])) == 2000, "the same port handed out twice within 2,000 answers"
    ports = ports[-200:]
    assert len(set(ports)) == len(ports), "the same port handed out twice"
    assert all(24000 <= port < low for port in ports), ports
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_handed_out(monkeypatch) -> None:
    """The random pick is checked: a port some process listens on is skipped."""
    from tfleet import etcd_local

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        for port in range(31000, 32000):  # (one in free_port's range, free now)
            try:
                held.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        held.listen()
        taken = held.getsockname()[1]
        # the held port is picked first, twice; then random picks as usual
        picks = iter([taken, taken])
        real = etcd_local.random.randrange
        monkeypatch.setattr(etcd_local.random, "randrange", lambda low, high: next(picks, None) or real(low, high))
        assert free_port() != taken
        assert next(picks, None) is None, "the held port was picked (and refused)"
