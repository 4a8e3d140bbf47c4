"""``claudegate-gateway state export|import|usage`` against a real PostgreSQL, two real gateways serving on it.

The fleet's backup and restore carry the shared state this way (no
``pg_dump`` in the gateway image; the operator's machine does not reach
PostgreSQL). What a restore must do is checked as a client sees it: a key
revoked after the export works again on both gateways, a key made after it
is refused on both, and a document that does not fit is refused with
nothing written.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from claudegate_gateway.pgstore import MIGRATIONS
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, run_parallel
from tests.support.gateway_proc import GATEWAY, GatewayProc, make_gateway
from tests.support.state_services import PostgresServer, RedisServer, state_section


def _import(gw: GatewayProc, doc: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*GATEWAY, "state", "import", "--config", str(gw.config_path)], input=doc,
                          capture_output=True, timeout=60, check=False)  # fmt: skip


def _status(gw: GatewayProc, key: str) -> int:
    return int(run_parallel([gw], key, [body()])[0][0])


def _until(gateways: list[GatewayProc], key: str, status: int) -> None:
    """Every gateway answers ``key`` with ``status`` within a second (the restore's notification)."""
    deadline = time.monotonic() + 1.0
    for gw in gateways:
        while (got := _status(gw, key)) != status:
            assert time.monotonic() < deadline, (gw.port, got, status)
            time.sleep(0.05)


def _query(pg: PostgresServer, url: str, sql: str) -> Any:
    import asyncio

    async def go() -> Any:
        conn = await asyncpg.connect(url, password=pg.password)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_import_puts_back_every_key_as_it_was_on_every_gateway(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    gateways: list[GatewayProc],
) -> None:
    state = state_section(redis_db, postgres_server, pg_url)
    first = make_gateway(tmp_path / "gw0", fake.url, fake.api_key, state)
    gateways.extend([first, make_gateway(tmp_path / "gw1", fake.url, fake.api_key, state, share_keystore=first)])
    for gw in gateways:
        gw.start()
    old = first.create_key("old", "--rpm", "100")  # no daily budget: the ledger counts every key
    assert run_parallel(gateways, old, [body(), body()])[0][0] == 200  # usage in the ledger, keys cached
    time.sleep(6)  # both replicas flush to the ledger every 5 s
    exported = first.cli("state", "export").stdout
    doc = json.loads(exported)
    assert doc["format"] == "claudegate-state 1" and doc["schema"] == [v for v, _, _ in MIGRATIONS]  # every migration applied
    assert [r["name"] for r in doc["tables"]["clients"]["rows"]] == ["old"]
    assert doc["tables"]["credentials"]["rows"][0]["digest"].startswith("\\x")  # bytea as PostgreSQL's text
    assert exported.count(old) == 0  # the key itself is nowhere, only its keyed hash
    ledger_before = _query(postgres_server, pg_url, "SELECT count(*) AS n, sum(tokens) AS t FROM usage_ledger")[0]
    assert ledger_before["n"] >= 1

    new = first.create_key("new")
    first.cli("keys", "revoke", "old")
    _until(gateways, old, 401)
    _until(gateways, new, 200)

    done = _import(gateways[1], exported.encode())  # through the other gateway: any one reaches PostgreSQL
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["clients"] == 1
    _until(gateways, old, 200)  # revoked after the export: works again, on both
    _until(gateways, new, 401)  # made after it: refused, on both
    listed = {c["name"]: c["state"] for c in json.loads(first.cli("keys", "list", "--json").stdout)}
    assert listed == {"old": "active"}
    ledger_after = _query(postgres_server, pg_url, "SELECT count(*) AS n, sum(tokens) AS t FROM usage_ledger")[0]
    assert ledger_after["t"] >= ledger_before["t"]  # the exported rows are back (later flushes add to them)
    # New ledger rows after the import get ids past the restored ones (the sequence moved on).
    assert _status(first, old) == 200
    time.sleep(6)
    ids = [r["id"] for r in _query(postgres_server, pg_url, "SELECT id FROM usage_ledger ORDER BY id")]
    assert len(ids) == len(set(ids)) and len(ids) > ledger_before["n"]
    usage = json.loads(first.cli("state", "usage", "--client", "old").stdout)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert [(u["client"], u["day"]) for u in usage] == [("old", day)] and usage[0]["tokens"] > 0
    assert json.loads(first.cli("state", "usage", "--since", "2999-01-01").stdout) == []


@pytest.mark.parametrize(
    "damage",
    ["truncated", "newer schema", "unknown table", "missing table", "unknown column", "not json", "bad value"],
)
def test_an_import_that_does_not_fit_is_refused_and_writes_nothing(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
    damage: str,
) -> None:
    gw = make_gateway(tmp_path / "gw", fake.url, fake.api_key, state_section(redis_db, postgres_server, pg_url))
    gw.create_key("kept")
    exported = gw.cli("state", "export").stdout
    gw.cli("keys", "create", "after")
    doc = json.loads(exported)
    if damage == "truncated":
        data = exported[: len(exported) // 2].encode()
    elif damage == "not json":
        data = b"\x00\xff" * 10
    else:
        if damage == "newer schema":
            doc["schema"].append(99)
        elif damage == "unknown table":
            doc["tables"]["pg_authid"] = {"columns": ["rolname"], "rows": [{"rolname": "x"}]}
        elif damage == "missing table":  # replaced means emptied: a ledger left out would be wiped
            del doc["tables"]["usage_ledger"]
        elif damage == "unknown column":
            doc["tables"]["clients"]["columns"].append("is_admin")
        else:  # a value PostgreSQL's own parser refuses: the whole transaction goes
            doc["tables"]["credentials"]["rows"][0]["created_at"] = "soon"
        data = json.dumps(doc).encode()
    refused = _import(gw, data)
    assert refused.returncode != 0, refused.stdout
    assert b"refused, nothing was written" in refused.stderr and b"Traceback" not in refused.stderr, refused.stderr
    names = {c["name"] for c in json.loads(gw.cli("keys", "list", "--json").stdout)}
    assert names == {"kept", "after"}  # nothing was written


def test_a_gateway_refuses_a_schema_a_newer_release_contracted(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, postgres_server: PostgresServer, pg_url: str,
) -> None:
    gw = make_gateway(tmp_path / "gw", fake.url, fake.api_key, state_section(redis_db, postgres_server, pg_url))
    assert "applied 1, 2, 3" in gw.cli("migrate", "--contract").stdout
    gw.start().stop()  # contract steps of versions it knows are fine
    _query(postgres_server, pg_url, "INSERT INTO schema_version(version, kind) VALUES (99, 'contract')")
    with pytest.raises(RuntimeError, match="contracted by a newer release"):
        gw.start()


def test_a_hold_is_settled_into_the_ledger_only_if_its_reservation_went_there() -> None:
    """A version 4 library (an older replica loaded it during a roll) answers 8 fields and ledgers budgeted
    keys only: a budgetless hold settled into `led` there would take tokens off a share never added."""
    from claudegate_gateway.admission_redis import _ledgered

    v4_ok, v5_ok, v5_not = ["ok", 0, 0, 0, 1, 1, 0, 0], ["ok", 0, 0, 0, 1, 1, 0, 0, 1], ["ok", 0, 0, 0, 1, 1, 0, 0, 0]
    assert _ledgered(v5_ok, False, 100) and not _ledgered(v4_ok, False, 100) and not _ledgered(v5_not, False, 100)
    assert _ledgered(v4_ok, True, 100) and _ledgered(v5_ok, True, 100)  # budgeted: as before
    assert not _ledgered(v5_ok, False, 0)  # a rate count reserves no tokens
