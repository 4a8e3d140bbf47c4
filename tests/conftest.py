"""Shared fixtures: the fake Anthropic API and the real gateway process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

_SHARED_SCOPES = frozenset({"module", "class", "package"})
#: Paths whose tests run on one worker, in order (the group is the path):
#: - tests/edge ends with test_zz_access_logs.py, which reads the access log of every
#:   nginx the edge tests started (its session's): it must come after all of them, there;
#: - the wizard's snapshots are taken in one fixed directory (its path is in the
#:   pictures), which each test empties: two at once would clobber each other.
_ONE_WORKER_PATHS = ("tests/edge/", "tests/wizard/test_snapshots.py")


# tryfirst: pytest-xdist's worker reads the xdist_group marks in its own hook of the same
# name (it registers after this conftest, so it would run first and see no mark).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module's (or class's) fixture on one pytest-xdist worker.

    CI runs ``-n 2 --dist loadgroup`` (.ci/run): tests are spread one by one,
    except those in one ``xdist_group``. A module-scoped fixture (a deployed
    fresh server, a gateway, a certificate authority) would otherwise be set up
    on every worker that draws one of its tests; grouped by module, it is set up
    once, as in a run without workers. A test's own ``xdist_group`` mark wins.
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        path = item.nodeid.split("::", 1)[0]
        shared = [p for p in _ONE_WORKER_PATHS if path.startswith(p)]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        # End-to-end modules also build on their earlier tests (a rollback needs the deploys
        # before it): they stay whole and in order whatever their fixtures' scopes.
        whole = item.get_closest_marker("e2e") is not None or item.get_closest_marker("docker") is not None
        if whole or any(d.scope in _SHARED_SCOPES for chain in defs for d in chain):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The session's fake, reset before and after each test."""
    fake_anthropic.state.reset()
    yield fake_anthropic
    fake_anthropic.state.reset()


GatewayFactory = Callable[..., GatewayProc]


@pytest.fixture
def gateway_factory(tmp_path: Path, fake_anthropic: FakeAnthropic) -> Iterator[GatewayFactory]:
    """Start gateways with extra config; each is stopped at the end of the test."""
    started: list[GatewayProc] = []

    def start(extra: dict[str, Any] | None = None, name: str = "gw", upstream_url: str | None = None) -> GatewayProc:
        gw = make_gateway(tmp_path / name, upstream_url or fake_anthropic.url, fake_anthropic.api_key, extra)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    """One gateway shared by a module's tests (they must not change its keys' state)."""
    gw = make_gateway(tmp_path_factory.mktemp("gw"), fake_anthropic.url, fake_anthropic.api_key)
    gw.start()
    yield gw
    gw.stop()
