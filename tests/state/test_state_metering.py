"""Metering on shared state: the amounts of reservation.py and the settlement
of metering.py, admitted by Redis across replicas, with file estimates and
batch charges in PostgreSQL.

Real gateway processes, Debian's Redis and PostgreSQL (tests/support/state_services),
and the recording fake, which says what it billed (``FakeState.billed``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from claudegate_gateway.pgstore import MIGRATIONS, migrate
from tests.state.test_postgres_store import pg_fleet
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc
from tests.support.state_services import PostgresServer, RedisServer, state_section

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def msg(content: Any, max_tokens: int = 20) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}]}


def doc_ref(file_id: str) -> list[dict[str, Any]]:
    return [{"type": "document", "source": {"type": "file", "file_id": file_id}}, {"type": "text", "text": "sum up"}]


def upload(gw: GatewayProc, key: str, data: bytes) -> str:
    r = httpx.post(gw.url + "/v1/files", headers=hdr(key), files={"file": ("big.txt", data, "text/plain")})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def pg(url: str, password: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, password=password)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_file_estimates_and_batches_on_postgres_and_redis_across_two_replicas(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    state = {**state_section(redis_db, postgres_server, pg_url), "batch_poll_seconds": 0.2}
    gateways.extend(pg_fleet(tmp_path, fake, [state, state]))
    for gw in gateways:
        gw.start()
    a, b = gateways
    password = postgres_server.password
    key = a.create_key("reader", "--daily-tokens", "20000", "--rpm", "100")
    file_id = upload(a, key, b"lorem ipsum " * 2_500)  # 30,000 bytes: ~10,000 tokens reserved per reference
    rows = pg(pg_url, password, "SELECT owner, tokens FROM owned_objects WHERE id = $1", file_id)
    assert [(r["owner"], r["tokens"]) for r in rows] == [("reader", 10_001)]

    # Six references at once, three on each replica: the file's estimate (read
    # from PostgreSQL) is in every reservation, so Redis admits only one.
    fake.state.configure(latency=1.0)
    statuses: list[int] = []

    def send(gw: GatewayProc) -> None:
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg(doc_ref(file_id), 50), timeout=30)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=send, args=(gw,)) for gw in (a, b) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 429, 429, 429, 429, 429]
    assert len(fake.state.requests_for("/v1/messages")) == 1
    fake.state.configure(latency=0.0)
    # One rpm count per request: the upload, the six messages; nothing twice.
    assert int(redis_db.cli("ZCARD", "cg:{reader}:rpm")) == 7
    day = time.strftime("%Y-%m-%d", time.gmtime())
    billed = sum(x.tokens for x in fake.state.billed)
    deadline = time.monotonic() + 5
    while int(redis_db.cli("GET", f"cg:{{reader}}:day:{day}")) != billed:  # settled by metering's charge
        assert time.monotonic() < deadline, (redis_db.cli("GET", f"cg:{{reader}}:day:{day}"), billed)
        time.sleep(0.05)

    # A batch created through b is charged its reservation and settled once,
    # though both replicas poll it.
    batcher = a.create_key("batcher", "--daily-tokens", "1000000")
    small = upload(a, batcher, b"words " * 2_000)
    fake.state.configure(batch_processing_seconds=1.0)
    body = {"requests": [{"custom_id": f"r{i}", "params": msg(doc_ref(small), 500)} for i in range(3)]}
    r = httpx.post(b.url + "/v1/messages/batches", headers=hdr(batcher), json=body)
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    charged = pg(pg_url, password, "SELECT owner, reserved, daily FROM batch_charges WHERE id = $1", batch_id)
    assert [(c["owner"], c["daily"]) for c in charged] == [("batcher", True)]
    reserved = int(charged[0]["reserved"])
    assert reserved > 3 * 4_000 + 1_500

    def settled() -> list[dict[str, Any]]:
        return [rec for gw in gateways for rec in gw.audit() if rec.get("event") == "batch_settled"]

    deadline = time.monotonic() + 15
    while not settled():
        assert time.monotonic() < deadline, "no replica settled the batch"
        time.sleep(0.1)
    time.sleep(1.0)  # both replicas polled it again meanwhile
    assert len(settled()) == 1
    batch_billed = sum(x.tokens for x in fake.state.billed if x.path == "/v1/messages/batches")
    assert settled()[0]["used_tokens"] == batch_billed < reserved
    row = pg(pg_url, password, "SELECT used, settled_at FROM batch_charges WHERE id = $1", batch_id)[0]
    assert row["used"] == batch_billed and row["settled_at"] is not None
    # Admission's view (Redis) and the durable ledger (PostgreSQL) both end at what upstream billed.
    deadline = time.monotonic() + 12  # the ledger is written every 5 s
    while True:
        in_redis = int(redis_db.cli("GET", f"cg:{{batcher}}:day:{day}"))
        in_pg = pg(pg_url, password, "SELECT tokens FROM daily_usage WHERE name = 'batcher' AND day = $1", day)
        ledger = pg(pg_url, password, "SELECT sum(tokens) AS s FROM usage_ledger WHERE name = 'batcher'")
        if in_redis == batch_billed and in_pg and in_pg[0]["tokens"] == batch_billed == ledger[0]["s"]:
            break
        assert time.monotonic() < deadline, (in_redis, in_pg, ledger, batch_billed)
        time.sleep(0.2)


def test_version_2_only_adds_to_a_version_1_schema(postgres_server: PostgresServer, pg_url: str) -> None:
    async def go() -> tuple[list[int], list[asyncpg.Record], list[int]]:
        conn = await asyncpg.connect(pg_url, password=postgres_server.password)
        try:
            # A database a version 1 gateway made, with an owned file in it.
            await conn.execute(
                "CREATE TABLE schema_version (version integer PRIMARY KEY, kind text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(MIGRATIONS[0][2])
            await conn.execute("INSERT INTO schema_version(version, kind) VALUES (1, 'expand')")
            await conn.execute(
                "INSERT INTO owned_objects(id, kind, owner, created_at) VALUES ('file_old', 'file', 'team', 0)"
            )
            applied = await migrate(conn)
            rows = list(await conn.fetch("SELECT id, owner, tokens FROM owned_objects"))
            # A version 1 gateway's insert (its columns named) still works on the new schema.
            await conn.execute(
                "INSERT INTO owned_objects(id, kind, owner, created_at) VALUES ('file_v1', 'file', 'team', 0)"
            )
            again = await migrate(conn)
            return applied, rows, again
        finally:
            await conn.close()

    applied, rows, again = asyncio.run(go())
    assert applied == [2, 3, 4, 5] and again == []
    assert [(r["id"], r["owner"], r["tokens"]) for r in rows] == [("file_old", "team", None)]
