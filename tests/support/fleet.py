"""Several real gateway processes sharing one keystore and one Redis: a fleet's replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.state_services import RedisServer


def _state(redis: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"state": {"redis": {"url": redis.url, "password_file": str(redis.password_file), **extra}}}


def fleet(tmp_path: Path, fake: FakeAnthropic, redis: RedisServer, n: int, **cfg: Any) -> list[GatewayProc]:
    """`n` gateway processes on one keystore and one Redis (the replicas of a fleet)."""
    redis_extra = cfg.pop("redis_extra", {})
    first = make_gateway(tmp_path / "gw0", fake.url, fake.api_key, {**_state(redis, **redis_extra), **cfg})
    gws = [first] + [
        make_gateway(tmp_path / f"gw{i}", fake.url, fake.api_key, {**_state(redis, **redis_extra), **cfg},
                     share_keystore=first)
        for i in range(1, n)
    ]  # fmt: skip
    for gw in gws:
        gw.start()
    return gws


def body(max_tokens: int = 16, text: str = "hello") -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


async def post(session: aiohttp.ClientSession, gw: GatewayProc, key: str, doc: dict[str, Any]) -> tuple[int, Any, Any]:
    async with session.post(gw.url + "/v1/messages", json=doc, headers={"x-api-key": key,
                            "anthropic-version": "2023-06-01"}) as r:  # fmt: skip
        return r.status, await r.json(), r.headers


def run_parallel(gws: list[GatewayProc], key: str, docs: list[dict[str, Any]]) -> list[tuple[int, Any, Any]]:
    async def go() -> list[tuple[int, Any, Any]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            return await asyncio.gather(*(post(s, gws[i % len(gws)], key, d) for i, d in enumerate(docs)))

    return asyncio.run(go())


@pytest.fixture
def gateways() -> Iterator[list[GatewayProc]]:
    """Gateways a test starts; each is stopped at the end."""
    started: list[GatewayProc] = []
    yield started
    for gw in started:
        gw.stop()
