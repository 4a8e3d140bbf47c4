"""Red team, round 3: the state tier (Redis admission, PostgreSQL keystore) as a hostile client sees it.

Real gateway processes, Debian's redis-server and postgresql, the recording
fake; a partition is a TCP relay that is cut. Hole found here (failed before
its fix): unknown keys were cached in the same bounded LRU as known ones, so
a client with no key at all could push every known key out of the cache by
sending random well-formed keys; during a PostgreSQL outage those known keys
then failed (503) instead of being served from the cache.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from pathlib import Path

import aiohttp

from claudegate_gateway.keystore import KEY_PREFIX
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet, post, run_parallel
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.state_services import PostgresServer, RedisServer, state_section
from tests.support.tcp_relay import TcpRelay

_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _random_key() -> str:
    """A key of the right shape that no client holds."""
    def pick(n: int) -> str:
        return "".join(secrets.choice(_ALPHABET) for _ in range(n))

    return f"{KEY_PREFIX}{pick(10)}_{pick(40)}"


def test_unknown_keys_cannot_push_known_ones_out_of_the_postgres_cache(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer,
    gateways: list[GatewayProc],
) -> None:
    """Attack: before an outage (or to make one hurt), send many random keys of the right shape.
    Each 401 must not cost a known client its place in the bounded cache."""
    url = postgres_server.fresh_database()
    with TcpRelay(postgres_server.port) as relay:
        via_relay = url.replace(f":{postgres_server.port}/", f":{relay.port}/")
        gw = make_gateway(tmp_path / "gw", fake.url, fake.api_key,
                          state_section(redis_db, postgres_server, via_relay, cache_entries=8))
        gateways.append(gw)
        gw.start()
        known = [gw.create_key(f"team{i}") for i in range(4)]
        for key in known:
            assert run_parallel([gw], key, [body()])[0][0] == 200  # now cached
        for _ in range(4):  # 40 strangers, in parallel batches of 10
            strangers = [_random_key() for _ in range(10)]

            async def knock(keys: list[str]) -> list[int]:
                async with aiohttp.ClientSession() as s:
                    return [r[0] for r in await asyncio.gather(*(post(s, gw, k, body()) for k in keys))]

            assert set(asyncio.run(knock(strangers))) == {401}
        relay.cut()
        time.sleep(0.6)  # the listening connection has noticed
        for key in known:
            status, doc, _ = run_parallel([gw], key, [body()])[0]
            assert status == 200, (status, doc)
        # A stranger during the outage: not known, not cacheable; refused, and the gateway lives.
        status, _, _ = run_parallel([gw], _random_key(), [body()])[0]
        assert status in (401, 503)
        relay.restore()
    assert gw.proc is not None and gw.proc.poll() is None
    assert "Traceback" not in gw.log_path.read_text()


def test_huge_max_tokens_never_reach_redis_counters(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    """Attack: max_tokens far past any integer Redis keeps (2^63, 10^30), and a batch whose sum
    passes 2^63, against a daily budget and a tpm limit: refused, counters untouched."""
    gateways.extend(fleet(tmp_path, fake, redis_db, 1))
    gw = gateways[0]
    daily = gw.create_key("daily", "--daily-tokens", "100000")
    tpm = gw.create_key("tpm", "--tpm", "100000")
    assert run_parallel([gw], daily, [body()])[0][0] == 200  # seeds today's counter
    day = time.strftime("%Y-%m-%d", time.gmtime())
    before = int(redis_db.cli("GET", f"cg:{{daily}}:day:{day}") or 0)
    for key in (daily, tpm):
        for huge in (2**63, 2**63 - 1, 10**30, 2**53 + 1):
            status, doc, _ = run_parallel([gw], key, [body(max_tokens=huge)])[0]
            assert status in (400, 413, 429), (huge, status, doc)
            assert doc["type"] == "error"
    batch = {"requests": [{"custom_id": f"r{i}", "params": body(max_tokens=2**62)} for i in range(3)]}

    async def send_batch() -> int:
        async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/messages/batches", json=batch,
            headers={"x-api-key": daily, "anthropic-version": "2023-06-01"},
        ) as r:  # fmt: skip
            return r.status

    assert asyncio.run(send_batch()) in (400, 413, 429)
    assert int(redis_db.cli("GET", f"cg:{{daily}}:day:{day}") or 0) == before
    assert int(redis_db.cli("GET", "cg:{tpm}:tot") or 0) == 0
    assert not fake.state.requests_for("/v1/messages/batches")
    assert run_parallel([gw], daily, [body()])[0][0] == 200  # still exact afterwards
    assert "Traceback" not in gw.log_path.read_text()


def test_a_replica_stopped_past_its_lease_holds_nothing_when_it_wakes(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    """Attack on the lease: SIGSTOP the replica holding the only in-flight place for longer than
    the lease. The place frees after the lease (documented); when the replica wakes, its renewal
    must not resurrect a hold another replica's admission already dropped, and once its request
    ends nothing is left held."""
    lease = 1.5
    gateways.extend(fleet(tmp_path, fake, redis_db, 2, max_in_flight_per_key=1,
                          redis_extra={"lease_seconds": lease}))  # fmt: skip
    a, b = gateways
    key = a.create_key("one")
    fake.state.hang(seconds=lease * 3 + 2, body_contains="slow please")

    async def scenario() -> list[int]:
        async with aiohttp.ClientSession() as s:
            slow = asyncio.create_task(post(s, a, key, body(text="slow please")))
            deadline = time.monotonic() + 10
            while not fake.state.requests_for("/v1/messages"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)
            try:
                stopped = time.monotonic()
                while (await post(s, b, key, body()))[0] != 200:
                    assert time.monotonic() - stopped < lease + 2, "the stopped replica's hold outlived its lease"
                    await asyncio.sleep(0.1)
            finally:
                a.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(lease)  # a's beat has run (renewal) at least once since waking
            held = int(redis_db.cli("ZCARD", "cg:{one}:fly") or 0)
            status = (await slow)[0]
            return [held, status]

    held, status = asyncio.run(scenario())
    assert held == 0, "the woken replica brought back a hold that had been given up"
    assert status == 200
    # Nothing left held: both replicas admit again.
    assert run_parallel([b], key, [body()])[0][0] == 200
    assert run_parallel([a], key, [body()])[0][0] == 200
    assert int(redis_db.cli("ZCARD", "cg:{one}:fly") or 0) == 0


def test_clients_leaving_at_every_point_of_a_stream_leave_no_hold(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    """Attack: open streams and drop the connection at every stage: while admission runs
    (before any byte comes back), after the headers, after k events. Every in-flight place
    must come back at once (not after a lease) and no request may hold tokens it never used
    beyond its reservation."""
    gateways.extend(fleet(tmp_path, fake, redis_db, 2, max_in_flight_per_key=4,
                          redis_extra={"lease_seconds": 30}))  # fmt: skip
    key = gateways[0].create_key("leaver", "--tpm", "10000000")
    fake.state.configure(latency=0.05, event_delay=0.03)
    stream = {**body(max_tokens=64, text="tell a long story"), "stream": True}

    async def leave_after(s: aiohttp.ClientSession, gw: GatewayProc, cut: int) -> None:
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        try:
            async with asyncio.timeout(0.01 + 0.004 * cut if cut < 10 else 30):
                async with s.post(gw.url + "/v1/messages", json=stream, headers=headers) as r:
                    seen = 0
                    async for _ in r.content.iter_any():
                        seen += 1
                        if seen >= cut - 10:
                            break
        except TimeoutError:
            pass

    async def run() -> None:
        for wave in range(3):
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                await asyncio.gather(*(leave_after(s, gateways[(wave + i) % 2], cut)
                                       for i, cut in enumerate(range(wave, 24, 3))))

    asyncio.run(run())
    deadline = time.monotonic() + 3  # well inside the 30 s lease: given back by the request's end, not the lease
    while int(redis_db.cli("ZCARD", "cg:{leaver}:fly") or 0) != 0:
        assert time.monotonic() < deadline, redis_db.cli("ZRANGE", "cg:{leaver}:fly", "0", "-1", "WITHSCORES")
        time.sleep(0.1)
    fake.state.configure(latency=0.0, event_delay=0.0)
    results = run_parallel(gateways, key, [body() for _ in range(4)])  # all four places are free
    assert [s for s, _, _ in results] == [200] * 4
    records = []
    for gw in gateways:
        assert gw.proc is not None and gw.proc.poll() is None
        assert "Traceback" not in gw.log_path.read_text()
        records += [json.loads(line) for line in gw.audit_path.read_text().splitlines() if line]
    # Every drop is audited as the client's, never as the gateway's failure.
    assert [r for r in records if r["status"] == 500 or r["error_type"] == "api_error"] == []
    assert any(r["error_type"] == "client_closed" or r["status"] == 499 for r in records)


async def _no_ledger(_day: str) -> dict[str, int]:
    return {}


async def _keep(_txid: str, _d: dict[tuple[str, str], int]) -> bool:
    return True


async def _decide(txids: list[str]) -> dict[str, bool]:
    return dict.fromkeys(txids, False)


async def test_a_replica_whose_clock_is_off_charges_redis_s_day(redis_db: RedisServer) -> None:
    """Attack on clock skew: round-robin requests onto a replica whose clock is a day (or a few
    minutes past midnight) ahead. It named the day counter after its own clock, found it empty
    ("not seeded") and gave the key a fresh daily budget. Redis's clock decides the day now.

    Two RedisAdmission instances on one real Redis, as two replicas; the skewed one's clock is
    shifted while it decides (the clock being the thing attacked)."""
    from unittest import mock

    from claudegate_gateway.admission_redis import RedisAdmission
    from claudegate_gateway.errors import GatewayError
    from claudegate_gateway.keystore import Client, Scopes
    from claudegate_gateway.stateconfig import RedisState

    state = RedisState(url=redis_db.url, password_file=redis_db.password_file)
    honest = RedisAdmission(state, "honest", in_flight_per_key=8, load_daily=_no_ledger, write_usage=_keep, decide_usage=_decide)
    skewed = RedisAdmission(state, "skewed", in_flight_per_key=8, load_daily=_no_ledger, write_usage=_keep, decide_usage=_decide)
    await honest.start()
    await skewed.start()
    client = Client("budget", "cgk_budgetbudg", Scopes(daily_tokens=1000), None, None)
    real = time.time
    try:
        first = await honest.reserve(client, 900)
        honest.settle(first, 900)
        for ahead in (86_400.0, 3 * 86_400.0, -86_400.0):
            # The time module is one object: admission_redis reads this same clock.
            with mock.patch.object(time, "time", lambda a=ahead: real() + a):
                try:
                    await skewed.reserve(client, 900)
                except GatewayError as err:
                    assert err.error_type == "rate_limit_error" and "daily budget" in err.message, err.message
                else:
                    raise AssertionError(f"a replica {ahead:+.0f} s off admitted 900 more tokens on a 1000 day")
        # Redis holds one day counter for the key: today's by Redis's clock.
        day = time.strftime("%Y-%m-%d", time.gmtime(int(redis_db.cli("TIME").split()[0])))
        assert redis_db.cli("KEYS", "cg:{budget}:day:*").split() == [f"cg:{{budget}}:day:{day}"]
    finally:
        await honest.stop()
        await skewed.stop()
