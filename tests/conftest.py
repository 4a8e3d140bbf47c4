"""Shared fixtures: the fake Anthropic API and the real gateway process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.schedule import Timeline

_SHARED_SCOPES = frozenset({"module", "class", "package"})
#: Paths whose tests run on one worker, in order (the group is the path):
#: - tests/edge ends with test_zz_access_logs.py, which reads the access log of every
#:   nginx the edge tests started (its session's): it must come after all of them, there;
#: - the wizard's snapshots are taken in one fixed directory (its path is in the
#:   pictures), which each test empties: two at once would clobber each other.
_ONE_WORKER_PATHS = ("tests/edge/", "tests/wizard/test_snapshots.py")
#: The modules sharing one deployed stack (the ``shared_stack`` fixture, tests/deploy/shared_stack.py),
#: in the order they run: those that leave the stack as deployed first, the chains that change it
#: for good after.
STACK_MODULES = (
    "tests/deploy/test_e2e_audit.py",  # reads the stack as deployed; restores what it changes
    "tests/deploy/test_e2e_day2.py",  # a chain of key and client changes, a refresh, a backup
)
#: The pytest-xdist group of every test that uses the stack.
STACK_GROUP = "tests/deploy/shared-stack"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without workers)
        config.pluginmanager.register(Timeline(), "claudegate-timeline")


# tryfirst: pytest-xdist's worker reads the xdist_group marks in its own hook of the same
# name (it registers after this conftest, so it would run first and see no mark).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module's (or class's) fixture on one pytest-xdist worker.

    CI runs ``-n 3 --dist loadgroup`` (.ci/run): tests are spread one by one,
    except those in one ``xdist_group``. A module-scoped fixture (a deployed
    fresh server, a gateway, a certificate authority) would otherwise be set up
    on every worker that draws one of its tests; grouped by module, it is set up
    once, as in a run without workers. A test's own ``xdist_group`` mark wins.
    """
    _order_the_shared_stack(items)
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if _uses_shared_stack(item):
            # Session-scoped, so one per worker: all its users on one worker deploy it once.
            item.add_marker(pytest.mark.xdist_group(STACK_GROUP))
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


def _uses_shared_stack(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and "shared_stack" in info.name2fixturedefs


def _order_the_shared_stack(items: list[pytest.Item]) -> None:
    """The shared stack's tests in the order of STACK_MODULES, each module's in file order.

    They are placed where the first of them was collected; the others keep their order.
    """
    rank = {path: i for i, path in enumerate(STACK_MODULES)}
    users = [i for i, item in enumerate(items) if _uses_shared_stack(item)]
    if not users:
        return
    unknown = {item.nodeid.split("::", 1)[0] for item in items if _uses_shared_stack(item)} - set(rank)
    if unknown:
        raise pytest.UsageError(
            f"add {sorted(unknown)} to STACK_MODULES (tests/conftest.py): its place in the order"
        )
    ordered = sorted(
        (items[i] for i in users), key=lambda item: rank[item.nodeid.split("::", 1)[0]]
    )  # stable
    taken = set(users)
    rest = [item for i, item in enumerate(items) if i not in taken]
    items[:] = rest[: users[0]] + ordered + rest[users[0] :]


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
