"""Admission in Redis, across several real gateway processes sharing one Redis.

Every test runs the gateway as the container does (tests/support/gateway_proc),
Debian's redis-server (tests/support/state_services) and the recording fake
Anthropic API; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet, post, run_parallel
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import RedisServer


def test_60_parallel_requests_on_6_replicas_against_rpm_10_admit_exactly_10(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    gateways.extend(fleet(tmp_path, fake, redis_db, 6))
    key = gateways[0].create_key("team", "--rpm", "10")
    results = run_parallel(gateways, key, [body() for _ in range(60)])
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 50
    refused = [doc for status, doc, _ in results if status == 429]
    assert all(d["type"] == "error" and d["error"]["type"] == "rate_limit_error" for d in refused)
    assert all("requests per minute" in d["error"]["message"] for d in refused)
    # Upstream saw exactly the admitted ten: no replica let an 11th through.
    assert len(fake.state.requests_for("/v1/messages")) == 10
    # Each replica still admits nobody: the window is shared, not per process.
    for gw in gateways:
        status, _, headers = run_parallel([gw], key, [body()])[0]
        assert status == 429 and int(headers["retry-after"]) >= 1


def test_tpm_window_is_shared_and_settles_to_what_upstream_billed(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    gateways.extend(fleet(tmp_path, fake, redis_db, 2))
    # A reservation is the input estimate + max_tokens (~2000); what upstream
    # bills is ~2 + 10. Unsettled, 3 requests would not fit in 5000 tpm.
    key = gateways[0].create_key("tok", "--tpm", "5000")
    billed: list[int] = []
    for i in range(6):
        status, doc, _ = run_parallel([gateways[i % 2]], key, [body(max_tokens=2000)])[0]
        assert status == 200, doc
        time.sleep(0.1)  # the settlement is written right after the response
        billed.append(doc["usage"]["input_tokens"] + doc["usage"]["output_tokens"])
    # Redis's window total is what upstream billed, not the ~2000-token reservations.
    deadline = time.monotonic() + 5
    while int(redis_db.cli("GET", "cg:{tok}:tot") or 0) != sum(billed):
        assert time.monotonic() < deadline, (redis_db.cli("GET", "cg:{tok}:tot"), billed)
        time.sleep(0.05)


def test_daily_budget_overshoots_by_at_most_one_reservation(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    # Every request holds an in-flight place from its arrival (the refused ones
    # too, until they are answered): room for all 40 at once, so only the budget refuses.
    gateways.extend(fleet(tmp_path, fake, redis_db, 3, max_in_flight_per_key=64))
    budget = 3000
    key = gateways[0].create_key("budget", "--daily-tokens", str(budget))
    # 40 parallel requests of up to ~300 tokens each (estimate + max_tokens):
    # far more than the budget; each replica sees only a third of them.
    docs = [body(max_tokens=300, text="reply with 400 words " + "x" * 40) for _ in range(40)]
    results = run_parallel(gateways, key, docs)
    admitted = [d for s, d, _ in results if s == 200]
    refused = [d for s, d, _ in results if s == 429]
    assert admitted and refused
    assert all("daily budget" in d["error"]["message"] for d in refused), refused
    billed = sum(d["usage"]["input_tokens"] + d["usage"]["output_tokens"] for d in admitted)
    # The reservation the gateway makes: its input estimate (bytes / 3) + max_tokens.
    one_reservation = len(json.dumps(docs[0])) // 3 + 1 + 300
    assert billed <= budget + one_reservation, (billed, len(admitted))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    deadline = time.monotonic() + 5
    # Settled from final usage, across all replicas.
    while int(redis_db.cli("GET", f"cg:{{budget}}:day:{day}")) != billed:
        assert time.monotonic() < deadline, (redis_db.cli("GET", f"cg:{{budget}}:day:{day}"), billed)
        time.sleep(0.05)
    # The durable ledger (the keystore) gets the same total within a flush (5 s).
    deadline = time.monotonic() + 12
    while ledger(gateways[0], day) != billed:
        assert time.monotonic() < deadline, (ledger(gateways[0], day), billed)
        time.sleep(0.2)


def ledger(gw: GatewayProc, day: str) -> int:
    with contextlib.closing(sqlite3.connect(gw.keystore_path)) as db:
        row = db.execute("SELECT tokens FROM daily_usage WHERE name = 'budget' AND day = ?", (day,)).fetchone()
    return int(row[0]) if row else 0


def test_a_replica_killed_mid_request_gives_its_in_flight_place_back_after_the_lease(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    lease = 2.0
    gateways.extend(fleet(tmp_path, fake, redis_db, 2, max_in_flight_per_key=1,
                          redis_extra={"lease_seconds": lease}))  # fmt: skip
    a, b = gateways
    key = a.create_key("one")
    fake.state.hang(seconds=60, body_contains="slow please")

    async def scenario() -> tuple[float, list[int]]:
        async with aiohttp.ClientSession() as s:
            slow = asyncio.create_task(post(s, a, key, body(text="slow please")))
            deadline = time.monotonic() + 10
            while not fake.state.requests_for("/v1/messages"):
                assert time.monotonic() < deadline, "the slow request never reached upstream"
                await asyncio.sleep(0.02)
            # The place is held fleet-wide: B refuses, for longer than a lease
            # (A renews its hold while it lives).
            seen = []
            for _ in range(3):
                status, doc, _ = await post(s, b, key, body())
                seen.append(status)
                assert status == 429 and "in flight" in doc["error"]["message"], doc
                await asyncio.sleep(lease * 0.6)
            assert a.proc is not None
            a.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            while True:
                status, doc, _ = await post(s, b, key, body())
                if status == 200:
                    break
                assert status == 429, doc
                assert time.monotonic() - killed < lease + 2, "the dead replica's hold outlived its lease"
                await asyncio.sleep(0.1)
            slow.cancel()
            with contextlib.suppress(BaseException):
                await slow
            return time.monotonic() - killed, seen

    after, _ = asyncio.run(scenario())
    assert after <= lease + 2
