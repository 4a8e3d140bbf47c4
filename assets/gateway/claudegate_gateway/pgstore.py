"""Keys, owned objects and usage in PostgreSQL, for gateways on several hosts.

The same records as the SQLite keystore (clients, credentials stored only as
a keyed hash, owned batches and files, daily usage) plus an append-only
usage ledger and the schema version, with the same rules (keystore.py):
what differs is how every replica learns about a change, and what happens
when PostgreSQL is away.

* Every change to a client bumps its *epoch* and sends ``NOTIFY
  claudegate_keys`` in the same transaction. Each replica LISTENs on its own
  connection and drops what it cached about that client at once, so a key
  revoked or rotated on one host is refused on every other host as soon as
  the notification arrives (milliseconds), not after a cache TTL.
* A lookup that was on the wire while a notification arrived is not cached
  (the generation check below): a revocation can never be overwritten by an
  older answer.
* PostgreSQL unreachable: keys this replica knows keep working from its
  cache (bounded in entries and in age, ``cache_seconds``); a key it does not
  know, and every write (new keys, owned objects), fails closed with a 503.
  Ids that name no key are remembered apart, in a bound of their own: a
  client sending random keys cannot push known keys out of the cache.
  The listening connection is re-made every fraction of a second; once it
  is back the whole cache is dropped, so a revocation made during the outage
  applies within a second of PostgreSQL's return.

Migrations run once, under an advisory lock, and are *expand* (add, never
break the running version) unless asked to *contract*.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from claudegate_gateway.config import ConfigError, read_secret
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client, KeyStoreError, Scopes, new_key, public_id_of
from claudegate_gateway.ownership import ObjectKind, PageRow
from claudegate_gateway.stateconfig import PostgresState

log = logging.getLogger("claudegate.gateway")


class _OneLine(logging.Filter):
    """asyncpg's pool logs a full traceback each time it fails to refill during an outage
    (every few seconds): the outage is already said in one line by this module, so its
    records keep their message and the exception's name, not the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())

CHANNEL = "claudegate_keys"
# pg_advisory_xact_lock key: "cgmi" (claudegate migrations).
MIGRATION_LOCK = 0x63676D69
PING_EVERY = 0.25

