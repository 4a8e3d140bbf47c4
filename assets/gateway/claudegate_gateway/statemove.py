"""Moving a one-host SQLite keystore into PostgreSQL (``migrate-state``).

Everything the SQLite file holds is copied in one PostgreSQL transaction:
clients with their scopes, every credential's keyed hash (the pepper stays
the same file, so every issued key keeps working), owned batches and files
(with the files' token estimates and each object as last seen, for lists), the batches charged and not yet settled
(settled later by the PostgreSQL replicas), and the daily usage (also
written to the usage ledger). Running it again
copies nothing twice: rows already there are kept, and a day's usage is the
larger of the two totals, never their sum.

A target that holds *different* data is refused before anything is written
(:class:`StateConflict`): a client of the same name made at another time, a
credential id with another hash, an owned object with another owner or
kind, or clients the SQLite file does not know (another deployment's
database, or one that has moved on since the first copy). Copying into it
would merge two keystores, and an owned object could change hands.
"""

from __future__ import annotations

import json
from typing import Any

from claudegate_gateway.keystore import KeyStore
from claudegate_gateway.pgstore import CHANNEL, PgKeyStore


class StateConflict(Exception):
    """The target PostgreSQL holds data that differs from the SQLite keystore's; nothing was copied."""


async def _conflicts(conn: Any, clients: list[Any], creds: list[Any], objects: list[Any]) -> list[str]:
    found: list[str] = []
    mine = {name: created for name, created, *_ in clients}
    for name, created in await conn.fetch("SELECT name, created_at FROM clients"):
        if name not in mine:
            found.append(f"client {name!r} is not in the SQLite keystore")
        elif created != mine[name]:
            found.append(f"client {name!r} was made at another time there")
    digests = {public: (name, bytes(digest)) for public, name, digest, *_ in creds}
    for public, name, digest in await conn.fetch("SELECT public_id, name, digest FROM credentials"):
        if public in digests and digests[public] != (name, bytes(digest)):
            found.append(f"credential {public} has another client or hash there")
    owners = {object_id: (kind, owner) for object_id, kind, owner, *_ in objects}
    for object_id, kind, owner in await conn.fetch("SELECT id, kind, owner FROM owned_objects"):
        if object_id in owners and owners[object_id] != (kind, owner):
            found.append(f"{kind} {object_id} belongs to another client there")
    return found


async def copy_sqlite(source: KeyStore, target: PgKeyStore) -> dict[str, int]:
    db = source._db  # the keystore's own connection: read-only use here
    clients = db.execute("SELECT name, created_at, expires_at, revoked_at, scopes FROM clients").fetchall()
    creds = db.execute("SELECT public_id, name, digest, created_at, not_after FROM credentials").fetchall()
    objects = db.execute("SELECT id, kind, owner, created_at, tokens, object FROM owned_objects").fetchall()
    batches = db.execute(
        "SELECT id, owner, day, reserved, daily, created_at FROM batch_charges WHERE settled_at IS NULL"
    ).fetchall()
    usage = db.execute("SELECT name, day, tokens FROM daily_usage").fetchall()
    counts = {"clients": 0, "credentials": 0, "owned objects": 0, "open batches": 0, "usage days": 0}
    async with target.pool.acquire() as conn, conn.transaction():
        # Serializes two copies run at once; the check and the copy see one state.
        await conn.execute("LOCK TABLE clients, credentials, owned_objects IN EXCLUSIVE MODE")
        conflicts = await _conflicts(conn, clients, creds, objects)
        if conflicts:
            more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
            raise StateConflict(
                "the target PostgreSQL already holds different data: " + "; ".join(conflicts[:5]) + more
                + "; nothing was copied (use an empty database, or the one an earlier run of this copy filled)"
            )
        for name, created, expires, revoked, scopes in clients:
            json.loads(scopes)  # a damaged row stops the move before anything is committed
            done = await conn.execute(
                "INSERT INTO clients(name, created_at, expires_at, revoked_at, scopes) VALUES ($1,$2,$3,$4,$5)"
                " ON CONFLICT (name) DO NOTHING", name, created, expires, revoked, scopes,
            )  # fmt: skip
            counts["clients"] += int(done.split()[-1])
        for public, name, digest, created, not_after in creds:
            done = await conn.execute(
                "INSERT INTO credentials(public_id, name, digest, created_at, not_after) VALUES ($1,$2,$3,$4,$5)"
                " ON CONFLICT (public_id) DO NOTHING", public, name, bytes(digest), created, not_after,
            )  # fmt: skip
            counts["credentials"] += int(done.split()[-1])
        for object_id, kind, owner, created, tokens, obj in objects:
            done = await conn.execute(
                "INSERT INTO owned_objects(id, kind, owner, created_at, tokens, object) VALUES ($1,$2,$3,$4,$5,$6)"
                " ON CONFLICT (id) DO NOTHING", object_id, kind, owner, created, tokens, obj,
            )  # fmt: skip
            counts["owned objects"] += int(done.split()[-1])
        for batch_id, owner, day, reserved, daily, created in batches:
            done = await conn.execute(
                "INSERT INTO batch_charges(id, owner, day, reserved, daily, created_at) VALUES ($1,$2,$3,$4,$5,$6)"
                " ON CONFLICT (id) DO NOTHING", batch_id, owner, day, reserved, bool(daily), created,
            )  # fmt: skip
            counts["open batches"] += int(done.split()[-1])
        for name, day, tokens in usage:
            await conn.execute(
                "INSERT INTO daily_usage(name, day, tokens) VALUES ($1,$2,$3)"
                " ON CONFLICT (name, day) DO UPDATE SET tokens = GREATEST(daily_usage.tokens, EXCLUDED.tokens)",
                name, day, tokens,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO usage_ledger(name, day, tokens, replica) VALUES ($1,$2,$3,'migrate-state')",
                name, day, tokens,
            )  # fmt: skip
            counts["usage days"] += 1
        for (name, *_rest) in clients:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{name}:0")
    return counts
