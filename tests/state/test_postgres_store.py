"""Keys, owned objects and usage in a real PostgreSQL, shared by real gateway processes.

PostgreSQL is Debian's, started by tests/support/state_services; each test
gets a database of its own. A partition between one gateway and PostgreSQL
is a TCP relay that is cut (tests/support/tcp_relay): the bytes are the
real server's.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from claudegate_gateway.keystore import KeyStore, Scopes
from claudegate_gateway.pgstore import PgKeyStore, migrate
from claudegate_gateway.stateconfig import PostgresState
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, run_parallel
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.state_services import PostgresServer, RedisServer, state_section
from tests.support.tcp_relay import TcpRelay


def pg_fleet(tmp_path: Path, fake: FakeAnthropic, state: list[dict[str, Any]]) -> list[GatewayProc]:
    first = make_gateway(tmp_path / "gw0", fake.url, fake.api_key, state[0])
    rest = [make_gateway(tmp_path / f"gw{i}", fake.url, fake.api_key, s, share_keystore=first)
            for i, s in enumerate(state[1:], 1)]  # fmt: skip
    return [first, *rest]


def test_migrations_run_once_when_many_replicas_start_together(postgres_server: PostgresServer, pg_url: str) -> None:
    async def go() -> list[list[int]]:
        conns = [await asyncpg.connect(pg_url, password=postgres_server.password) for _ in range(6)]
        try:
            # The DDL has no IF NOT EXISTS: a second run of a step would fail loudly.
            return list(await asyncio.gather(*(migrate(c) for c in conns)))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(go())
    assert sorted(map(tuple, results)) == [(), (), (), (), (), (1, 2, 3, 4, 5)]

    async def versions() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(pg_url, password=postgres_server.password)
        try:
            return [(r["version"], r["kind"]) for r in await conn.fetch("SELECT version, kind FROM schema_version")]
        finally:
            await conn.close()

    assert asyncio.run(versions()) == [(1, "expand"), (2, "expand"), (3, "expand"), (4, "expand"), (5, "expand")]


def test_revoke_and_rotate_on_one_gateway_are_refused_on_another_within_a_second(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    state = state_section(redis_db, postgres_server, pg_url)
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    key = a.create_key("team")
    other = a.create_key("other")
    # Both gateways know (and cache) both keys.
    for gw in gateways:
        for k in (key, other):
            assert run_parallel([gw], k, [body()])[0][0] == 200

    b.cli("keys", "revoke", "team")
    revoked_at = time.monotonic()
    while run_parallel([a], key, [body()])[0][0] != 401:
        assert time.monotonic() - revoked_at < 1.0, "the revocation did not reach the other gateway within 1 s"
        time.sleep(0.02)
    assert run_parallel([a], other, [body()])[0][0] == 200  # only that client's keys went

    new = b.cli("keys", "rotate", "other").stdout.strip().splitlines()[-1]
    rotated_at = time.monotonic()
    while run_parallel([a], other, [body()])[0][0] != 401:
        assert time.monotonic() - rotated_at < 1.0, "the rotated-out key still worked after 1 s"
        time.sleep(0.02)
    assert run_parallel([a], new, [body()])[0][0] == 200

    # A scope change is pushed too: a lower rpm applies on the other gateway at once.
    b.cli("keys", "update", "other", "--rpm", "1")
    updated_at = time.monotonic()
    while True:
        statuses = [s for s, _, _ in run_parallel([a], new, [body(), body()])]
        if 429 in statuses:
            break
        assert time.monotonic() - updated_at < 1.5, "the new rpm did not reach the other gateway"


def test_postgres_partition_serves_known_keys_refuses_new_ones_and_writes_then_applies_revocations(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    with TcpRelay(postgres_server.port) as relay:
        cut_off = state_section(redis_db, postgres_server, pg_url.replace(f":{postgres_server.port}/", f":{relay.port}/"))
        direct = state_section(redis_db, postgres_server, pg_url)
        gateways.extend(pg_fleet(tmp_path, fake, [cut_off, direct]))
        for gw in gateways:
            gw.start()
        a, b = gateways
        known = b.create_key("known")
        assert run_parallel([a], known, [body()])[0][0] == 200
        metered = b.create_key("metered", "--daily-tokens", "1000000")
        spent = [run_parallel([a], metered, [body()])[0]]  # seeds today's counter in Redis

        relay.cut()
        time.sleep(0.5)  # a's listening connection has noticed
        assert run_parallel([a], known, [body()])[0][0] == 200  # from a's cache
        fresh = b.create_key("fresh")  # made while a cannot see PostgreSQL
        status, doc, headers = run_parallel([a], fresh, [body()])[0]
        assert status == 503 and doc["error"]["type"] == "api_error" and int(headers["retry-after"]) >= 1
        # Owned-object writes fail closed, before upstream is asked to make anything.
        upload = _upload(a, known)
        assert upload[0] == 503, upload
        assert not fake.state.requests_for("/v1/files")
        # Budgets are Redis's business, which a still reaches: served, the usage kept in memory.
        spent += run_parallel([a], metered, [body(), body()])
        assert [s for s, _, _ in spent] == [200, 200, 200]
        deadline = time.monotonic() + 12  # a flush (every 5 s) meets the outage and keeps the usage
        while "usage not written to the ledger yet" not in a.log_path.read_text():
            assert time.monotonic() < deadline, a.log_path.read_text()[-2000:]
            time.sleep(0.2)
        b.cli("keys", "revoke", "known")
        assert run_parallel([a], known, [body()])[0][0] == 200  # a cannot know yet: the documented window
        with urllib.request.urlopen(a.internal_url + "/readyz", timeout=2) as r:  # serving, degraded
            assert json.loads(r.read()) == {"status": "ready", "degraded": ["postgres"]}

        relay.restore()
        back = time.monotonic()
        while run_parallel([a], known, [body()])[0][0] != 401:
            assert time.monotonic() - back < 1.0, "the revocation made during the outage was not applied within 1 s"
            time.sleep(0.02)
        assert run_parallel([a], fresh, [body()])[0][0] == 200
        for gw in gateways:
            assert gw.proc is not None and gw.proc.poll() is None
        # The usage a metered during the outage reaches the ledger once PostgreSQL is back.
        billed = sum(d["usage"]["input_tokens"] + d["usage"]["output_tokens"] for _, d, _ in spent)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        deadline = time.monotonic() + 15

        async def in_ledger() -> int:
            conn = await asyncpg.connect(pg_url, password=postgres_server.password)
            try:
                return int(await conn.fetchval(
                    "SELECT coalesce(sum(tokens), 0) FROM daily_usage WHERE name = 'metered' AND day = $1", day))
            finally:
                await conn.close()

        while asyncio.run(in_ledger()) != billed:
            assert time.monotonic() < deadline, (asyncio.run(in_ledger()), billed)
            time.sleep(0.3)


def _upload(gw: GatewayProc, key: str) -> tuple[int, Any]:
    import aiohttp

    async def go() -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", b"hello", filename="a.txt", content_type="text/plain")
        async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/files", data=form,
            headers={"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"},
        ) as r:  # fmt: skip
            return r.status, await r.json()

    return asyncio.run(go())


def test_migrate_state_moves_every_key_object_and_day_of_usage(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    # A one-host deployment with history: keys (one rotated, one revoked), objects, usage.
    one = make_gateway(tmp_path / "one", fake.url, fake.api_key)
    sqlite_path = one.keystore_path
    store = KeyStore(sqlite_path, one.pepper)
    alive = store.create("alive", Scopes(rpm=100, daily_tokens=50_000))
    rotated_old = store.create("rotating", Scopes())
    rotated_new = store.rotate("rotating", 3600)
    gone = store.create("gone", Scopes())
    store.revoke("gone")
    store.owners.record("file", "file_abc", "alive", 777)  # with its token estimate
    store.owners.record("batch", "msgbatch_xyz", "rotating", obj='{"id":"msgbatch_xyz","type":"message_batch"}')
    day = time.strftime("%Y-%m-%d", time.gmtime())
    store.add_daily("alive", day, 1234)
    store.add_daily("rotating", "2026-01-01", 99)
    store.charge_batch("msgbatch_xyz", "rotating", "2026-01-01", 99, True)  # still open: settled after the move
    store.close()

    pg = make_gateway(tmp_path / "pg", fake.url, fake.api_key, state_section(redis_db, postgres_server, pg_url),
                      share_keystore=one)  # fmt: skip
    gateways.append(pg)
    out = pg.cli("migrate")
    assert "applied 1, 2, 3" in out.stdout
    out = pg.cli("migrate-state", "--from", str(sqlite_path))
    assert out.stdout.strip() == "copied 3 clients, 4 credentials, 2 owned objects, 1 open batches, 2 usage days"
    again = pg.cli("migrate-state", "--from", str(sqlite_path))  # a second run copies nothing twice
    assert again.stdout.strip() == "copied 0 clients, 0 credentials, 0 owned objects, 0 open batches, 2 usage days"
    async def check() -> tuple[dict[str, int], dict[str, int], set[str], set[str], dict[str, int], Any, Any]:
        s = PgKeyStore(PostgresState(url=pg_url, password_file=postgres_server.password_file), pg.pepper, "test")
        await s.open()
        try:
            return (await s.load_daily(day), await s.load_daily("2026-01-01"),
                    await s.owned("file", "alive", ["file_abc"]), await s.owned("batch", "rotating", ["msgbatch_xyz"]),
                    await s.file_tokens("alive", ["file_abc"]), await s.open_batches(10),
                    [await s.page("batch", "rotating", None, False, 20),
                     await s.page("batch", "rotating", "msgbatch_xyz", False, 20),
                     await s.page("batch", "rotating", "msgbatch_xyz", True, 20),
                     await s.page("batch", "alive", "msgbatch_xyz", False, 20)])  # fmt: skip
        finally:
            await s.close()

    today, old_day, files, batches, estimates, open_batches, listed = asyncio.run(check())
    # The object as last seen moved too: the list answers from PostgreSQL as it did from SQLite.
    assert listed[0] == [("msgbatch_xyz", '{"id":"msgbatch_xyz","type":"message_batch"}')]
    assert listed[1:] == [[], [], None]  # nothing past its only object either way; another owner's cursor: None
    assert today == {"alive": 1234} and old_day == {"rotating": 99}  # copied once, not doubled by the rerun
    assert files == {"file_abc"} and batches == {"msgbatch_xyz"}
    assert estimates == {"file_abc": 777}
    assert open_batches == [("msgbatch_xyz", "rotating", "2026-01-01", 99)]
    listing = {c["name"]: c for c in json.loads(pg.cli("keys", "list", "--json").stdout)}
    assert {n: c["state"] for n, c in listing.items()} == {"alive": "active", "gone": "revoked", "rotating": "active"}
    assert listing["alive"]["scopes"]["daily_tokens"] == 50_000
    assert len(listing["rotating"]["credentials"]) == 2
    # Every key works (or not) exactly as it did on the one host.
    pg.start()
    for k in (alive, rotated_old, rotated_new):
        assert run_parallel([pg], k, [body()])[0][0] == 200
    assert run_parallel([pg], gone, [body()])[0][0] == 401
    with sqlite3.connect(sqlite_path) as db:  # the source is left as it was
        assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 3


def test_migrate_state_refuses_a_target_that_holds_another_keystore_and_copies_nothing(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
) -> None:
    ours = make_gateway(tmp_path / "ours", fake.url, fake.api_key)
    store = KeyStore(ours.keystore_path, ours.pepper)
    store.create("team-a", Scopes())
    store.owners.record("file", "file_shared_id", "team-a")
    store.close()
    theirs = make_gateway(tmp_path / "theirs", fake.url, fake.api_key)
    other = KeyStore(theirs.keystore_path, theirs.pepper)
    other.create("team-a", Scopes())  # the same name, another client (made at another time)
    other.create("team-z", Scopes())
    other.owners.record("file", "file_shared_id", "team-z")  # a hostile takeover of an object id
    other.close()
    pg = make_gateway(tmp_path / "pg", fake.url, fake.api_key, state_section(redis_db, postgres_server, pg_url),
                      share_keystore=theirs)  # fmt: skip
    assert "copied 2 clients" in pg.cli("migrate-state", "--from", str(theirs.keystore_path)).stdout
    refused = pg.cli("migrate-state", "--from", str(ours.keystore_path), check=False)
    assert refused.returncode == 4, refused.stderr
    assert "already holds different data" in refused.stderr and "nothing was copied" in refused.stderr
    assert "client 'team-z' is not in the SQLite keystore" in refused.stderr
    assert "client 'team-a' was made at another time there" in refused.stderr
    assert "file file_shared_id belongs to another client there" in refused.stderr
    listing = {c["name"] for c in json.loads(pg.cli("keys", "list", "--json").stdout)}
    assert listing == {"team-a", "team-z"}  # unchanged: the refused run wrote nothing
    # The first copy again is still fine: idempotent.
    assert "copied 0 clients" in pg.cli("migrate-state", "--from", str(theirs.keystore_path)).stdout


def test_usage_reaches_the_postgres_ledger_and_reseeds_a_redis_that_lost_its_data(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    state = state_section(redis_db, postgres_server, pg_url)
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    key = gateways[0].create_key("metered", "--daily-tokens", "1000000")
    results = run_parallel(gateways, key, [body(max_tokens=50) for _ in range(8)])
    assert [s for s, _, _ in results] == [200] * 8
    billed = sum(d["usage"]["input_tokens"] + d["usage"]["output_tokens"] for _, d, _ in results)
    day = time.strftime("%Y-%m-%d", time.gmtime())

    async def ledger() -> tuple[int, int]:
        conn = await asyncpg.connect(pg_url, password=postgres_server.password)
        try:
            daily = await conn.fetchval("SELECT tokens FROM daily_usage WHERE name = 'metered' AND day = $1", day)
            rows = await conn.fetchval("SELECT sum(tokens) FROM usage_ledger WHERE name = 'metered' AND day = $1", day)
            return int(daily or 0), int(rows or 0)
        finally:
            await conn.close()

    deadline = time.monotonic() + 15  # both replicas flush every 5 s
    while asyncio.run(ledger()) != (billed, billed):
        assert time.monotonic() < deadline, (asyncio.run(ledger()), billed)
        time.sleep(0.3)

    # Every replica knows its charges are in the ledger (a flush took them: each notices within a
    # beat); else it would charge them again when Redis loses its data (never less than billed).
    deadline = time.monotonic() + 5
    while not all("claudegate_state_unflushed_keys 0\n" in _metrics(gw) for gw in gateways):
        assert time.monotonic() < deadline, [_metrics(gw) for gw in gateways]
        time.sleep(0.05)
    redis_db.cli("FLUSHALL")  # Redis lost everything (a restart without persistence)
    status, doc, _ = run_parallel([gateways[1]], key, [body(max_tokens=50)])[0]
    assert status == 200, doc
    time.sleep(0.3)
    now_charged = int(redis_db.cli("GET", f"cg:{{metered}}:day:{day}"))
    # Seeded from the ledger, so today's spending was not forgotten.
    assert now_charged == billed + doc["usage"]["input_tokens"] + doc["usage"]["output_tokens"]


def test_lists_come_from_the_shared_index_whichever_replica_answers(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    """Files made through either replica, listed through either: the caller's own, newest first,
    paged across replicas by after_id and next_page, another client's never, upstream's list never asked."""
    import httpx

    state = state_section(redis_db, postgres_server, pg_url)
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    alice, bob = a.create_key("alice"), a.create_key("bob")
    mine = []
    for i in range(6):
        status, doc = _upload(gateways[i % 2], alice)
        assert status == 200, doc
        mine.append(doc["id"])
        assert _upload(gateways[(i + 1) % 2], bob)[0] == 200
    newest_first = list(reversed(mine))
    fake.state.clear_requests()
    hdr = {"x-api-key": alice, "anthropic-version": "2023-06-01"}
    first = httpx.get(a.url + "/v1/files", headers=hdr, params={"limit": "4"}).json()
    assert [f["id"] for f in first["data"]] == newest_first[:4] and first["has_more"] is True
    assert first["data"][0]["filename"] == "a.txt"  # the object as upstream answered its upload
    by_id = httpx.get(b.url + "/v1/files", headers=hdr, params={"limit": "4", "after_id": first["last_id"]}).json()
    by_page = httpx.get(b.url + "/v1/files", headers=hdr, params={"limit": "4", "page": first["next_page"]}).json()
    assert [f["id"] for f in by_id["data"]] == [f["id"] for f in by_page["data"]] == newest_first[4:]
    assert by_id["has_more"] is False and by_page["next_page"] is None
    theirs = httpx.get(b.url + "/v1/files", headers={**hdr, "x-api-key": bob}, params={"limit": "1000"}).json()
    assert not set(mine) & {f["id"] for f in theirs["data"]} and len(theirs["data"]) == 6
    stolen = httpx.get(a.url + "/v1/files", headers={**hdr, "x-api-key": bob}, params={"after_id": mine[-1]}).json()
    assert stolen["data"] == [] and stolen["has_more"] is False
    assert fake.state.requests == []


def _metrics(gw: GatewayProc) -> str:
    with urllib.request.urlopen(gw.internal_url + "/metrics", timeout=2) as r:
        return str(r.read().decode())