# (version, kind, SQL). Expand: only additions the previous gateway version
# tolerates. Contract: removals, run by `migrate --contract` once every
# replica runs a version that no longer needs what they remove.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "expand", """
CREATE TABLE clients (
    name text PRIMARY KEY,
    created_at double precision NOT NULL,
    expires_at double precision,
    revoked_at double precision,
    scopes text NOT NULL,
    epoch bigint NOT NULL DEFAULT 0
);
CREATE TABLE credentials (
    public_id text PRIMARY KEY,
    name text NOT NULL REFERENCES clients(name) ON DELETE CASCADE,
    digest bytea NOT NULL,
    created_at double precision NOT NULL,
    not_after double precision
);
CREATE INDEX credentials_by_name ON credentials(name);
CREATE TABLE owned_objects (
    id text PRIMARY KEY,
    kind text NOT NULL,
    owner text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX owned_objects_by_owner ON owned_objects(owner, kind);
CREATE TABLE daily_usage (
    name text NOT NULL,
    day text NOT NULL,
    tokens bigint NOT NULL,
    PRIMARY KEY (name, day)
);
CREATE TABLE usage_ledger (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    day text NOT NULL,
    tokens bigint NOT NULL,
    replica text NOT NULL
);
"""),
    # Metering: a file's token estimate recorded at upload (NULL for files
    # recorded before, and for batches), and batches charged at creation
    # until their settlement. Only additions: version 1 gateways name their
    # columns and never read these.
    (2, "expand", """
ALTER TABLE owned_objects ADD COLUMN tokens bigint;
CREATE TABLE batch_charges (
    id text PRIMARY KEY,
    owner text NOT NULL,
    day text NOT NULL,
    reserved bigint NOT NULL,
    daily boolean NOT NULL,
    created_at double precision NOT NULL,
    checked_at double precision,
    settled_at double precision,
    used bigint
);
CREATE INDEX batch_charges_open ON batch_charges(settled_at, checked_at);
"""),
    # Lists answered from the owner record: each object as upstream last
    # showed it, and an index to page a client's objects newest first.
    (3, "expand", """
ALTER TABLE owned_objects ADD COLUMN object text;
CREATE INDEX owned_objects_pages ON owned_objects(owner, kind, created_at, id);
"""),
    # Several hosts with tls.mode acme: the issuer's certificates, the key
    # sealed (AES-GCM) under a key only the hosts hold; written and read by
    # the hosts' certbot containers (assets/certbot/claudegate_share.py),
    # never by the gateway.
    (4, "expand", """
CREATE TABLE tls_certificates (
    id bigserial PRIMARY KEY,
    domain text NOT NULL,
    serial text NOT NULL,
    not_before timestamptz NOT NULL,
    not_after timestamptz NOT NULL,
    fullchain text NOT NULL,
    key_nonce bytea NOT NULL,
    key_sealed bytea NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    published_by text NOT NULL,
    UNIQUE (domain, serial)
);
"""),
    # The usage ledger written exactly once per flush (admission_redis.py): a flush's id goes in
    # with its increments, in one transaction (committed), or is marked abandoned (not committed)
    # by the replica that gives the flush's charges back to Redis; the key decides which came first.
    # Version 4 gateways write the ledger without ids and never read this.
    (5, "expand", """
CREATE TABLE ledger_flushes (
    txid text PRIMARY KEY,
    committed boolean NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_flushes_at ON ledger_flushes(at);
"""),
)  # fmt: skip
# The lowest schema this code runs on: a gateway refuses to serve an older one.
REQUIRED_VERSION = 5
# Flush ids are kept this long (a record in Redis expires after 2 days; a replica
# retrying a write it kept in memory gives up on its id well before).
FLUSH_IDS_DAYS = 7
# Every this many written flushes, ids older than that go.
PRUNE_EVERY = 1000


class StateConnectError(ConfigError):
    """PostgreSQL could not be reached when opening the store: one line, the cause and what to check."""


class StateUnavailable(GatewayError):
    """PostgreSQL cannot be reached for something only it can answer."""

    def __init__(self, what: str) -> None:
        super().__init__(
            "api_error", f"The gateway cannot {what} right now (its shared state is unreachable); retry shortly",
            status=503, headers={"retry-after": "5"},
        )  # fmt: skip


async def migrate(conn: asyncpg.Connection, *, contract: bool = False) -> list[int]:
    """Apply the migrations not applied yet; returns their versions. Safe to run from many replicas at once."""
    applied: list[int] = []
    async with conn.transaction():
        # Held to the end of the transaction: the second replica waits, then finds nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, kind text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for version, kind, sql in MIGRATIONS:
            if version in done or (kind == "contract" and not contract):
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version(version, kind) VALUES ($1, $2)", version, kind)
            applied.append(version)
    return applied


@dataclass
class _Cached:
    digest: bytes
    client: Client
    revoked: bool
    at: float  # when PostgreSQL last vouched for it


def _ssl(state: PostgresState) -> Any:
    if state.tls == "disable":
        return False
    if state.tls == "require":
        return "require"
    ctx = ssl.create_default_context(cafile=str(state.tls_ca_file) if state.tls_ca_file else None)
    return ctx  # verify-full: certificate chain and host name


class PgKeyStore:
    """One per gateway process: a pool for queries, one connection that listens."""

    def __init__(self, state: PostgresState, pepper: str, source: str, *, replica: str = "-") -> None:
        self.state = state
        self._pepper = pepper.encode()
        self._password = (
            read_secret(state.password_file, "the PostgreSQL password", "state.postgres.password_file", source)
            if state.password_file is not None else None
        )  # fmt: skip
        self.replica = replica
        self.source = source
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._watch: asyncpg.Connection | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()  # known keys (revoked ones included)
        # Public ids PostgreSQL said no key has. Apart from _cache: anyone can
        # make up ids, and in one LRU they would evict the known keys.
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._gen = 0  # moves on every notification and every cache drop
        self._flush_writes = 0
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.state.url, password=self._password, ssl=_ssl(self.state), timeout=2)

    async def open(self, *, serving: bool = True) -> None:
        """Connect; ``serving`` (a gateway or the keys command): also migrate (expand), check the schema, listen."""
        try:
            self._pool = await asyncpg.create_pool(
                self.state.url, password=self._password, ssl=_ssl(self.state), min_size=1, max_size=10,
                timeout=2, command_timeout=5,
            )  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            where = urlsplit(self.state.url).hostname
            raise StateConnectError(
                f"{self.source}: state.postgres: cannot reach PostgreSQL at {where} ({type(exc).__name__}: {exc}); check the"
                " URL, password_file, tls and tls_ca_file"
            ) from None
        if not serving:
            return
        async with self._pool.acquire() as conn:
            await migrate(conn)
            version = await conn.fetchval("SELECT max(version) FROM schema_version")
            contracted = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version WHERE kind = 'contract'")}
        unknown = sorted(contracted - {v for v, _, _ in MIGRATIONS})
        if unknown:
            # A newer release removed what an older one may need: this code must not serve on it
            # (a rollback past a contract fails here, in its smoke test, instead of serving wrong).
            raise RuntimeError(f"the PostgreSQL schema was contracted by a newer release (version "
                               f"{', '.join(map(str, unknown))}); this gateway cannot run on it")  # fmt: skip
        if version is None or version < REQUIRED_VERSION:
            raise RuntimeError(f"the PostgreSQL schema is at version {version}, this gateway needs "
                               f"{REQUIRED_VERSION}; run `claudegate-gateway migrate` first")  # fmt: skip
        await self._listen()
        self._task = asyncio.create_task(self._keep_listening())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=1)
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 2)

    async def _listen(self) -> None:
        conn = await self._connect()
        await conn.add_listener(CHANNEL, self._notified)
        self._listener = conn
        # Listening before dropping: a change made from here on is heard; one
        # made while nobody listened is gone with the cache.
        self._drop_all()
        if not self.listening:
            log.info("shared state: PostgreSQL answers; key changes are pushed again")
        self.listening = True

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                else:
                    await self._listener.fetchval("SELECT 1", timeout=1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if self.listening:
                    log.warning("shared state: PostgreSQL unreachable (%s); known keys from cache, writes refused",
                                type(exc).__name__)  # fmt: skip
                self.listening = False
                if self._listener is not None:
                    self._listener.terminate()
                    self._listener = None

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        name, _, _epoch = payload.rpartition(":")
        self._gen += 1
        for public in [p for p, c in self._cache.items() if c.client.name == name]:
            del self._cache[public]  # that client's keys
        self._unknown.clear()  # and every "unknown": it may be a new key

    def _drop_all(self) -> None:
        self._gen += 1
        self._cache.clear()
        self._unknown.clear()

    @property
    def owners(self) -> PgKeyStore:
        return self  # owned objects live in the same database

    def health(self) -> dict[str, float]:
        return {"postgres_up": 1.0 if self.listening else 0.0, "key_cache_entries": float(len(self._cache))}

    async def check(self) -> None:
        try:
            await self.pool.fetchval("SELECT 1", timeout=1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("reach its database") from None

    def digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "open() first"
        return self._pool

    # -- the request path ---------------------------------------------------

    async def lookup(self, key: str, now: float | None = None) -> Client | None:
        """The client for a presented key, or None; StateUnavailable when only PostgreSQL could tell."""
        public = public_id_of(key)
        if public is None:
            return None
        wall = time.time() if now is None else now
        cached = self._cache.get(public)
        known = cached is not None or public in self._unknown
        # Without the listening connection a cached answer may be stale: served
        # only while younger than cache_seconds (and an unknown id is asked again).
        if known and (self.listening or (cached is not None and wall - cached.at < self.state.cache_seconds)):
            if cached is not None:
                self._cache.move_to_end(public)
        else:
            cached = await self._load(public, wall)
        if cached is None or cached.revoked:
            return None
        if not hmac.compare_digest(cached.digest, self.digest(key)):
            return None
        ends = cached.client.ends_at()
        if ends is not None and wall >= ends:
            return None
        return cached.client

    async def _load(self, public: str, wall: float) -> _Cached | None:
        for _ in range(3):
            gen = self._gen
            try:
                row = await self.pool.fetchrow(
                    "SELECT c.name, c.scopes, c.expires_at, c.revoked_at, k.digest, k.not_after"
                    " FROM credentials k JOIN clients c ON c.name = k.name WHERE k.public_id = $1",
                    public,
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                stale = self._cache.get(public)
                if stale is not None and wall - stale.at < self.state.cache_seconds:
                    return stale
                raise StateUnavailable("check this key") from None
            entry = None
            if row is not None:
                client = Client(row["name"], public, Scopes.from_json(row["scopes"]), row["expires_at"], row["not_after"])
                entry = _Cached(bytes(row["digest"]), client, row["revoked_at"] is not None, wall)
            if gen == self._gen:  # no change was announced while the answer travelled
                if self.listening:
                    if entry is None:
                        self._unknown[public] = None
                        if len(self._unknown) > self.state.cache_entries:
                            self._unknown.popitem(last=False)
                    else:
                        self._unknown.pop(public, None)
                        self._cache[public] = entry
                        if len(self._cache) > self.state.cache_entries:
                            self._cache.popitem(last=False)
                return entry
        return entry

    # -- management (the keys CLI, migrate-state) --------------------------

    async def _changed(self, conn: asyncpg.Connection, name: str) -> None:
        epoch = await conn.fetchval("UPDATE clients SET epoch = epoch + 1 WHERE name = $1 RETURNING epoch", name)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{name}:{epoch}")

    async def create(self, name: str, scopes: Scopes, expires_at: float | None = None) -> str:
        if not name or len(name) > 64 or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise KeyStoreError(f"name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        now = time.time()
        key, public = new_key()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT revoked_at FROM clients WHERE name = $1 FOR UPDATE", name)
            if row is not None and row["revoked_at"] is None:
                raise KeyStoreError(f"a client named {name!r} exists; rotate it with `keys rotate {name}` or revoke it first")
            epoch = 0
            if row is not None:
                epoch = await conn.fetchval("SELECT epoch FROM clients WHERE name = $1", name)
                await conn.execute("DELETE FROM owned_objects WHERE owner = $1", name)
                await conn.execute("DELETE FROM clients WHERE name = $1", name)  # credentials cascade
            await conn.execute(
                "INSERT INTO clients(name, created_at, expires_at, revoked_at, scopes, epoch) VALUES ($1,$2,$3,NULL,$4,$5)",
                name, now, expires_at, scopes.to_json(), epoch,
            )
            await conn.execute(
                "INSERT INTO credentials(public_id, name, digest, created_at, not_after) VALUES ($1,$2,$3,$4,NULL)",
                public, name, self.digest(key), now,
            )
            await self._changed(conn, name)
        return key

    async def _active(self, conn: asyncpg.Connection, name: str) -> None:
        row = await conn.fetchrow("SELECT revoked_at FROM clients WHERE name = $1 FOR UPDATE", name)
        if row is None:
            raise KeyStoreError(f"no client named {name!r}; see `keys list`")
        if row["revoked_at"] is not None:
            raise KeyStoreError(f"client {name!r} is revoked; create it anew with `keys create {name}`")

    async def rotate(self, name: str, overlap_seconds: float) -> str:
        now = time.time()
        key, public = new_key()
        ends = now + overlap_seconds
        async with self.pool.acquire() as conn, conn.transaction():
            await self._active(conn, name)
            await conn.execute("DELETE FROM credentials WHERE name = $1 AND not_after <= $2", name, now)
            await conn.execute(
                "UPDATE credentials SET not_after = LEAST(COALESCE(not_after, $2), $2) WHERE name = $1", name, ends
            )
            await conn.execute(
                "INSERT INTO credentials(public_id, name, digest, created_at, not_after) VALUES ($1,$2,$3,$4,NULL)",
                public, name, self.digest(key), now,
            )
            await self._changed(conn, name)
        return key

    async def update(self, name: str, scopes: Scopes, expires_at: float | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._active(conn, name)
            await conn.execute(
                "UPDATE clients SET scopes = $2, expires_at = $3 WHERE name = $1", name, scopes.to_json(), expires_at
            )
            await self._changed(conn, name)

    async def revoke(self, name: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._active(conn, name)
            await conn.execute("UPDATE clients SET revoked_at = $2 WHERE name = $1", name, time.time())
            await self._changed(conn, name)

    async def list_clients(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        async with self.pool.acquire() as conn:
            creds: dict[str, list[dict[str, Any]]] = {}
            for r in await conn.fetch("SELECT public_id, name, created_at, not_after FROM credentials ORDER BY created_at"):
                creds.setdefault(r["name"], []).append({
                    "public_id": r["public_id"], "created_at": r["created_at"], "not_after": r["not_after"],
                    "active": r["not_after"] is None or r["not_after"] > now,
                })  # fmt: skip
            for r in await conn.fetch("SELECT name, created_at, expires_at, revoked_at, scopes FROM clients ORDER BY name"):
                expires, revoked = r["expires_at"], r["revoked_at"]
                state = "revoked" if revoked else "expired" if expires is not None and expires <= now else "active"
                out.append({
                    "name": r["name"], "state": state, "created_at": r["created_at"], "expires_at": expires,
                    "revoked_at": revoked, "scopes": json.loads(r["scopes"]), "credentials": creds.get(r["name"], []),
                })  # fmt: skip
        return out

    # -- owned objects --------------------------------------------------------

    async def record(
        self, kind: ObjectKind, object_id: str, owner: str, tokens: int | None = None, obj: str | None = None,
        credential: str | None = None,
    ) -> None:
        try:
            # Only while the key that made it is still the owner's (ownership.py: reused names).
            await self.pool.execute(
                "INSERT INTO owned_objects(id, kind, owner, created_at, tokens, object)"
                " SELECT $1,$2,$3,$4,$5,$6 WHERE $7::text IS NULL OR EXISTS"
                " (SELECT 1 FROM credentials WHERE public_id = $7 AND name = $3)"
                " ON CONFLICT (id) DO NOTHING",
                object_id, kind, owner, time.time(), tokens, obj, credential,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("record who owns this object") from None

    async def snapshot(self, kind: ObjectKind, object_id: str, obj: str) -> None:
        try:
            await self.pool.execute("UPDATE owned_objects SET object = $1 WHERE id = $2 AND kind = $3", obj, object_id, kind)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("keep this object's state") from None

    async def page(
        self, kind: ObjectKind, owner: str, cursor: str | None, backward: bool, limit: int
    ) -> list[PageRow] | None:
        order = "ASC" if backward else "DESC"
        try:
            if cursor is None:
                rows = await self.pool.fetch(
                    "SELECT id, object FROM owned_objects WHERE owner = $1 AND kind = $2"  # noqa: S608
                    f" ORDER BY created_at {order}, id {order} LIMIT $3",
                    owner, kind, limit + 1,
                )
            else:
                at = await self.pool.fetchval(
                    "SELECT created_at FROM owned_objects WHERE id = $1 AND kind = $2 AND owner = $3", cursor, kind, owner
                )
                if at is None:
                    return None
                rows = await self.pool.fetch(
                    "SELECT id, object FROM owned_objects WHERE owner = $1 AND kind = $2"  # noqa: S608
                    f" AND (created_at, id) {'>' if backward else '<'} ($3, $4)"
                    f" ORDER BY created_at {order}, id {order} LIMIT $5",
                    owner, kind, at, cursor, limit + 1,
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("list this client's objects") from None
        return [(r["id"], r["object"]) for r in rows]

    async def owns(self, kind: ObjectKind, object_id: str, owner: str) -> bool:
        return bool(await self.owned(kind, owner, [object_id]))

    async def owned(self, kind: ObjectKind, owner: str, ids: list[str]) -> set[str]:
        try:
            rows = await self.pool.fetch(
                "SELECT id FROM owned_objects WHERE kind = $1 AND owner = $2 AND id = ANY($3::text[])", kind, owner, ids
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("check who owns this object") from None
        return {r["id"] for r in rows}

    async def file_tokens(self, owner: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        try:
            rows = await self.pool.fetch(
                "SELECT id, tokens FROM owned_objects WHERE kind = 'file' AND owner = $1 AND id = ANY($2::text[])"
                " AND tokens IS NOT NULL",
                owner, ids,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("read what this file costs") from None
        return {r["id"]: int(r["tokens"]) for r in rows}

    async def forget(self, kind: ObjectKind, object_id: str) -> None:
        try:
            await self.pool.execute("DELETE FROM owned_objects WHERE id = $1 AND kind = $2", object_id, kind)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            raise StateUnavailable("forget this object") from None

    # -- usage ----------------------------------------------------------------

    async def load_daily(self, day: str) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT name, tokens FROM daily_usage WHERE day = $1", day)
        return {r["name"]: int(r["tokens"]) for r in rows}

    async def write_usage(self, txid: str, deltas: dict[tuple[str, str], int]) -> bool:
        """Add one flush's usage deltas ((day, name) -> tokens), once: one ledger row each.

        True when they are in the ledger (now, or by an earlier try of the same id),
        False when the id was marked abandoned first (``decide_usage``: another replica
        gave the flush's charges back to Redis). The id's row is the first thing the
        transaction writes: a concurrent ``decide_usage`` of the same id waits for this
        commit or rollback, and then agrees with it.
        """
        rows = [(name, d, delta) for (d, name), delta in deltas.items() if delta]
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "INSERT INTO ledger_flushes(txid, committed) VALUES ($1, true) ON CONFLICT (txid) DO NOTHING"
                " RETURNING true", txid,
            ):  # fmt: skip
                return bool(await conn.fetchval("SELECT committed FROM ledger_flushes WHERE txid = $1", txid))
            await conn.executemany(
                "INSERT INTO usage_ledger(name, day, tokens, replica) VALUES ($1,$2,$3,$4)",
                [(n, d, t, self.replica) for n, d, t in rows],
            )
            # Not clamped at zero: a batch's settlement (settle_batch) may
            # arrive before the reservation it corrects; the sum is the ledger's.
            await conn.executemany(
                "INSERT INTO daily_usage(name, day, tokens) VALUES ($1,$2,$3::bigint)"
                " ON CONFLICT (name, day) DO UPDATE SET tokens = daily_usage.tokens + $3::bigint",
                rows,
            )
            self._flush_writes += 1
            if self._flush_writes % PRUNE_EVERY == 0:
                await conn.execute("DELETE FROM ledger_flushes WHERE at < now() - make_interval(days => $1)",
                                   FLUSH_IDS_DAYS)  # fmt: skip
        return True

    async def decide_usage(self, txids: list[str]) -> dict[str, bool]:
        """Whether each flush is in the ledger; one that is not is marked abandoned, so it never will be."""
        ids = sorted(set(txids))  # one order for every replica: two deciding the same ids never deadlock
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO ledger_flushes(txid, committed) VALUES ($1, false) ON CONFLICT (txid) DO NOTHING",
                [(t,) for t in ids],
            )
            rows = await conn.fetch("SELECT txid, committed FROM ledger_flushes WHERE txid = ANY($1::text[])", ids)
        return {r["txid"]: bool(r["committed"]) for r in rows}

    # -- batches: charged at creation, settled once when they end -------------

    async def charge_batch(self, batch_id: str, owner: str, day: str, reserved: int, daily: bool) -> None:
        await self.pool.execute(
            "INSERT INTO batch_charges(id, owner, day, reserved, daily, created_at) VALUES ($1,$2,$3,$4,$5,$6)"
            " ON CONFLICT (id) DO NOTHING",
            batch_id, owner, day, reserved, daily, time.time(),
        )

    async def open_batches(self, limit: int) -> list[tuple[str, str, str, int]]:
        rows = await self.pool.fetch(
            "SELECT id, owner, day, reserved FROM batch_charges WHERE settled_at IS NULL"
            " ORDER BY COALESCE(checked_at, 0), created_at LIMIT $1",
            limit,
        )
        return [(r["id"], r["owner"], r["day"], int(r["reserved"])) for r in rows]

    async def batch_checked(self, batch_id: str) -> None:
        await self.pool.execute("UPDATE batch_charges SET checked_at = $2 WHERE id = $1", batch_id, time.time())

    async def settle_batch(self, batch_id: str, used: int) -> tuple[str, str, int, bool] | None:
        """Mark the batch settled and correct the ledger in one transaction.

        ``UPDATE ... WHERE settled_at IS NULL`` takes the row's lock: of two
        replicas settling the same batch the second waits, then finds it
        settled and changes nothing, so each batch is settled exactly once.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE batch_charges SET settled_at = $2, used = $3 WHERE id = $1 AND settled_at IS NULL"
                " RETURNING owner, day, reserved, daily",
                batch_id, time.time(), used,
            )
            if row is None:
                return None
            owner, day, reserved, daily = row["owner"], row["day"], int(row["reserved"]), bool(row["daily"])
            delta = used - reserved
            if daily and delta:
                await conn.execute(
                    "INSERT INTO usage_ledger(name, day, tokens, replica) VALUES ($1,$2,$3,$4)",
                    owner, day, delta, self.replica,
                )
                # Not clamped: the reservation this corrects may still be on its way (add_daily).
                await conn.execute(
                    "INSERT INTO daily_usage(name, day, tokens) VALUES ($1,$2,$3::bigint)"
                    " ON CONFLICT (name, day) DO UPDATE SET tokens = daily_usage.tokens + $3::bigint",
                    owner, day, delta,
                )
        return owner, day, reserved, daily
