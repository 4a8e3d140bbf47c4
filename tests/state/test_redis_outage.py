"""Redis unreachable: budgets fail closed, rates per replica, exact again on its return.

A real redis-server is killed (SIGKILL: an outage, not a shutdown) under
real gateway processes and started again on the same port, empty, as a
Redis without persistence comes back.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet, run_parallel
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import RedisServer


def test_redis_outage_and_return(tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 2, redis_extra={"lease_seconds": 1}))
        a, b = gateways
        rated = a.create_key("rated", "--rpm", "10")
        budget = a.create_key("budget", "--daily-tokens", "100000")
        assert run_parallel([a], budget, [body()])[0][0] == 200
        time.sleep(1)  # both replicas have announced themselves

        redis.stop()
        status, doc, headers = run_parallel([a], budget, [body()])[0]
        assert status == 503, doc
        assert doc["type"] == "error" and doc["error"]["type"] == "api_error"
        assert "daily budget" in doc["error"]["message"] and int(headers["retry-after"]) >= 1
        assert headers["request-id"] == doc["request_id"]
        # Rates: each of the 2 live replicas admits its share, 10 / 2.
        for gw in (a, b):
            statuses = [run_parallel([gw], rated, [body()])[0][0] for _ in range(7)]
            assert statuses == [200] * 5 + [429] * 2, statuses
        # Nothing crashed; each replica stays ready (it serves) and says what it misses.
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
            with urllib.request.urlopen(gw.internal_url + "/healthz", timeout=2) as r:
                assert r.status == 200
            assert internal(gw, "/readyz") == '{"status": "ready", "degraded": ["redis"]}'
            assert "claudegate_state_redis_up 0\n" in internal(gw, "/metrics")

        redis.start()  # same port, empty: no functions, no windows, no counters
        deadline = time.monotonic() + 3
        while run_parallel([a], budget, [body()])[0][0] != 200:
            assert time.monotonic() < deadline, "the budget stayed closed after Redis came back"
            time.sleep(0.1)
        # Exact again, across both replicas, with no restart: a fresh window of 10.
        results = run_parallel([a, b], rated, [body() for _ in range(30)])
        assert [s for s, _, _ in results].count(200) == 10
        assert "claudegate_state_redis_up 1\n" in internal(a, "/metrics")
        # The count a replica saw at its last beat (every second): b may have
        # registered in the new Redis just after a's beat.
        deadline = time.monotonic() + 2.5
        while "claudegate_state_live_replicas 2\n" not in internal(a, "/metrics"):
            assert time.monotonic() < deadline, internal(a, "/metrics")
            time.sleep(0.1)
        # The daily counter was seeded from the durable ledger, not from zero.
        day = time.strftime("%Y-%m-%d", time.gmtime())
        assert int(redis.cli("GET", f"cg:{{budget}}:day:{day}")) > 0
    finally:
        redis.stop()


def internal(gw: GatewayProc, path: str) -> str:
    with urllib.request.urlopen(gw.internal_url + path, timeout=2) as r:
        return str(r.read().decode())


def test_a_gateway_started_while_redis_is_down_fails_closed_then_is_exact_when_it_appears(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    redis = RedisServer(tmp_path / "redis")  # not started yet
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 1))
        (gw,) = gateways
        rated = gw.create_key("rated", "--rpm", "3")
        budget = gw.create_key("budget", "--daily-tokens", "100000")
        free = gw.create_key("free")
        assert run_parallel([gw], free, [body()])[0][0] == 200  # no limit to check: served
        assert run_parallel([gw], budget, [body()])[0][0] == 503
        # Never having seen Redis, it cannot know its share of the rate (how many replicas
        # are there?): refused too, rather than each replica admitting the whole limit.
        status, doc, _ = run_parallel([gw], rated, [body()])[0]
        assert status == 503 and "rate limit" in doc["error"]["message"]
        redis.start()
        deadline = time.monotonic() + 3
        while run_parallel([gw], budget, [body()])[0][0] != 200:
            assert time.monotonic() < deadline, "Redis's arrival was not noticed"
            time.sleep(0.1)
        statuses = [s for s, _, _ in run_parallel([gw], rated, [body() for _ in range(6)])]
        assert statuses.count(200) == 3  # Redis's window: 3, whatever the fallback admitted before
    finally:
        redis.stop()
