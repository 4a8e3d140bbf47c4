"""Names and addresses that tests running in parallel (pytest-xdist workers) cannot both pick.

Every worker draws from its own stripe of the private ranges the tests use on
this machine's Docker engine, so two modules running at once never ask for the
same subnet (Docker refuses an overlapping one, and a deploy would fail on
it); within a stripe the draw is random, so a network a killed run left behind
is unlikely to be hit again.

  10.214.0.0/16  bridges of the tests' own (fresh servers, host-address networks), one /24 each
  10.213.0.0/16  the internal networks of stacks deployed onto this machine, one /28 each
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets

#: Stripes per range: workers beyond this many share stripes (and still draw at random within them).
STRIPES = 8


def worker_index() -> int:
    """0 for ``gw0`` or a run without workers, 1 for ``gw1``, ..."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(match.group(1)) if match else 0


def _third_octet(low: int, high: int) -> int:
    """A random value of this worker's stripe of ``low..high`` (inclusive)."""
    width = (high - low + 1) // STRIPES
    start = low + (worker_index() % STRIPES) * width
    return start + secrets.randbelow(width)


def bridge_subnet() -> tuple[str, str]:
    """A /24 for a test's own bridge network and its gateway address: (subnet, gateway)."""
    third = _third_octet(16, 250)
    return f"10.214.{third}.0/24", f"10.214.{third}.1"


def deploy_subnet() -> str:
    """A /28 for the internal network of a stack a test deploys onto this machine."""
    network = ipaddress.IPv4Network(f"10.213.{_third_octet(100, 243)}.{16 * secrets.randbelow(16)}/28")
    return str(network)


def name_suffix() -> str:
    """A suffix for container, network and directory names: the worker's index, then random hex."""
    return f"w{worker_index()}{secrets.token_hex(3)}"
