"""What admission in Redis costs per request, next to the one-host SQLite path.

Two measurements, both against Debian's redis-server started here on
loopback (tests/support/state_services.RedisServer), nothing mocked:

1. admission alone: ``reserve`` then ``settle`` of one request for a key
   with rpm, tpm and a daily budget, sequentially, through the gateway's own
   classes: :class:`LocalAdmission` (the in-process limiter) and
   :class:`RedisAdmission` (one FCALL to reserve; the settle FCALL is
   awaited here too, although the request path does not wait for it);
2. end to end: sequential requests through a real gateway process on the
   fake Anthropic API, one gateway without ``state:`` and one with
   ``state.redis``, alternating request by request; the difference of the medians is
   what Redis adds to a request.

Usage (repo root, main venv):  .venv/bin/python bench/state_bench.py [--calls 5000] [--requests 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from claudegate_gateway.admission import LocalAdmission
from claudegate_gateway.admission_redis import Hold, RedisAdmission
from claudegate_gateway.keystore import Client, Scopes
from claudegate_gateway.limits import Limiter
from claudegate_gateway.stateconfig import RedisState
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import make_gateway
from tests.support.state_services import RedisServer


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def admission(redis: RedisServer, calls: int) -> dict[str, list[float]]:
    scopes = Scopes(rpm=10**9, tpm=10**12, daily_tokens=10**15)
    client = Client("bench", "cgk_benchbench", scopes, None, None)

    async def noop_load(_day: str) -> dict[str, int]:
        return {}

    async def noop_add(_d: dict[tuple[str, str], int], _day: str) -> dict[str, int]:
        return {}

    local = LocalAdmission(Limiter())
    remote = RedisAdmission(
        RedisState(url=redis.url, password_file=redis.password_file), "bench",
        in_flight_per_key=32, load_daily=noop_load, add_daily=noop_add,
    )  # fmt: skip
    await remote.start()
    out: dict[str, list[float]] = {"sqlite/in-process": [], "redis reserve": [], "redis reserve+settle": []}
    for _ in range(200):  # warm-up: connections, library loaded, day seeded
        res = await remote.reserve(client, 100)
        remote.settle(res, 50)
    await asyncio.sleep(0.2)
    for _ in range(calls):
        t0 = time.perf_counter()
        res = await local.reserve(client, 100)
        local.settle(res, 50)
        out["sqlite/in-process"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        res = await remote.reserve(client, 100)
        t1 = time.perf_counter()
        assert isinstance(res, Hold), "Redis was not used"
        await remote._settle_now(res.keys[1:], [res.hold_id, "-50", "1"])  # what settle() schedules
        res.settled = True
        remote._holds.pop(res.hold_id, None)
        out["redis reserve"].append(t1 - t0)
        out["redis reserve+settle"].append(time.perf_counter() - t0)
    await remote.stop()
    return out


async def end_to_end(urls: dict[str, str], key: dict[str, str], requests: int, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in urls}
    doc = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s:
        # Request by request in turn, so both paths see the same moment of a shared machine.
        for i in range(rounds * requests + 50):
            for name, url in urls.items():
                headers = {"x-api-key": key[name], "anthropic-version": "2023-06-01"}
                t0 = time.perf_counter()
                async with s.post(url + "/v1/messages", json=doc, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                if i >= 50:  # the first 50: warm-up
                    out[name].append(time.perf_counter() - t0)
    return out


def report(title: str, results: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'path':<24} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in results.items():
        print(f"{name:<24} {len(values):>6} {pct(values, 50) * 1000:>8.3f} {pct(values, 99) * 1000:>8.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cg-state-bench-"))
    redis = RedisServer(work / "redis").start()
    gws = []
    try:
        report("admission alone (sequential calls)", asyncio.run(admission(redis, args.calls)))
        with FakeAnthropic() as fake:
            state: dict[str, Any] = {"state": {"redis": {"url": redis.url, "password_file": str(redis.password_file)}}}
            plain = make_gateway(work / "plain", fake.url, fake.api_key)
            shared = make_gateway(work / "redis-gw", fake.url, fake.api_key, state)
            gws = [plain.start(), shared.start()]
            flags = ("--rpm", "1000000", "--tpm", "1000000000", "--daily-tokens", "1000000000")
            keys = {"gateway, SQLite": plain.create_key("bench", *flags), "gateway, Redis": shared.create_key("bench", *flags)}
            urls = {"gateway, SQLite": plain.url, "gateway, Redis": shared.url}
            e2e = asyncio.run(end_to_end(urls, keys, args.requests, args.rounds))
            report("end to end (sequential requests, fake answering at once)", e2e)
            added = statistics.median(e2e["gateway, Redis"]) - statistics.median(e2e["gateway, SQLite"])
            print(f"\nadded by Redis per request, p50 of e2e: {added * 1000:.3f} ms")
    finally:
        for gw in gws:
            gw.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
