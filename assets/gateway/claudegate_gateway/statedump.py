"""The shared state's rows as one JSON document, and back (``claudegate-gateway state export|import|usage``).

A backup of several hosts needs what PostgreSQL holds (clients, key
hashes, owned objects, the usage ledger), whoever runs that PostgreSQL: the
hosts reach it, the operator's machine usually does not, and a gateway
image has no ``pg_dump``. So the gateway itself reads claudegate's tables
in one read-only, repeatable-read transaction (one consistent moment) and
writes them as JSON; PostgreSQL renders every value as text
(``row_to_json``) and parses it back with the column's own type on import
(``json_populate_recordset``), so no value changes on the way.

Import replaces every row of those tables in *one* transaction, under the
migrations' advisory lock: it is whole or not at all, and a gateway that
reads meanwhile sees the old rows until the commit. It is refused, with
nothing written, when the document is not one this code wrote, names a
table or column this database does not have, or was made on a schema with
a migration this database lacks (a newer release's backup: deploy that
release first). After the commit every client named before or after is
announced on the key channel, so every replica drops what it cached about
them (a key revoked since the backup works again at once, a key made since
is refused at once). ``schema_version`` is the database's own and is not
replaced.

``usage`` answers from ``daily_usage``: the tokens each client was charged
each UTC day, the durable total every replica settles into.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from claudegate_gateway.pgstore import CHANNEL, MIGRATION_LOCK

FORMAT = "claudegate-state 1"
#: Claudegate's tables in the order they are filled (clients before the credentials that name them).
#: Not ``tls_certificates`` (the ACME share of several hosts): a restore leaves it as it is, since an
#: older certificate brought back would only be refused by every host, and the issuer shares its
#: current one again every round. Nor ``ledger_flushes`` (which usage flushes the ledger has, by id):
#: it describes hand-overs from Redis under way, not usage, and a restore keeps what was decided.
TABLES = ("clients", "credentials", "owned_objects", "daily_usage", "usage_ledger", "batch_charges")
#: Seconds a whole table may take to read or write (the pool's default is for one request's queries).
SLOW = 600.0


class DumpError(Exception):
    """A document that cannot be imported; nothing was written."""


async def export_state(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every row of claudegate's tables at one moment, with the schema versions applied."""
    out: dict[str, Any] = {"format": FORMAT, "tables": {}}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        out["schema"] = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        for table in TABLES:
            columns = await _columns(conn, table)
            rows = await conn.fetch(f'SELECT row_to_json(t)::text AS row FROM "{table}" t', timeout=SLOW)  # noqa: S608
            out["tables"][table] = {"columns": columns, "rows": [json.loads(r["row"]) for r in rows]}
    return out


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [r["column_name"] for r in rows]


def _check_shape(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DumpError(f"not a claudegate state document (format {FORMAT!r} expected)")
    tables = doc.get("tables")
    schema = doc.get("schema")
    if not isinstance(tables, dict) or not isinstance(schema, list) or not all(isinstance(v, int) for v in schema):
        raise DumpError("the state document has no tables or no schema versions")
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DumpError(f"the state document names tables claudegate does not have: {', '.join(unknown)}")
    missing = [t for t in TABLES if t not in tables]
    if missing:  # every table is replaced: one left out would be emptied, not kept
        raise DumpError(f"the state document lacks tables: {', '.join(missing)}")
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("columns"), list) or not isinstance(
            table.get("rows"), list
        ):
            raise DumpError(f"table {name}: columns and rows expected")
        if not all(isinstance(c, str) for c in table["columns"]) or not all(isinstance(r, dict) for r in table["rows"]):
            raise DumpError(f"table {name}: columns are names and rows are objects")
    return doc


async def import_state(conn: asyncpg.Connection, doc: Any) -> dict[str, int]:
    """Replace claudegate's rows with ``doc``'s, all in one transaction; the row count of each table."""
    doc = _check_shape(doc)
    counts: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        missing = sorted(set(doc["schema"]) - applied)
        if missing:
            raise DumpError(
                f"the backup was made on schema versions this database lacks ({', '.join(map(str, missing))}):"
                " deploy the release that made it first"
            )
        before = {r["name"] for r in await conn.fetch("SELECT name FROM clients")}
        plans: list[tuple[str, list[str], list[dict[str, Any]]]] = []
        for table in TABLES:
            entry = doc["tables"][table]
            have = await _columns(conn, table)
            extra = sorted(set(entry["columns"]) - set(have))
            if extra:
                raise DumpError(f"table {table}: columns this database lacks: {', '.join(extra)}")
            plans.append((table, list(entry["columns"]), entry["rows"]))
        for table in reversed(TABLES):
            await conn.execute(f'DELETE FROM "{table}"', timeout=SLOW)  # noqa: S608 - fixed names
        for table, columns, rows in plans:
            counts[table] = len(rows)
            if not rows:
                continue
            names = ", ".join(f'"{c}"' for c in columns)
            await conn.execute(
                f'INSERT INTO "{table}" ({names}) SELECT {names} FROM json_populate_recordset(NULL::"{table}", $1::json)',  # noqa: S608
                json.dumps(rows),
                timeout=SLOW,
            )
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('usage_ledger', 'id'), coalesce(max(id), 0) + 1, false)"
            " FROM usage_ledger"
        )
        after = {r["name"] for r in await conn.fetch("SELECT name FROM clients")}
        for name in sorted(before | after):  # every replica drops what it cached of each
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{name}:restored")
    return counts


async def daily_usage(conn: asyncpg.Connection, *, client: str | None, since: str | None) -> list[dict[str, Any]]:
    """Tokens charged per client per UTC day (the durable ledger's totals), by client then day."""
    rows = await conn.fetch(
        "SELECT name, day, tokens FROM daily_usage WHERE ($1::text IS NULL OR name = $1)"
        " AND ($2::text IS NULL OR day >= $2) ORDER BY name, day",
        client,
        since,
    )
    return [{"client": r["name"], "day": r["day"], "tokens": int(r["tokens"])} for r in rows]
