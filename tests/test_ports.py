"""The suite's port allocator stays out of the kernel's ephemeral range (tests/support/ports.py)."""

from __future__ import annotations

import socket

from tests.support.ports import free_port


def _ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(part) for part in f.read().split())
    return low, high


def test_ports_are_below_the_range_outgoing_connections_use() -> None:
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert all(10_000 <= port < low for port in ports), ports
    assert len(set(ports)) == 50  # handed out in turn, never the same one twice in a row


def test_a_port_someone_listens_on_is_skipped() -> None:
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        # The allocator goes round its whole block; the held port never comes back while held.
        assert all(free_port() != taken for _ in range(3_000))
