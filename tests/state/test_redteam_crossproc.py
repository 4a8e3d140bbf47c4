"""Red team, round 6: a hostile client with one or two keys, across gateway processes.

Real gateway processes sharing Debian's redis-server (and, where ownership is
the target, PostgreSQL), the recording fake upstream; requests go to one
process and then another. tests/state/test_redteam_state.py (round 3) is not
repeated here.

Tried, and what became of it:

* HOLE (fixed): Redis loses its data (killed, restarted empty: no persistence)
  while requests are in flight. Their settlements (``used - reserved``, a large
  negative number) were applied to the new Redis, which never saw the
  reservations: the ledger's share went *down* by the unused part of each
  reservation, so the durable ledger (and the day counter seeded from it)
  ended far below what upstream billed, a fresh budget for the key. The
  reservation is now marked in Redis and a settlement that finds no mark
  charges what was used instead of the correction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, fleet, post, run_parallel
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import RedisServer


def _ledger(gw: GatewayProc, name: str, day: str) -> int:
    """The key's day in the durable ledger (the fleet's shared SQLite keystore)."""
    with contextlib.closing(sqlite3.connect(gw.keystore_path)) as db:
        row = db.execute("SELECT tokens FROM daily_usage WHERE name = ? AND day = ?", (name, day)).fetchone()
    return int(row[0]) if row else 0


def _used(doc: dict[str, int]) -> int:
    return int(doc["input_tokens"]) + int(doc["output_tokens"])


def test_redis_losing_its_data_mid_request_never_settles_the_ledger_below_what_was_billed(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    """Attack: hold big reservations in flight on two processes while Redis dies and comes back
    empty; the settlements then land on a Redis that never saw the reservations."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gateways.extend(fleet(tmp_path, fake, redis, 2))
        a, b = gateways
        key = a.create_key("spender", "--daily-tokens", "100000")
        day = time.strftime("%Y-%m-%d", time.gmtime())
        fake.state.hang(seconds=2.0, body_contains="hold me", count=3)

        async def scenario() -> list[tuple[int, object, object]]:
            async with aiohttp.ClientSession() as s:
                slow = [asyncio.create_task(post(s, gw, key, body(max_tokens=4000, text="hold me"))) for gw in (a, b, a)]
                deadline = time.monotonic() + 10
                while len(fake.state.requests_for("/v1/messages")) < 3:
                    assert time.monotonic() < deadline, "the held requests never reached upstream"
                    await asyncio.sleep(0.01)
                redis.stop()  # SIGKILL: the reservations (and their ledger share) are gone with it
                redis.start()  # same port, empty
                return list(await asyncio.gather(*slow))

        held = asyncio.run(scenario())
        assert [s for s, _, _ in held] == [200, 200, 200], held
        billed = sum(_used(d["usage"]) for _, d, _ in held)  # type: ignore[index]
        assert billed == sum(x.tokens for x in fake.state.billed)
        # Every replica flushes within 5 s (and notices Redis within 1 s): the ledger ends at
        # least at what upstream billed (more only if a flush took a reservation before the kill).
        deadline = time.monotonic() + 15
        while _ledger(a, "spender", day) < billed:
            assert time.monotonic() < deadline, f"ledger {_ledger(a, 'spender', day)} < billed {billed}"
            time.sleep(0.2)
        # And admission's day (seeded from that ledger) counts them too: no fresh budget.
        status, doc, _ = run_parallel([b], key, [body()])[0]
        assert status == 200, doc
        assert int(redis.cli("GET", f"cg:{{spender}}:day:{day}")) >= billed + _used(doc["usage"])
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
            assert "Traceback" not in gw.log_path.read_text()
    finally:
        redis.stop()

