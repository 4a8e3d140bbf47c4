"""Per-key concurrency: a cap on requests in flight, and fair turns at the
upstream connection pool.

One key must not be able to take the gateway away from the others by
opening many slow requests. Two rules see to that:

* a key has at most ``max_in_flight_per_key`` requests inside the gateway at
  once (the next one is refused at once with a 429, before its body is read);
  the config keeps that cap at most half the upstream pool, so one key alone
  can never hold every upstream connection;
* when the pool is full, the next free connection goes to the waiting key
  that holds the fewest connections (oldest request first among equals), not
  to whoever queued first, so a key that floods the queue does not make
  another key's request wait behind all of its own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from types import TracebackType

from claudegate_gateway.errors import GatewayError

# The two holds below are small classes, not generator-based context
# managers: each is held for a whole stream, and a suspended generator with
# its frame and wrapper costs ~1 KB a stream where these cost ~60 bytes.


class InFlight:
    """Requests in flight per key; over the cap is a 429 with retry-after."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._count: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._count.get(key, 0)

    def admit(self, key: str) -> Admitted:
        """A hold on one of the key's places, taken on entering (or a 429), given back on leaving."""
        return Admitted(self, key)

    def _take(self, key: str) -> None:
        n = self._count.get(key, 0)
        if n >= self.per_key:
            raise GatewayError(
                "rate_limit_error",
                f"This key already has {n} requests in flight, the gateway's limit per key; "
                "wait for one to finish",
                headers={"retry-after": "1"},
            )
        self._count[key] = n + 1

    def _give(self, key: str) -> None:
        left = self._count[key] - 1
        if left:
            self._count[key] = left
        else:
            del self._count[key]


class Admitted:
    __slots__ = ("_key", "_owner")

    def __init__(self, owner: InFlight, key: str) -> None:
        self._owner, self._key = owner, key

    def __enter__(self) -> None:
        self._owner._take(self._key)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner._give(self._key)


class FairSlots:
    """`total` upstream slots, handed out fewest-held-first when contended."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._seq = itertools.count()

    @property
    def free(self) -> int:
        return self._free

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def waiting(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._waiting.get(key, ()))
        return sum(len(q) for q in self._waiting.values())

    def _grant(self, key: str) -> None:
        self._free -= 1
        self._held[key] = self._held.get(key, 0) + 1

    def _dispatch(self) -> None:
        while self._free > 0 and self._waiting:
            key = min(self._waiting, key=lambda k: (self._held.get(k, 0), self._waiting[k][0][0]))
            queue = self._waiting[key]
            _, fut = queue.popleft()
            if not queue:
                del self._waiting[key]
            if fut.done():  # its waiter gave up
                continue
            self._grant(key)
            fut.set_result(None)

    def try_acquire(self, key: str) -> bool:
        """Take a slot now if one is free and nobody waits (the common case: no timer, no future)."""
        if self._free > 0 and not self._waiting:
            self._grant(key)
            return True
        return False

    async def acquire(self, key: str) -> None:
        if self.try_acquire(key):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append((next(self._seq), fut))
        self._dispatch()
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(key)  # granted just as the waiter left: hand it on
            else:
                fut.cancel()
                queue = self._waiting.get(key)
                if queue is not None:
                    self._waiting[key] = deque(e for e in queue if e[1] is not fut)
                    if not self._waiting[key]:
                        del self._waiting[key]
            raise

    def release(self, key: str) -> None:
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._free += 1
        self._dispatch()

    def slot(self, key: str, wait: float) -> Slot:
        """Hold one slot for an ``async with`` block; waiting longer than `wait` seconds is a 504."""
        return Slot(self, key, wait)


class Slot:
    __slots__ = ("_key", "_owner", "_wait")

    def __init__(self, owner: FairSlots, key: str, wait: float) -> None:
        self._owner, self._key, self._wait = owner, key, wait

    async def __aenter__(self) -> None:
        if self._owner.try_acquire(self._key):
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._owner.acquire(self._key)
        except TimeoutError:
            raise GatewayError(
                "timeout_error", "The gateway's upstream connections stayed busy; retry shortly"
            ) from None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._owner.release(self._key)
