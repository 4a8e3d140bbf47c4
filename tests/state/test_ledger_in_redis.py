"""What a replica charged reaches the durable ledger even when the replica does not live to flush it.

The charges on their way to the ledger wait in Redis (``cg:{name}:led``,
written in the same step as the daily counter), not in the replica's
memory: any replica's flush moves them. Real Redis (Debian's), in-process
admissions; the ledger is a recording function.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from claudegate_gateway.admission_redis import RedisAdmission
from claudegate_gateway.keystore import Client, Scopes
from claudegate_gateway.stateconfig import RedisState
from tests.support.state_services import RedisServer


class Ledger:
    """The durable ledger as the admission sees it: (day, name) -> tokens and the flush ids it
    has (written, or abandoned), with the same rules as the stores'; optionally failing."""

    def __init__(self) -> None:
        self.total: Counter[tuple[str, str]] = Counter()
        self.flushes: dict[str, bool] = {}
        self.fail = False
        self.lose_answer = False  # commit, then fail as if the answer was lost on the way

    async def load(self, day: str) -> dict[str, int]:
        return {name: t for (d, name), t in self.total.items() if d == day}

    async def write(self, txid: str, deltas: dict[tuple[str, str], int]) -> bool:
        if self.fail:
            raise ConnectionError("the ledger is away")
        if txid in self.flushes:
            return self.flushes[txid]
        self.flushes[txid] = True
        self.total.update(deltas)
        if self.lose_answer:
            raise ConnectionError("the answer was lost")
        return True

    async def decide(self, txids: list[str]) -> dict[str, bool]:
        if self.fail:
            raise ConnectionError("the ledger is away")
        return {t: self.flushes.setdefault(t, False) for t in txids}


def _admission(redis: RedisServer, ledger: Ledger) -> RedisAdmission:
    return RedisAdmission(RedisState(url=redis.url, password_file=redis.password_file, lease_seconds=1), "test",
                          in_flight_per_key=4, load_daily=ledger.load, write_usage=ledger.write,
                          decide_usage=ledger.decide)  # fmt: skip


def _client(name: str) -> Client:
    return Client(name, "cgk_" + name[:10].ljust(10, "x"), Scopes(daily_tokens=1_000_000), None, None)


async def test_a_killed_replicas_reservation_reaches_the_ledger_through_another_replica(
    redis_db: RedisServer,
) -> None:
    ledger = Ledger()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    dead = _admission(redis_db, ledger)
    await dead.start()
    await dead.reserve(_client("orphan"), 700)  # upstream has it; then the replica is killed
    assert dead._beat is not None
    dead._beat.cancel()
    await dead.redis.aclose()  # gone without a flush or a settlement: nothing of it runs again
    assert ledger.total[(day, "orphan")] == 0
    # Another replica that never served the key finds the charge (its sweep) and writes it.
    other = _admission(redis_db, ledger)
    await other.start()
    try:
        await other.flush()
        assert ledger.total[(day, "orphan")] == 700  # charged, not given back: no final usage came
        assert redis_db.cli("EXISTS", "cg:{orphan}:led") == "0"
        await other.flush()
        assert ledger.total[(day, "orphan")] == 700  # written once
    finally:
        await other.stop()


async def test_a_settled_request_reaches_the_ledger_as_used_and_a_failed_write_is_kept(
    redis_db: RedisServer,
) -> None:
    ledger = Ledger()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    adm = _admission(redis_db, ledger)
    await adm.start()
    try:
        hold = await adm.reserve(_client("settler"), 700)
        adm.settle(hold, 120)
        await asyncio.sleep(0.2)  # the settlement is written right after the answer
        ledger.fail = True
        try:
            await adm.flush()
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failing ledger write was not reported")
        assert ledger.total[(day, "settler")] == 0
        # Still in Redis, for any replica: in the flush's record, until the ledger decides it.
        txid = redis_db.cli("ZRANGE", "cg:{settler}:fls", "0", "-1")
        assert redis_db.cli("HGET", f"cg:{{settler}}:fl:{txid}", day) == "120"
        ledger.fail = False
        await adm.flush()
        assert ledger.total[(day, "settler")] == 120  # what was used, not the reservation
        assert ledger.flushes[txid] is False  # abandoned: given back and written under a new id
        assert redis_db.cli("EXISTS", "cg:{settler}:fls", "cg:{settler}:led") == "0"
        assert redis_db.cli("GET", f"cg:{{settler}}:day:{day}") == "120"
    finally:
        await adm.stop()


async def test_a_write_whose_answer_was_lost_is_not_written_again(redis_db: RedisServer) -> None:
    ledger = Ledger()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    adm = _admission(redis_db, ledger)
    await adm.start()
    try:
        hold = await adm.reserve(_client("unsure"), 500)
        adm.settle(hold, 80)
        await asyncio.sleep(0.2)
        ledger.lose_answer = True
        try:
            await adm.flush()
        except ConnectionError:
            pass
        else:
            raise AssertionError("the lost answer was not reported")
        assert ledger.total[(day, "unsure")] == 80  # committed; the replica cannot know
        assert redis_db.cli("ZCARD", "cg:{unsure}:fls") == "1"
        ledger.lose_answer = False
        await adm.flush()  # the ledger has the id: the record goes, nothing is added again
        assert ledger.total[(day, "unsure")] == 80
        assert redis_db.cli("EXISTS", "cg:{unsure}:fls", "cg:{unsure}:led") == "0"
        await adm.flush()
        assert ledger.total[(day, "unsure")] == 80
    finally:
        await adm.stop()


async def test_an_older_replica_still_takes_the_old_way_during_a_roll(redis_db: RedisServer) -> None:
    """A replica of an earlier release calls cg_take_ledger without a flush id (library 8 loaded by
    a newer one): it gets the rows, deleted from ``led``, and no record is made for it."""
    ledger = Ledger()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    adm = _admission(redis_db, ledger)
    await adm.start()
    try:
        await adm.reserve(_client("rolling"), 300)
        rows = redis_db.cli("FCALL", "cg_take_ledger", "2", "cg:{rolling}:led", "cg:{rolling}:took")
        assert rows.split() == [day, "300"]
        assert redis_db.cli("EXISTS", "cg:{rolling}:led", "cg:{rolling}:fls") == "0"
        assert redis_db.cli("GET", "cg:{rolling}:took") == "1"
    finally:
        await adm.stop()
