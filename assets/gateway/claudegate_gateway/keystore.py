"""Client keys in SQLite, stored only as a keyed hash.

A key looks like ``cgk_<public id>_<secret>``. The public id (``cgk_`` plus 10
characters) is stored in clear for lookup and shown in listings and the audit
log; the whole key is stored only as HMAC-SHA256 under the server's pepper, so
a copy of the database alone does not let anyone in.

One *client* (a name with its scopes and limits) may hold several
*credentials* at once: rotation adds a new credential and gives the old one an
end, so both work during the overlap.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from claudegate_gateway.ownership import OWNERSHIP_SCHEMA, Ownership

KEY_PREFIX = "cgk_"
_PUBLIC_LEN = 10
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    scopes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    public_id TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES clients(name),
    digest BLOB NOT NULL,
    created_at REAL NOT NULL,
    not_after REAL
);
CREATE INDEX IF NOT EXISTS credentials_by_name ON credentials(name);
CREATE TABLE IF NOT EXISTS daily_usage (
    name TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (name, day)
);
-- A batch is charged its reservation at creation and settled, once, from
-- its results' usage (batchsettle.py) against the day it was charged.
CREATE TABLE IF NOT EXISTS batch_charges (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    day TEXT NOT NULL,
    reserved INTEGER NOT NULL,
    daily INTEGER NOT NULL,
    created_at REAL NOT NULL,
    checked_at REAL,
    settled_at REAL,
    used INTEGER
);
CREATE INDEX IF NOT EXISTS batch_charges_open ON batch_charges(settled_at, checked_at);
-- With state.redis: each flush of usage to daily_usage under its id, once (committed 1),
-- or marked abandoned (committed 0) by the process that gave its charges back to Redis.
CREATE TABLE IF NOT EXISTS ledger_flushes (
    txid TEXT PRIMARY KEY,
    committed INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_flushes_at ON ledger_flushes(at);
""" + OWNERSHIP_SCHEMA

# Lookups remembered per process, known and unknown ids alike. Bounded: every
# random public id an attacker sends would otherwise stay in memory for good.
CACHE_ENTRIES = 4096


class KeyStoreError(Exception):
    """A key management request that cannot be done (unknown name, duplicate)."""


@dataclass(frozen=True)
class Scopes:
    models: tuple[str, ...] = ("*",)
    endpoints: tuple[str, ...] = ("/v1/*",)
    betas: tuple[str, ...] | None = None  # None: any anthropic-beta value
    max_tokens: int | None = None
    stream: bool = True
    rpm: int | None = None
    tpm: int | None = None
    daily_tokens: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scopes:
        raw = json.loads(text)
        for key in ("models", "endpoints", "betas"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def model_allowed(self, model: str) -> bool:
        return any(fnmatchcase(model, glob) for glob in self.models)

    def endpoint_allowed(self, template: str, *, exact: bool = False) -> bool:
        """Whether an operation's path template is in the scopes; ``exact``: listed as such, not by a glob."""
        if exact:
            return template in self.endpoints
        return any(fnmatchcase(template, glob) for glob in self.endpoints)

    def beta_allowed(self, beta: str) -> bool:
        return self.betas is None or beta in self.betas


@dataclass(frozen=True)
class Client:
    name: str
    public_id: str
    scopes: Scopes
    expires_at: float | None
    not_after: float | None

    def ends_at(self) -> float | None:
        ends = [t for t in (self.expires_at, self.not_after) if t is not None]
        return min(ends) if ends else None


@dataclass
class _Cached:
    digest: bytes
    client: Client
    revoked: bool = False


# The exact shape of every key new_key() makes; nothing else is ever looked up.
KEY_RE = re.compile(rf"{KEY_PREFIX}[{_ALPHABET}]{{{_PUBLIC_LEN}}}_[{_ALPHABET}]{{40}}")


def new_key() -> tuple[str, str]:
    """Return (key, public_id). 10 + 40 characters from a 57-letter alphabet."""
    public = KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_PUBLIC_LEN))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(40))
    return f"{public}_{secret}", public


