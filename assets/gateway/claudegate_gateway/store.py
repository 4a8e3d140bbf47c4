"""The durable store the request path and the keys command talk to.

Two implementations with one (async) face:

* :class:`SqliteStore`, the one-host default: the SQLite keystore
  (keystore.py, ownership.py) unchanged, its calls simply awaited;
* :class:`~claudegate_gateway.pgstore.PgKeyStore` with ``state.postgres``.
"""

from __future__ import annotations

from typing import Any, Protocol

from claudegate_gateway.keystore import Client, KeyStore, Scopes
from claudegate_gateway.ownership import ObjectKind, Ownership, PageRow


class Owners(Protocol):
    async def record(
        self, kind: ObjectKind, object_id: str, owner: str, tokens: int | None = None, obj: str | None = None,
        credential: str | None = None,
    ) -> None:
        """Record an owner; ``tokens``: a file's input-token estimate per reference (filetokens.py);
        ``obj``: the object as upstream answered its creation (JSON text), for lists; ``credential``:
        recorded only while this key (public id) is still ``owner``'s (ownership.py: reused names)."""
        ...

    async def snapshot(self, kind: ObjectKind, object_id: str, obj: str) -> None:
        """Keep a newer view of a recorded object (no row is created)."""
        ...

    async def page(
        self, kind: ObjectKind, owner: str, cursor: str | None, backward: bool, limit: int
    ) -> list[PageRow] | None:
        """Up to ``limit`` + 1 of the owner's objects next to ``cursor`` (see Ownership.page)."""
        ...

    async def file_tokens(self, owner: str, ids: list[str]) -> dict[str, int]:
        """The recorded estimates of the owner's files among `ids` (files without one are left out)."""
        ...

    async def owns(self, kind: ObjectKind, object_id: str, owner: str) -> bool: ...

    async def owned(self, kind: ObjectKind, owner: str, ids: list[str]) -> set[str]: ...

    async def forget(self, kind: ObjectKind, object_id: str) -> None: ...


class Store(Protocol):
    @property
    def owners(self) -> Owners: ...

    def digest(self, key: str) -> bytes: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise when the store cannot serve (the readiness probe)."""
        ...

    def health(self) -> dict[str, float]:
        """Gauges for /metrics and /readyz (name -> value); empty for SQLite."""
        ...

    async def lookup(self, key: str) -> Client | None: ...

    async def load_daily(self, day: str) -> dict[str, int]: ...

    async def write_usage(self, txid: str, deltas: dict[tuple[str, str], int]) -> bool:
        """Add one flush's usage deltas ((day, name) -> tokens) to the durable ledger under its id, once.

        True when they are in it (now, or by an earlier try of the same id); False when
        the id was marked abandoned first (``decide_usage``): nothing was written.
        """
        ...

    async def decide_usage(self, txids: list[str]) -> dict[str, bool]:
        """Whether each flush id is in the ledger; one that is not is marked abandoned (never written after)."""
        ...

    # Batches: charged their reservation at creation, settled once when they end (batchsettle.py).
    async def charge_batch(self, batch_id: str, owner: str, day: str, reserved: int, daily: bool) -> None: ...

    async def open_batches(self, limit: int) -> list[tuple[str, str, str, int]]: ...

    async def batch_checked(self, batch_id: str) -> None: ...

    async def settle_batch(self, batch_id: str, used: int) -> tuple[str, str, int, bool] | None:
        """Replace a batch's reservation by `used`, exactly once across processes and replicas.

        Returns (owner, day, reserved, daily) when this call settled it, None when it was settled already.
        """
        ...

    async def create(self, name: str, scopes: Scopes, expires_at: float | None = None) -> str: ...

    async def rotate(self, name: str, overlap_seconds: float) -> str: ...

    async def update(self, name: str, scopes: Scopes, expires_at: float | None) -> None: ...

    async def revoke(self, name: str) -> None: ...

    async def list_clients(self) -> list[dict[str, Any]]: ...


class _SqliteOwners:
    def __init__(self, owners: Ownership) -> None:
        self._o = owners

    async def record(
        self, kind: ObjectKind, object_id: str, owner: str, tokens: int | None = None, obj: str | None = None,
        credential: str | None = None,
    ) -> None:
        self._o.record(kind, object_id, owner, tokens, obj, credential)

    async def snapshot(self, kind: ObjectKind, object_id: str, obj: str) -> None:
        self._o.snapshot(kind, object_id, obj)

    async def page(
        self, kind: ObjectKind, owner: str, cursor: str | None, backward: bool, limit: int
    ) -> list[PageRow] | None:
        return self._o.page(kind, owner, cursor, backward, limit)

    async def file_tokens(self, owner: str, ids: list[str]) -> dict[str, int]:
        return self._o.file_tokens(owner, ids)

    async def owns(self, kind: ObjectKind, object_id: str, owner: str) -> bool:
        return self._o.owns(kind, object_id, owner)

    async def owned(self, kind: ObjectKind, owner: str, ids: list[str]) -> set[str]:
        return self._o.owned(kind, owner, ids)

    async def forget(self, kind: ObjectKind, object_id: str) -> None:
        self._o.forget(kind, object_id)


class SqliteStore:
    """The one-host keystore behind the async face; every call is the SQLite one."""

    def __init__(self, keystore: KeyStore) -> None:
        self.keystore = keystore
        self._owners = _SqliteOwners(keystore.owners)

    @property
    def owners(self) -> Owners:
        return self._owners

    def digest(self, key: str) -> bytes:
        return self.keystore.digest(key)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.keystore.close()

    async def check(self) -> None:
        self.keystore.list()

    def health(self) -> dict[str, float]:
        return {}

    async def lookup(self, key: str) -> Client | None:
        return self.keystore.authenticate(key)

    async def load_daily(self, day: str) -> dict[str, int]:
        return self.keystore.load_daily(day)

    # Only with state.redis (admission's day in Redis, the ledger here); one
    # host writes each reservation and settlement itself (limits.DailyLedger).
    async def write_usage(self, txid: str, deltas: dict[tuple[str, str], int]) -> bool:
        return self.keystore.write_usage(txid, deltas)

    async def decide_usage(self, txids: list[str]) -> dict[str, bool]:
        return self.keystore.decide_usage(txids)

    async def charge_batch(self, batch_id: str, owner: str, day: str, reserved: int, daily: bool) -> None:
        self.keystore.charge_batch(batch_id, owner, day, reserved, daily)

    async def open_batches(self, limit: int) -> list[tuple[str, str, str, int]]:
        return self.keystore.open_batches(limit)

    async def batch_checked(self, batch_id: str) -> None:
        self.keystore.batch_checked(batch_id)

    async def settle_batch(self, batch_id: str, used: int) -> tuple[str, str, int, bool] | None:
        return self.keystore.settle_batch(batch_id, used)

    async def create(self, name: str, scopes: Scopes, expires_at: float | None = None) -> str:
        return self.keystore.create(name, scopes, expires_at)

    async def rotate(self, name: str, overlap_seconds: float) -> str:
        return self.keystore.rotate(name, overlap_seconds)

    async def update(self, name: str, scopes: Scopes, expires_at: float | None) -> None:
        self.keystore.update(name, scopes, expires_at)

    async def revoke(self, name: str) -> None:
        self.keystore.revoke(name)

    async def list_clients(self) -> list[dict[str, Any]]:
        return self.keystore.list()
