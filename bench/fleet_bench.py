"""Throughput of two gateways on shared state against one, on the same CPU budget.

Issue #15 asks what a second host costs and gives. This runs real gateway
processes on this machine, nothing mocked but the Anthropic API:

- ``one host``: one gateway on its own SQLite keystore (no ``state:``);
- ``one host, state``: one gateway on Redis + PostgreSQL (Debian's packages,
  started here on loopback), so the cost of the shared state is seen alone;
- ``two hosts, state``: two gateways on the same Redis + PostgreSQL, the
  load split between them request by request (what a load balancer does).

"Same CPU budget": every gateway process is pinned to the same CPU
(``--gateway-cpu``, default the last one), while the load generator, the
fake upstream, Redis and PostgreSQL run on the others. Two gateways then
share the one CPU a single gateway had, so the table shows what splitting
and sharing state cost, not what a second machine adds. ``--spread`` pins
the two gateways to two CPUs instead (what a second host's own CPU gives),
on a machine that has CPUs to spare.

The three set-ups take turns, ``--seconds`` each, ``--rounds`` times, so a
busy machine's drift falls on all of them alike; the table gives the
median of the rounds. Closed-loop load: ``--concurrency`` clients, each
sending the next request when the last one answered.

Usage (repo root, main venv):
    .venv/bin/python bench/fleet_bench.py [--seconds 8] [--rounds 3] [--concurrency 16] [--spread]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.state_services import PostgresServer, RedisServer

DOC = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
LIMITS = ("--rpm", "100000000", "--tpm", "100000000000", "--daily-tokens", "100000000000")


@dataclass
class Setup:
    name: str
    gateways: list[GatewayProc]
    key: str
    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # the gateways' CPU per request
    errors: int = 0

    def cpu_seconds(self) -> float:
        """User + system CPU of this set-up's gateway processes so far (/proc/<pid>/stat)."""
        total = 0
        for gw in self.gateways:
            assert gw.proc is not None
            fields = Path(f"/proc/{gw.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        return total / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    os.sched_setaffinity(pid, cpus)
    for task in os.listdir(f"/proc/{pid}/task"):  # threads started before the pin (asyncio's, SQLite's)
        os.sched_setaffinity(int(task), cpus)


async def load(setup: Setup, seconds: float, concurrency: int) -> None:
    urls = [gw.url + "/v1/messages" for gw in setup.gateways]
    headers = {"x-api-key": setup.key, "anthropic-version": "2023-06-01"}
    latencies: list[float] = []
    done = 0
    turn = 0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done, turn
            while time.perf_counter() < end:
                url = urls[turn % len(urls)]
                turn += 1
                started = time.perf_counter()
                async with session.post(url, json=DOC, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        setup.errors += 1
                        continue
                latencies.append(time.perf_counter() - started)
                done += 1

        begun, cpu_before = time.perf_counter(), setup.cpu_seconds()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - begun, setup.cpu_seconds() - cpu_before
    setup.cpu_ms.append(cpu / max(done, 1) * 1000)
    latencies.sort()
    setup.rates.append(done / elapsed)
    setup.p50.append(latencies[len(latencies) // 2] * 1000)
    setup.p99.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--gateway-cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--spread", action="store_true", help="pin the two gateways to two CPUs, not one")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpus = {args.gateway_cpu}
    others = set(cpus) - gateway_cpus or set(cpus)
    work = Path(tempfile.mkdtemp(prefix="cg-fleet-bench-"))
    os.chmod(work, 0o755)  # noqa: S103 -- PostgreSQL runs as its own user and must reach its directory
    redis = RedisServer(work / "redis").start()
    postgres = PostgresServer(work / "pg").start()
    started: list[GatewayProc] = []
    try:
        with FakeAnthropic() as fake:

            def state() -> dict[str, Any]:
                return {"state": {
                    "redis": {"url": redis.url, "password_file": str(redis.password_file)},
                    "postgres": {"url": postgres.url, "password_file": str(postgres.password_file)},
                }}  # fmt: skip

            solo = make_gateway(work / "solo", fake.url, fake.api_key).start()
            started.append(solo)
            single = make_gateway(work / "single", fake.url, fake.api_key, state()).start()
            started.append(single)
            first = make_gateway(work / "host1", fake.url, fake.api_key, state(), share_keystore=single).start()
            started.append(first)
            second = make_gateway(work / "host2", fake.url, fake.api_key, state(), share_keystore=single).start()
            started.append(second)
            shared_key = single.create_key("bench", *LIMITS)
            setups = [
                Setup("one host (SQLite)", [solo], solo.create_key("bench", *LIMITS)),
                Setup("one host, state (Redis + PostgreSQL)", [single], shared_key),
                Setup("two hosts, state", [first, second], shared_key),
            ]
            os.sched_setaffinity(0, others)
            for gw in started:
                assert gw.proc is not None
                pin(gw.proc.pid, gateway_cpus)
            if args.spread and len(cpus) > 1:
                assert second.proc is not None
                pin(second.proc.pid, {min(others)})  # its own CPU, shared with the load generator
            for setup in setups:  # warm-up: connections, caches, the key's first lookup
                asyncio.run(load(setup, 1.0, args.concurrency))
                setup.rates.clear()
                setup.p50.clear()
                setup.p99.clear()
                setup.cpu_ms.clear()
                setup.errors = 0
            for _ in range(args.rounds):
                for setup in setups:
                    asyncio.run(load(setup, args.seconds, args.concurrency))
            load_avg = os.getloadavg()
    finally:
        for gw in started:
            gw.stop()
        redis.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(setups[0].rates)
    print(f"\ngateways on CPU {sorted(gateway_cpus)}{' and ' + str(min(others)) if args.spread else ''}; "
          f"load, fake, Redis, PostgreSQL on {sorted(others)}; {args.concurrency} clients, "
          f"{args.rounds} x {args.seconds:.0f} s; load average at the end {load_avg[0]:.1f}")  # fmt: skip
    print(f"{'set-up':<38} {'req/s':>8} {'vs one':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'non-200':>8}")
    for setup in setups:
        rate = statistics.median(setup.rates)
        print(f"{setup.name:<38} {rate:>8.0f} {rate / base:>6.2f}x {statistics.median(setup.p50):>8.2f} "
              f"{statistics.median(setup.p99):>8.2f} {statistics.median(setup.cpu_ms):>11.3f} "
              f"{setup.errors:>8}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
