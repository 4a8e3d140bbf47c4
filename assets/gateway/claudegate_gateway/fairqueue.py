"""Fair turns at the inspection workers, and a bound on the body bytes a key holds.

Large bodies are parsed and filtered in worker processes (offload.py); there
are only as many as the host has cores. Handed out first come first served,
one key sending a few 8 MB bodies would make every other key's large body
wait behind all of them. :class:`FairTurns` hands a free worker to the keys
in turn (round robin: each key's oldest job, one key after the other), and
never lets one key hold more than ``workers - 1`` workers at once while
there are two or more, so another key's job always finds a worker within
one job's time at most, usually at once.

:class:`BodyBytes` bounds what one key can make the gateway hold: the bytes
of its request bodies inside the gateway (being read, waiting for a worker,
being inspected, being sent upstream). It is claimed from the declared
``Content-Length`` before a byte of the body is read (a body that alone is
over the bound is a 413, a body that does not fit beside the key's others a
429), and again from the real size once the body is read (a chunked body
declares nothing).
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from claudegate_gateway.errors import GatewayError

T = TypeVar("T")


def host_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class FairTurns:
    """``workers`` turns handed out round robin over keys; one key holds at most ``share`` at once."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.share = max(1, self.workers - 1)
        self._busy = 0
        self._held: dict[str, int] = {}
        # Keys with someone waiting, in turn order: the next turn goes to the
        # first key that may take one, which then moves to the back.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def busy(self) -> int:
        return self._busy

    def waiting(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._waiting.get(key, ()))
        return sum(len(q) for q in self._waiting.values())

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def _may_take(self, key: str) -> bool:
        return self._busy < self.workers and self._held.get(key, 0) < self.share

    def _grant(self, key: str) -> None:
        self._busy += 1
        self._held[key] = self._held.get(key, 0) + 1

    def _dispatch(self) -> None:
        while self._busy < self.workers:
            for key in self._waiting:
                if self._held.get(key, 0) < self.share:
                    break
            else:
                return  # every waiting key already holds its share
            queue = self._waiting[key]
            fut = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # its next job waits for the other keys' turns
            else:
                del self._waiting[key]
            if fut.done():  # its waiter gave up
                continue
            self._grant(key)
            fut.set_result(None)

    async def _acquire(self, key: str) -> None:
        if not self._waiting and self._may_take(key):
            self._grant(key)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(fut)
        self._dispatch()
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._release(key)  # granted just as the waiter left: hand it on
            else:
                fut.cancel()
                queue = self._waiting.get(key)
                if queue is not None and fut in queue:
                    queue.remove(fut)
                    if not queue:
                        del self._waiting[key]
            raise

    def _release(self, key: str) -> None:
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._busy -= 1
        self._dispatch()

    async def run(self, key: str, job: Callable[[], Awaitable[T]]) -> T:
        """Wait for ``key``'s turn, then run ``job`` holding one worker."""
        await self._acquire(key)
        try:
            return await job()
        finally:
            self._release(key)


class BodyBytes:
    """Bytes of request bodies each key has inside the gateway, bounded per key."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def claim(self, key: str, size: int) -> Claim:
        claim = Claim(self, key)
        claim.grow(size)
        return claim

    def _take(self, key: str, more: int, total: int) -> None:
        if total > self.per_key:
            raise GatewayError(
                "request_too_large",
                f"Request exceeds the gateway's limit of {self.per_key} body bytes per key",
            )
        held = self._held.get(key, 0)
        if held + more > self.per_key:
            raise GatewayError(
                "rate_limit_error",
                f"This key already has {held} bytes of request bodies in the gateway; the limit per key is "
                f"{self.per_key}. Wait for its other requests to finish",
                headers={"retry-after": "1"},
            )
        self._held[key] = held + more

    def _give(self, key: str, less: int) -> None:
        left = self._held.get(key, 0) - less
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)


class Claim:
    """One request's share of :class:`BodyBytes`; ``release`` when the request ends."""

    def __init__(self, owner: BodyBytes, key: str) -> None:
        self._owner = owner
        self._key = key
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` bytes in all (more than now: claims the difference, or raises)."""
        if size > self.size:
            self._owner._take(self._key, size - self.size, size)
            self.size = size

    def release(self) -> None:
        if self.size:
            self._owner._give(self._key, self.size)
            self.size = 0


class HeldBytes:
    """Bytes the whole process holds for one purpose (downloads being filtered), bounded in all and per key.

    A claim that would go past the process's bound is refused at once (529
    ``overloaded_error``, Anthropic's answer when the service is busy), never
    queued: two holders each waiting for the other's bytes would wait forever.
    A claim that would take its key past the key's share (``per_key``, at
    most the whole bound) is refused with a 429 ``rate_limit_error``: one key
    filling its share leaves ``limit - per_key`` for the others.
    """

    def __init__(self, limit: int, what: str, per_key: int | None = None) -> None:
        self.limit = limit
        self.what = what
        self.per_key = limit if per_key is None else min(per_key, limit)
        self.held = 0
        self._by_key: dict[str, int] = {}

    def claim(self, key: str = "") -> HeldClaim:
        return HeldClaim(self, key)

    def held_by(self, key: str) -> int:
        return self._by_key.get(key, 0)

    def _take(self, key: str, more: int) -> None:
        mine = self._by_key.get(key, 0)
        if self.held + more > self.limit:
            raise GatewayError(
                "overloaded_error",
                f"The gateway is holding as many {self.what} as it may at once ({self.limit} bytes); "
                "retry shortly",
                headers={"retry-after": "2"},
            )
        if mine + more > self.per_key:
            raise GatewayError(
                "rate_limit_error",
                f"This key is holding as many {self.what} as one key may at once ({self.per_key} bytes); "
                "retry once its other downloads are done",
                headers={"retry-after": "2"},
            )
        self.held += more
        self._by_key[key] = mine + more

    def _give(self, key: str, less: int) -> None:
        self.held -= less
        left = self._by_key.get(key, 0) - less
        if left > 0:
            self._by_key[key] = left
        else:
            self._by_key.pop(key, None)


class HeldClaim:
    """One holder's share of :class:`HeldBytes` (charged to its key); ``release`` when it lets go."""

    __slots__ = ("_key", "_owner", "size")

    def __init__(self, owner: HeldBytes, key: str = "") -> None:
        self._owner = owner
        self._key = key
        self.size = 0

    def resize(self, size: int) -> None:
        """Hold ``size`` bytes in all: more than now claims the difference (or raises), less gives some back."""
        more = size - self.size
        if more > 0:
            self._owner._take(self._key, more)
        elif more < 0:
            self._owner._give(self._key, -more)
        self.size = size

    def release(self) -> None:
        if self.size:
            self._owner._give(self._key, self.size)
            self.size = 0
