"""The durable ledger gets what a replica charged exactly once, even when the replica is killed mid-flush.

A flush moves a key's pending charges (``cg:{name}:led``) into a record of its
own in Redis, writes them to PostgreSQL with the record's id in the same
transaction, and drops the record after the commit. These tests kill a real
gateway process (SIGKILL) inside that hand-over:

* between the take and the commit: the test holds a row lock on the key's
  ``daily_usage`` row, so the replica's write waits on it (seen in
  ``pg_stat_activity``) when the kill lands; before the hand-over had records
  (library 7) the taken tokens were gone from the ledger for good;
* between the commit and the drop: Redis is paused for writes (``CLIENT PAUSE
  WRITE``) while the lock is let go, so the commit lands and the drop cannot.

Another replica, started after the kill, finds the record and settles it from
PostgreSQL: given back and written if the id is not there, dropped if it is.
The ledger then equals what upstream billed, exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from claudegate_gateway.keystore import KeyStore
from claudegate_gateway.pgstore import PgKeyStore
from claudegate_gateway.stateconfig import PostgresState
from tests.state.test_postgres_store import pg_fleet
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, run_parallel
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import PostgresServer, RedisServer, state_section

NAME = "crashy"


class Pg:
    """One connection of the test's own, on an event loop of its own (the test is synchronous)."""

    def __init__(self, url: str, password: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(url, password=password))

    def run(self, query: str, *args: object) -> list[asyncpg.Record]:
        return list(self.loop.run_until_complete(self.conn.fetch(query, *args)))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@contextmanager
def pg(url: str, password: str) -> Iterator[Pg]:
    conn = Pg(url, password)
    try:
        yield conn
    finally:
        conn.close()


def _ledger(db: Pg, day: str) -> int:
    rows = db.run("SELECT tokens FROM daily_usage WHERE name = $1 AND day = $2", NAME, day)
    return int(rows[0]["tokens"]) if rows else 0


