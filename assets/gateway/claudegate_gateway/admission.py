"""Admission: may this key's request go ahead, and what does it reserve?

The request path asks one object, whichever engine decides:

* :class:`LocalAdmission` (the default, one host): this process's
  :class:`~claudegate_gateway.limits.Limiter`, daily totals in SQLite;
* :class:`~claudegate_gateway.admission_redis.RedisAdmission` (``state.redis``):
  one atomic Redis function for all replicas.

Neither computes tokens: the request path hands ``reserve`` the amount the
metering code estimated and ``settle`` the amount the metering code charged,
so both engines count exactly the same thing.
"""

from __future__ import annotations

from typing import Protocol

from claudegate_gateway.config import Config
from claudegate_gateway.keystore import Client
from claudegate_gateway.limits import Limiter, Reservation
from claudegate_gateway.store import SqliteStore, Store


class Admission(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reserve(self, client: Client, tokens: int, *, count_request: bool = True) -> Reservation:
        """Admit one request needing up to `tokens`, or raise a GatewayError (429, 400, 503).

        Every operation is counted first with ``reserve(client, 0)`` (rpm and
        the in-flight place); the token reservation after its body was read
        passes ``count_request=False`` (neither counted again). Both are settled.
        """
        ...

    async def count_request(self, client: Client) -> None:
        """Count one more upstream request against rpm without checking it (a list's extra pages)."""
        ...

    def check_room(self, client: Client, tokens: int) -> None:
        """The cheap refusal before a body is read; takes nothing."""
        ...

    def settle(self, res: Reservation, used: int) -> None:
        """Replace a reservation by what was charged; idempotent; never raises, never waits."""
        ...

    async def given_back(self, res: Reservation) -> None:
        """Wait (at most the store's timeout) until a settled reservation's in-flight place is
        free where every replica sees it; never raises."""
        ...

    def headers(self, client: Client) -> dict[str, str]:
        """anthropic-ratelimit-* headers for the client's limits."""
        ...

    def adjust_daily(self, name: str, day: str, delta: int) -> None:
        """A batch settled in the durable store (``settle_batch``): move admission's own view of the day too."""
        ...

    async def flush(self) -> None:
        """Called every few seconds: usage into the durable ledger (nothing to do on one host)."""
        ...

    def health(self) -> dict[str, float]:
        """Gauges for /metrics and /readyz (name -> value); empty for the one-host engine."""
        ...


class LocalAdmission:
    """One host: the in-process limiter, its daily budget taken in the SQLite keystore."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reserve(self, client: Client, tokens: int, *, count_request: bool = True) -> Reservation:
        return self.limiter.reserve(client, tokens, count_request=count_request)

    async def count_request(self, client: Client) -> None:
        self.limiter.count_request(client)

    def check_room(self, client: Client, tokens: int) -> None:
        self.limiter.check_room(client, tokens)

    def settle(self, res: Reservation, used: int) -> None:
        self.limiter.settle(res, used)

    async def given_back(self, res: Reservation) -> None:
        return None  # settled in this process, at once

    def adjust_daily(self, name: str, day: str, delta: int) -> None:
        # The keystore's settle_batch corrected daily_usage in its own transaction,
        # and that table is this engine's view: nothing else to move.
        return None

    def headers(self, client: Client) -> dict[str, str]:
        return self.limiter.headers(client)

    def health(self) -> dict[str, float]:
        return {}

    async def flush(self) -> None:
        # Nothing pending: every reservation and settlement was written to the
        # keystore when it was made (limits.DailyLedger), exact across processes.
        return None


def make_admission(config: Config, limiter: Limiter, store: Store) -> Admission:
    """The engine the config names: Redis with ``state.redis``, else this process."""
    if config.state.redis is None:
        # config.py allows no state.postgres without state.redis: one host, SQLite.
        assert isinstance(store, SqliteStore)
        return LocalAdmission(limiter)
    from claudegate_gateway.admission_redis import RedisAdmission  # only deployments with Redis load it

    return RedisAdmission(
        config.state.redis, config.source, in_flight_per_key=config.max_in_flight_per_key,
        load_daily=store.load_daily, write_usage=store.write_usage,
        decide_usage=store.decide_usage, replica_id=config.state.replica_id,
    )  # fmt: skip
