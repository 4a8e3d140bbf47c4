"""Shared fixtures: the fake Anthropic API and the real gateway process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway


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