def _wait(what: str, cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def _blocked_flush(db: Pg) -> bool:
    """A backend of the gateway waits on the lock the test holds on the ledger row."""
    return bool(db.run(
        "SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        " AND query ILIKE '%daily_usage%'"
    ))  # fmt: skip


def _charge_while_locked(
    tmp_path: Path, fake: FakeAnthropic, redis: RedisServer, postgres: PostgresServer, url: str,
    gateways: list[GatewayProc], locker: Pg, watcher: Pg, day: str,
) -> tuple[GatewayProc, GatewayProc, int]:
    """Replica A serves requests and its flush blocks on the locked ledger row; B is made, not started."""
    gateways.extend(pg_fleet(tmp_path, fake, [state_section(redis, postgres, url)] * 2))
    a, b = gateways
    a.start()
    key = a.create_key(NAME, "--daily-tokens", "1000000")
    # The row exists (0 tokens) and the test holds it: a flush's increment waits on it.
    locker.run("INSERT INTO daily_usage(name, day, tokens) VALUES ($1, $2, 0)", NAME, day)
    locker.run("BEGIN")
    locker.run("SELECT tokens FROM daily_usage WHERE name = $1 AND day = $2 FOR UPDATE", NAME, day)
    answers = run_parallel([a], key, [body(max_tokens=50 + 10 * i) for i in range(6)])
    assert [status for status, _, _ in answers] == [200] * 6, answers
    billed = sum(int(doc["usage"]["input_tokens"]) + int(doc["usage"]["output_tokens"]) for _, doc, _ in answers)
    assert billed == sum(x.tokens for x in fake.state.billed)
    # The flush every 5 s takes the pending charges and then waits for the row.
    # (Watched from another connection: within the locker's transaction pg_stat_activity is a snapshot.)
    _wait("replica A's flush blocked on the ledger row", lambda: _blocked_flush(watcher), timeout=20)
    return a, b, billed


def _kill(gw: GatewayProc) -> None:
    assert gw.proc is not None
    gw.proc.kill()  # SIGKILL: nothing of it runs again
    gw.proc.wait(10)


@dataclass
class Locked:
    """Replica A's flush blocked on the ledger row the test holds; B made, not started."""

    day: str
    locker: Pg
    db: Pg
    a: GatewayProc
    b: GatewayProc
    billed: int


@pytest.fixture
def locked(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> Iterator[Locked]:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    with pg(pg_url, postgres_server.password) as locker, pg(pg_url, postgres_server.password) as db:
        a, b, billed = _charge_while_locked(
            tmp_path, fake, redis_db, postgres_server, pg_url, gateways, locker, db, day)  # fmt: skip
        yield Locked(day, locker, db, a, b, billed)


def test_a_replica_killed_between_take_and_commit_loses_nothing_and_counts_nothing_twice(
    locked: Locked, redis_db: RedisServer
) -> None:
    day, locker, db, a, b, billed = locked.day, locked.locker, locked.db, locked.a, locked.b, locked.billed
    _kill(a)  # taken from `led`, not committed
    locker.run("ROLLBACK")  # A's transaction gets its row, then finds its client gone: rolled back
    _wait("A's transaction to end", lambda: not _blocked_flush(db))
    assert _ledger(db, day) == 0
    b.start()  # another replica: its first flush sweeps every key's pending charges
    _wait(f"ledger == billed ({billed})", lambda: _ledger(db, day) == billed)
    time.sleep(6)  # another flush of B's: nothing more
    assert _ledger(db, day) == billed
    assert redis_db.cli("EXISTS", f"cg:{{{NAME}}}:led", f"cg:{{{NAME}}}:fls") == "0"
    # A's flush id is marked abandoned (by B, before giving its record back); B's own is written.
    flushes = [bool(r["committed"]) for r in db.run("SELECT committed FROM ledger_flushes ORDER BY at")]
    assert False in flushes and True in flushes and flushes == sorted(flushes), flushes
    # What admission counts today agrees (it was charged there at the reservation).
    assert int(redis_db.cli("GET", f"cg:{{{NAME}}}:day:{day}")) == billed


def test_a_replica_killed_between_commit_and_drop_is_not_counted_twice(locked: Locked, redis_db: RedisServer) -> None:
    day, locker, db, a, b, billed = locked.day, locked.locker, locked.db, locked.a, locked.b, locked.billed
    records = f"cg:{{{NAME}}}:fls"
    assert redis_db.cli("ZCARD", records) == "1"  # the take is a record, not a deletion
    redis_db.cli("CLIENT", "PAUSE", "60000", "WRITE")  # A's drop (a write) cannot run
    try:
        locker.run("ROLLBACK")
        _wait("A's commit", lambda: bool(db.run("SELECT 1 FROM ledger_flushes WHERE committed")))
        _kill(a)
    finally:
        redis_db.cli("CLIENT", "UNPAUSE")
    assert redis_db.cli("ZCARD", records) == "1"  # committed, and still in Redis
    committed = _ledger(db, day)
    assert 0 < committed <= billed
    b.start()
    _wait("the record to be settled", lambda: redis_db.cli("EXISTS", records) == "0")
    _wait(f"ledger == billed ({billed})", lambda: _ledger(db, day) == billed)
    time.sleep(6)
    assert _ledger(db, day) == billed
    assert int(redis_db.cli("GET", f"cg:{{{NAME}}}:day:{day}")) == billed


def test_a_flush_id_is_written_once_or_abandoned_never_both(
    tmp_path: Path, postgres_server: PostgresServer, pg_url: str
) -> None:
    """The rule both stores keep: a replay of a written id adds nothing; an id marked abandoned is never
    written after; a decision asked while the write is under way waits for it and agrees with it."""
    day = "2026-03-01"
    sqlite = KeyStore(tmp_path / "keys.db", "pepper")
    try:
        assert sqlite.write_usage("r|1", {(day, "k"): 10}) is True
        assert sqlite.write_usage("r|1", {(day, "k"): 10}) is True  # a replay: nothing added
        assert sqlite.decide_usage(["r|1", "r|2"]) == {"r|1": True, "r|2": False}
        assert sqlite.write_usage("r|2", {(day, "k"): 5}) is False  # abandoned first: never written
        assert sqlite.load_daily(day) == {"k": 10}
    finally:
        sqlite.close()

    async def go() -> None:
        store = PgKeyStore(PostgresState(url=pg_url, password_file=postgres_server.password_file), "pepper", "test")
        await store.open()
        locker = await asyncpg.connect(pg_url, password=postgres_server.password)
        try:
            assert await store.write_usage("r|1", {(day, "k"): 10}) is True
            assert await store.write_usage("r|1", {(day, "k"): 10}) is True
            assert await store.decide_usage(["r|2", "r|1"]) == {"r|1": True, "r|2": False}
            assert await store.write_usage("r|2", {(day, "k"): 5}) is False
            # A write held on the ledger row (its id inserted, not committed): the decision waits for it.
            tx = locker.transaction()
            await tx.start()
            await locker.execute("SELECT 1 FROM daily_usage WHERE name = 'k' AND day = $1 FOR UPDATE", day)
            write = asyncio.ensure_future(store.write_usage("r|3", {(day, "k"): 7}))
            await asyncio.sleep(0.5)
            decide = asyncio.ensure_future(store.decide_usage(["r|3"]))
            await asyncio.sleep(0.5)
            assert not write.done() and not decide.done()
            await tx.rollback()
            assert await write is True and await decide == {"r|3": True}
            assert await store.load_daily(day) == {"k": 17}
        finally:
            await locker.close()
            await store.close()

    asyncio.run(go())
