"""A client that leaves while its admission is on the wire leaves nothing behind in Redis.

Redis is paused (CLIENT PAUSE) so the reserve call is provably in flight
when the request is cancelled; the call still completes on the server, and
the gateway must give back what it took.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from claudegate_gateway.admission_redis import RedisAdmission
from claudegate_gateway.keystore import Client, Scopes
from claudegate_gateway.stateconfig import RedisState
from tests.support.state_services import RedisServer


async def _none(_day: str) -> dict[str, int]:
    return {}


async def _add(_txid: str, _d: dict[tuple[str, str], int]) -> bool:
    return True


async def _decide(txids: list[str]) -> dict[str, bool]:
    return dict.fromkeys(txids, False)


async def test_cancelled_while_reserving_gives_everything_back(redis_db: RedisServer) -> None:
    adm = RedisAdmission(RedisState(url=redis_db.url, password_file=redis_db.password_file), "test",
                         in_flight_per_key=4, load_daily=_none, write_usage=_add, decide_usage=_decide)  # fmt: skip
    await adm.start()
    client = Client("leaver", "cgk_leaverleav", Scopes(rpm=100, tpm=100_000, daily_tokens=1_000_000), None, None)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    try:
        first = await adm.reserve(client, 500)  # seeds the day; settled to 0 below
        adm.settle(first, 0)
        await asyncio.sleep(0.2)
        redis_db.cli("CLIENT", "PAUSE", "400", "ALL")
        task = asyncio.create_task(adm.reserve(client, 700))
        await asyncio.sleep(0.1)  # the FCALL is written and waits in the paused server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.8)  # the pause ends, the call completes, the undo runs
        assert redis_db.cli("ZCARD", "cg:{leaver}:fly") == "0"  # no in-flight place left held
        assert redis_db.cli("GET", "cg:{leaver}:tot") in ("0", "")  # no tokens left in the window
        assert redis_db.cli("GET", f"cg:{{leaver}}:day:{day}") == "0"  # nor on the day
        assert redis_db.cli("ZCARD", "cg:{leaver}:rpm") == "2"  # the request rate still counts both
    finally:
        await adm.stop()


async def test_a_hold_whose_request_ended_unsettled_is_given_back_not_renewed_for_ever(redis_db: RedisServer) -> None:
    adm = RedisAdmission(RedisState(url=redis_db.url, password_file=redis_db.password_file, lease_seconds=1),
                         "test", in_flight_per_key=4, load_daily=_none, write_usage=_add, decide_usage=_decide)  # fmt: skip
    await adm.start()
    client = Client("forgetful", "cgk_forgetfulx", Scopes(tpm=100_000), None, None)
    try:
        # A request path that reserves and never settles (a bug elsewhere): its task ends.
        await asyncio.create_task(adm.reserve(client, 900))
        assert redis_db.cli("ZCARD", "cg:{forgetful}:fly") == "1"
        await asyncio.sleep(1.0)  # a beat or three
        assert redis_db.cli("ZCARD", "cg:{forgetful}:fly") == "0"  # the place is back
        assert redis_db.cli("GET", "cg:{forgetful}:tot") == "900"  # charged as reserved: the safe side
        # A hold whose request is still running keeps being renewed past its lease.
        gate = asyncio.Event()

        async def long_request() -> None:
            await adm.reserve(client, 10)
            await gate.wait()

        task = asyncio.create_task(long_request())
        await asyncio.sleep(2.5)
        assert redis_db.cli("ZCARD", "cg:{forgetful}:fly") == "1"
        gate.set()
        await task
    finally:
        await adm.stop()
