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

from collections.abc import Callable
from typing import Protocol

from claudegate_gateway.config import Config
from claudegate_gateway.keystore import Client
from claudegate_gateway.limits import Limiter, Reservation
from claudegate_gateway.store import SqliteStore, Store


class Admission(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reserve(self, client: Client, tokens: int) -> Reservation:
        """Admit one request needing up to `tokens`, or raise a GatewayError (429, 400, 503)."""
        ...

    def check_room(self, client: Client, tokens: int) -> None:
        """The cheap refusal before a body is read; takes nothing."""
        ...

    def settle(self, res: Reservation, used: int) -> None:
        """Replace a reservation by what was charged; idempotent; never raises, never waits."""
        ...

    def headers(self, client: Client) -> dict[str, str]:
        """anthropic-ratelimit-* headers for the client's limits."""
        ...

    async def flush(self) -> None:
        """Called every few seconds: usage into the durable ledger."""
        ...

    def health(self) -> dict[str, float]:
        """Gauges for /metrics and /readyz (name -> value); empty for the one-host engine."""
        ...


class LocalAdmission:
    """One host: the in-process limiter, as the gateway always did."""

    def __init__(self, limiter: Limiter, add_daily: Callable[[dict[tuple[str, str], int], str], dict[str, int]]) -> None:
        self.limiter = limiter
        self._add_daily = add_daily

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def reserve(self, client: Client, tokens: int) -> Reservation:
        return self.limiter.reserve(client, tokens)

    def check_room(self, client: Client, tokens: int) -> None:
        self.limiter.check_room(client, tokens)

    def settle(self, res: Reservation, used: int) -> None:
        self.limiter.settle(res, used)

    def headers(self, client: Client) -> dict[str, str]:
        return self.limiter.headers(client)

    def health(self) -> dict[str, float]:
        return {}

    async def flush(self) -> None:
        # Every few seconds even with nothing pending: another gateway process
        # on this keystore may have spent some of the same budgets.
        self.limiter.sync(self._add_daily)


def make_admission(config: Config, limiter: Limiter, store: Store) -> Admission:
    """The engine the config names: Redis with ``state.redis``, else this process."""
    if config.state.redis is None:
        # config.py allows no state.postgres without state.redis: one host, SQLite.
        assert isinstance(store, SqliteStore)
        return LocalAdmission(limiter, store.keystore.add_daily)
    from claudegate_gateway.admission_redis import RedisAdmission  # only deployments with Redis load it

    return RedisAdmission(
        config.state.redis, config.source, in_flight_per_key=config.max_in_flight_per_key,
        load_daily=store.load_daily, add_daily=store.add_daily, replica_id=config.state.replica_id,
    )  # fmt: skip
