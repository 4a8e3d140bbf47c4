"""Ports for the test suite's own listeners, chosen so that nothing else takes them meanwhile.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 on Debian), the same range it
picks every *outgoing* connection's source port from. Between a test asking
for a free port and its server binding it, another test's client connection
may take that very number (seen in CI: the gateway failed to start with
"address already in use" under two xdist workers). So ports come from below
the ephemeral range instead, from a block of their own per xdist worker,
handed out in turn and checked free at the time; no outgoing connection and
no other worker uses that block.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

__all__ = ["free_port"]

_FIRST = 10_000  # above well-known services (PostgreSQL 5432, Redis 6379, ...)
_BLOCK = 2_500  # ports per worker: gw0 10000-12499, gw1 12500-14999, ...; no workers: the last block
_BLOCKS = 9  # up to 8 workers plus a run without workers: 10000-32499, below the ephemeral range


def _block() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % (_BLOCKS - 1)
    return _BLOCKS - 1


_start = _FIRST + _block() * _BLOCK
# A random starting point: a port a previous run left in TIME_WAIT is not the first one tried.
_next = itertools.cycle(range(_start, _start + _BLOCK))
for _ in range(random.randrange(_BLOCK)):
    next(_next)
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on or holds now, from this worker's block."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _lock:
        for _ in range(_BLOCK):
            port = next(_next)
            with socket.socket(family) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {_start}-{_start + _BLOCK - 1} on {host}")