def public_id_of(key: str) -> str | None:
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + _PUBLIC_LEN + 2:
        return None
    public = key[: len(KEY_PREFIX) + _PUBLIC_LEN]
    return public if key[len(public)] == "_" else None


class KeyStore:
    """The SQLite keystore. One instance per process; not shared across threads."""

    def __init__(self, path: Path, pepper: str, cache_entries: int = CACHE_ENTRIES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Every admission with a daily budget commits here: in WAL mode NORMAL
        # survives a crash of the process (not of the machine) without an fsync per commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._pepper = pepper.encode()
        self._cache: OrderedDict[str, _Cached | None] = OrderedDict()
        self._cache_entries = max(1, cache_entries)
        self._data_version = -1
        self.owners = Ownership(self._db)
        self.owners.migrate()

    def close(self) -> None:
        self._db.close()

    def digest(self, key: str) -> bytes:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).digest()

    # -- the request path -------------------------------------------------

    def _fresh(self) -> None:
        # data_version moves whenever another connection commits, so a
        # `keys revoke` run elsewhere is seen by the very next request.
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._cache.clear()
            self._data_version = version

    def authenticate(self, key: str, now: float | None = None) -> Client | None:
        """The client for a presented key, or None. Constant-time on the secret part."""
        public = public_id_of(key)
        if public is None:
            return None
        self._fresh()
        if public in self._cache:
            self._cache.move_to_end(public)
            cached = self._cache[public]
        else:
            cached = self._load(public)
            self._cache[public] = cached
            if len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        if cached is None or cached.revoked:
            return None
        if not hmac.compare_digest(cached.digest, self.digest(key)):
            return None
        ends = cached.client.ends_at()
        if ends is not None and (now if now is not None else time.time()) >= ends:
            return None
        return cached.client

    def _load(self, public: str) -> _Cached | None:
        row = self._db.execute(
            "SELECT c.name, c.scopes, c.expires_at, c.revoked_at, k.digest, k.not_after"
            " FROM credentials k JOIN clients c ON c.name = k.name WHERE k.public_id = ?",
            (public,),
        ).fetchone()
        if row is None:
            return None
        name, scopes, expires_at, revoked_at, digest, not_after = row
        client = Client(name, public, Scopes.from_json(scopes), expires_at, not_after)
        return _Cached(bytes(digest), client, revoked=revoked_at is not None)

    # -- management -------------------------------------------------------

    def create(self, name: str, scopes: Scopes, expires_at: float | None = None) -> str:
        if not name or len(name) > 64 or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise KeyStoreError(f"name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        now = time.time()
        key, public = new_key()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT revoked_at FROM clients WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise KeyStoreError(f"a client named {name!r} exists; rotate it with `keys rotate {name}` or revoke it first")
            if row is not None:
                # A revoked name may be reused; its old credentials stay dead
                # and its batches and files belong to nobody (not to the new
                # holder of the name).
                self._db.execute("DELETE FROM credentials WHERE name = ?", (name,))
                self._db.execute("DELETE FROM clients WHERE name = ?", (name,))
                self.owners.disown_all(name)
            self._db.execute(
                "INSERT INTO clients(name, created_at, expires_at, revoked_at, scopes) VALUES (?,?,?,NULL,?)",
                (name, now, expires_at, scopes.to_json()),
            )
            self._db.execute(
                "INSERT INTO credentials(public_id, name, digest, created_at, not_after) VALUES (?,?,?,?,NULL)",
                (public, name, self.digest(key), now),
            )
        return key

    def rotate(self, name: str, overlap_seconds: float) -> str:
        now = time.time()
        key, public = new_key()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._active(name)
            # Credentials that ended already can never work again: drop them, so a
            # client rotated on every deploy (the smoke test's) does not pile up rows.
            self._db.execute("DELETE FROM credentials WHERE name = ? AND not_after <= ?", (name, now))
            self._db.execute(
                "UPDATE credentials SET not_after = MIN(COALESCE(not_after, ?), ?) WHERE name = ?",
                (now + overlap_seconds, now + overlap_seconds, name),
            )
            self._db.execute(
                "INSERT INTO credentials(public_id, name, digest, created_at, not_after) VALUES (?,?,?,?,NULL)",
                (public, name, self.digest(key), now),
            )
        return key

    def update(self, name: str, scopes: Scopes, expires_at: float | None) -> None:
        """Replace a client's scopes and expiry in place: its credentials keep working.

        Declarative (the whole scope set, not a patch), so applying the same
        config twice gives the same row. Gateways see it on their next
        request (``data_version`` moves), so a lower rpm applies at once.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._active(name)
            self._db.execute(
                "UPDATE clients SET scopes = ?, expires_at = ? WHERE name = ?",
                (scopes.to_json(), expires_at, name),
            )

    def revoke(self, name: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._active(name)
            self._db.execute("UPDATE clients SET revoked_at = ? WHERE name = ?", (time.time(), name))

    def _active(self, name: str) -> None:
        row = self._db.execute("SELECT revoked_at FROM clients WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyStoreError(f"no client named {name!r}; see `keys list`")
        if row[0] is not None:
            raise KeyStoreError(f"client {name!r} is revoked; create it anew with `keys create {name}`")

    def list(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for name, created, expires, revoked, scopes in self._db.execute(
            "SELECT name, created_at, expires_at, revoked_at, scopes FROM clients ORDER BY name"
        ):
            creds = [
                {"public_id": p, "created_at": c, "not_after": n, "active": n is None or n > now}
                for p, c, n in self._db.execute(
                    "SELECT public_id, created_at, not_after FROM credentials WHERE name = ? ORDER BY created_at",
                    (name,),
                )
            ]
            state = "revoked" if revoked else "expired" if expires is not None and expires <= now else "active"
            out.append(
                {
                    "name": name,
                    "state": state,
                    "created_at": created,
                    "expires_at": expires,
                    "revoked_at": revoked,
                    "scopes": json.loads(scopes),
                    "credentials": creds,
                }
            )
        return out

    # -- the daily budget (limits.DailyLedger) --------------------------------

    def reserve_daily(self, name: str, day: str, tokens: int, limit: int) -> int | None:
        """Take `tokens` of `name`'s `day` if they fit under `limit`: None when taken, else the usage.

        Checked and written in one ``BEGIN IMMEDIATE`` transaction, which
        holds SQLite's write lock from the read on: two gateway processes
        on this keystore can never both take the last of a budget.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT tokens FROM daily_usage WHERE name = ? AND day = ?", (name, day)).fetchone()
            used = int(row[0]) if row else 0
            if used + tokens > limit:
                return used
            self._db.execute(
                "INSERT INTO daily_usage(name, day, tokens) VALUES (?,?,?)"
                " ON CONFLICT(name, day) DO UPDATE SET tokens = tokens + excluded.tokens",
                (name, day, tokens),
            )
        return None

    def add_daily(self, name: str, day: str, delta: int) -> None:
        """Add `delta` to `name`'s usage on `day` (a settlement; negative gives back), never below zero."""
        if not delta:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._add_daily_in(name, day, delta)

    def write_usage(self, txid: str, deltas: dict[tuple[str, str], int]) -> bool:
        """Add one flush's usage deltas ((day, name) -> tokens) in one transaction, once: the ledger
        behind Redis admission (state.redis without state.postgres). True when they are in
        (now or by an earlier try of the id), False when the id was marked abandoned first."""
        rows = [(name, day, delta) for (day, name), delta in deltas.items() if delta]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")  # one writer at a time: the id's row decides
            row = self._db.execute("SELECT committed FROM ledger_flushes WHERE txid = ?", (txid,)).fetchone()
            if row is not None:
                return bool(row[0])
            self._db.execute("INSERT INTO ledger_flushes(txid, committed, at) VALUES (?, 1, ?)", (txid, time.time()))
            for name, day, delta in rows:
                self._add_daily_in(name, day, delta, clamp=False)
            self._db.execute("DELETE FROM ledger_flushes WHERE at < ?", (time.time() - 7 * 86400,))
        return True

    def decide_usage(self, txids: builtins.list[str]) -> dict[str, bool]:
        """Whether each flush is in the ledger; one that is not is marked abandoned, so it never will be."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO ledger_flushes(txid, committed, at) VALUES (?, 0, ?)",
                [(t, time.time()) for t in txids],
            )
            return {t: bool(self._db.execute("SELECT committed FROM ledger_flushes WHERE txid = ?", (t,)).fetchone()[0])
                    for t in txids}  # fmt: skip

    def _add_daily_in(self, name: str, day: str, delta: int, *, clamp: bool = True) -> None:
        # Inside a caller's transaction (the batch settlement marks its row in the same one).
        # clamp=False for deltas that may arrive before the reservation they correct
        # (with state.redis a replica writes its reservations every few seconds, a
        # batch settlement at once): the sum comes right once both are in.
        if not clamp:
            self._db.execute(
                "INSERT INTO daily_usage(name, day, tokens) VALUES (?,?,?)"
                " ON CONFLICT(name, day) DO UPDATE SET tokens = tokens + excluded.tokens",
                (name, day, delta),
            )
            return
        self._db.execute(
            "INSERT INTO daily_usage(name, day, tokens) VALUES (?,?,MAX(0, ?))"
            " ON CONFLICT(name, day) DO UPDATE SET tokens = MAX(0, tokens + ?)",
            (name, day, delta, delta),
        )

    def daily_used(self, name: str, day: str) -> int:
        row = self._db.execute("SELECT tokens FROM daily_usage WHERE name = ? AND day = ?", (name, day)).fetchone()
        return int(row[0]) if row else 0

    # -- batches charged at creation, settled when they end ------------------

    def charge_batch(self, batch_id: str, owner: str, day: str, reserved: int, daily: bool) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO batch_charges(id, owner, day, reserved, daily, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (batch_id, owner, day, reserved, int(daily), time.time()),
            )

    def open_batches(self, limit: int) -> builtins.list[tuple[str, str, str, int]]:
        """Unsettled batches, least recently checked first: (id, owner, day, reserved)."""
        rows = self._db.execute(
            "SELECT id, owner, day, reserved FROM batch_charges WHERE settled_at IS NULL"
            " ORDER BY COALESCE(checked_at, 0), created_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [(str(i), str(o), str(d), int(r)) for i, o, d, r in rows]

    def batch_checked(self, batch_id: str) -> None:
        with self._db:
            self._db.execute("UPDATE batch_charges SET checked_at = ? WHERE id = ?", (time.time(), batch_id))

    def settle_batch(self, batch_id: str, used: int) -> tuple[str, str, int, bool] | None:
        """Replace a batch's reservation by `used`, once: (owner, day, reserved, daily), or None if settled already.

        The mark and the daily correction are one transaction, so two
        gateway processes polling the same batch settle it exactly once.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT owner, day, reserved, daily FROM batch_charges WHERE id = ? AND settled_at IS NULL",
                (batch_id,),
            ).fetchone()
            if row is None:
                return None
            owner, day, reserved, daily = row
            self._db.execute(
                "UPDATE batch_charges SET settled_at = ?, used = ? WHERE id = ?", (time.time(), used, batch_id)
            )
            if daily:
                self._add_daily_in(owner, day, used - int(reserved), clamp=False)
        return str(owner), str(day), int(reserved), bool(daily)

    def load_daily(self, day: str) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, tokens FROM daily_usage WHERE day = ?", (day,)).fetchall())
