"""Parallel workers draw subnets from disjoint stripes (tests/support/parallel.py)."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from tests.support import parallel


def _draws(monkeypatch: pytest.MonkeyPatch, worker: str, n: int = 200) -> tuple[set[str], set[str]]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    return {parallel.bridge_subnet()[0] for _ in range(n)}, {parallel.deploy_subnet() for _ in range(n)}


def test_workers_never_draw_overlapping_subnets(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = {w: _draws(monkeypatch, f"gw{w}") for w in range(parallel.STRIPES)}
    for a, b in itertools.combinations(draws, 2):
        for kind in (0, 1):
            nets_a = [ipaddress.IPv4Network(n) for n in draws[a][kind]]
            nets_b = [ipaddress.IPv4Network(n) for n in draws[b][kind]]
            assert not [(x, y) for x in nets_a for y in nets_b if x.overlaps(y)], (a, b, kind)
    # The two kinds live in different /16s: a deployed stack's network never meets a test bridge.
    every = [ipaddress.IPv4Network(n) for w in draws for kind in (0, 1) for n in draws[w][kind]]
    bridges = [n for n in every if n.prefixlen == 24]
    stacks = [n for n in every if n.prefixlen == 28]
    assert all(n.subnet_of(ipaddress.IPv4Network("10.214.0.0/16")) for n in bridges)
    assert all(n.subnet_of(ipaddress.IPv4Network("10.213.0.0/16")) for n in stacks)
    assert all(16 <= int(str(n.network_address).split(".")[2]) <= 250 for n in bridges)


def test_a_run_without_workers_is_worker_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert parallel.worker_index() == 0
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw5")
    assert parallel.worker_index() == 5 and parallel.name_suffix().startswith("w5")
