"""Admission in Redis: exact limits across every replica of every host.

Each request is one ``FCALL cg_reserve`` (see :mod:`.admission_lua`) that
checks and takes rpm, tpm, daily budget and the in-flight place together.
Every in-flight place is a *hold* with a lease: this replica renews the
leases of its live holds every lease/3 seconds, so the holds of a replica
that died (``kill -9``, a lost host) stop counting once their lease ends.
Settlement (``cg_settle``) replaces the reservation by what the metering
code charged and gives the place back.

When Redis cannot be reached (decided, see the README's "Shared state"):

* a request that would spend a daily budget is refused, 503 with
  Retry-After (fail closed: no replica can know what the others spent);
* rates fall back to this process's own windows at limit ÷ live replicas
  (the count last seen in Redis), so the fleet together stays within the
  limit;
* settlements that could not be written wait in a bounded queue and are
  written when Redis answers again; a background probe notices that within
  a second, and requests are exact again without a restart.

The daily counter in Redis is admission's view; the durable total stays in
the keystore's ledger (``add_daily``), from which Redis is seeded when its
counter is missing (first use of the day, or a Redis that lost its data).
What is charged on its way to that ledger waits in Redis, not in a
replica's memory (``led``, written in the same atomic step as the daily
counter): a replica killed mid-request leaves its reservation charged there,
and the next flush of any replica that serves the key (or the sweep every
minute) writes it to the ledger, exactly once: a flush keeps what it took in
Redis, as a record under its flush id, until the ledger has that id (see
``flush``). Every key's tokens go there, with or
without a daily budget, so the ledger is the fleet's usage (what
``claudegate usage`` reads with several hosts); the exception is a key
without a budget served while Redis was unreachable (decided above without
Redis): those tokens are not ledgered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from claudegate_gateway.admission_lua import LIBRARY, LIBRARY_VERSION
from claudegate_gateway.config import read_secret
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client
from claudegate_gateway.limits import Limiter, Reservation
from claudegate_gateway.stateconfig import RedisState

log = logging.getLogger("claudegate.gateway")

DAY_TTL = 2 * 86400
# Settlements kept while Redis is away; beyond this the oldest are dropped
# (their tokens stay charged as reserved: the safe side).
MAX_UNSETTLED = 10_000
REPLICAS_KEY = "cg:replicas"
# A token set once per data set: another one means Redis lost its data since (restarted
# without persistence, flushed), and with it the charges in `led` no flush had taken yet.
EPOCH_KEY = "cg:epoch"
# Every this many flushes (5 s apart, app.py) a replica also looks for keys whose
# charges wait for the ledger with nobody serving them (their replica died).
SWEEP_EVERY_FLUSHES = 12
# A flush's record in Redis older than this is settled by any replica, even one whose replica
# still beats (its write is long over: PostgreSQL commands time out after 5 s). Safe at any
# value: the ledger decides (decide_usage), a late write of an abandoned flush adds nothing.
RECORD_LEASE_MS = 60_000


@dataclass(eq=False)
class Hold(Reservation):
    """A reservation made in Redis; ``hold_id`` names it there."""

    hold_id: str = ""
    keys: tuple[str, ...] = ()
    # The request's task: a hold whose task ended unsettled (a code path that
    # forgot settle) is not renewed for ever; the beat settles it.
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    # Its settlement on its way to Redis (given_back waits for it).
    settling: asyncio.Task[Any] | None = field(default=None, repr=False)


@dataclass
class _Flush:
    """One hand-over to the durable ledger, written under ``txid`` (once, whatever happens)."""

    txid: str
    # (day, name) -> tokens in records in Redis (cg:{name}:fl:<txid>): if the replica dies, any other
    # replica settles them from the ledger (dropped if it has the id, else given back to `led`).
    recorded: dict[tuple[str, str], int] = field(default_factory=dict)
    # (day, name) -> tokens held in this process only (taken through a library older than 8, during
    # a roll, and not written since): no record has them.
    kept: dict[tuple[str, str], int] = field(default_factory=dict)
    epoch: str | None = None  # Redis's data set when taken

    def amounts(self) -> dict[tuple[str, str], int]:
        out = dict(self.recorded)
        for key, tokens in self.kept.items():
            out[key] = out.get(key, 0) + tokens
        return out

    def names(self) -> set[str]:
        return {name for _, name in self.recorded}


def _keys(name: str, day: str) -> tuple[str, ...]:
    tag = f"cg:{{{name}}}"
    return (
        f"{tag}:rpm", f"{tag}:tpm", f"{tag}:amt", f"{tag}:tot", f"{tag}:day:{day}", f"{tag}:fly", _led_key(name),
        f"{tag}:res", _took_key(name),
    )  # fmt: skip


def _led_key(name: str) -> str:
    return f"cg:{{{name}}}:led"


def _took_key(name: str) -> str:
    return f"cg:{{{name}}}:took"


def _fls_key(name: str) -> str:
    return f"cg:{{{name}}}:fls"


def _rec_key(name: str, txid: str) -> str:
    return f"cg:{{{name}}}:fl:{txid}"


def _led_name(key: str) -> str | None:
    """The client name of a ``cg:{name}:led`` or ``cg:{name}:fls`` key (None for anything else)."""
    if key.startswith("cg:{") and (key.endswith("}:led") or key.endswith("}:fls")):
        return key[4:-5]
    return None


def _flush_replica(txid: str) -> str:
    """The replica that took a flush (its id is ``replica|random``)."""
    return txid.rpartition("|")[0]


def _ledgered(reply: list[Any], budgeted: bool, tokens: int) -> bool:
    """Did ``cg_reserve`` put the tokens in ``led``? (then the settlement corrects them there)"""
    if tokens <= 0:
        return False
    return budgeted or (len(reply) > 8 and int(reply[8]) == 1)


def _utc_day(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _budget_unknown() -> GatewayError:
    return GatewayError(
        "api_error",
        "The gateway cannot check this key's daily budget right now (its shared state is unreachable); "
        "retry shortly",
        status=503, headers={"retry-after": "5"},
    )  # fmt: skip


def default_replica_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def connect(state: RedisState, source: str) -> aioredis.Redis:
    password = None
    if state.password_file is not None:
        password = read_secret(state.password_file, "the Redis password", "state.redis.password_file", source)
    extra: dict[str, Any] = {}
    if state.tls_ca_file is not None:
        extra["ssl_ca_certs"] = str(state.tls_ca_file)
    # No client-side retries: a request waits at most one timeout, then is
    # decided without Redis; the background probe does the retrying.
    return aioredis.Redis.from_url(
        state.url, password=password, socket_timeout=state.timeout_seconds,
        socket_connect_timeout=state.timeout_seconds, retry_on_timeout=False, retry=None,
        decode_responses=True, **extra,
    )  # fmt: skip


class RedisAdmission:
    def __init__(
        self,
        state: RedisState,
        source: str,
        *,
        in_flight_per_key: int,
        load_daily: Callable[[str], Awaitable[dict[str, int]]],
        write_usage: Callable[[str, dict[tuple[str, str], int]], Awaitable[bool]],
        decide_usage: Callable[[list[str]], Awaitable[dict[str, bool]]],
        replica_id: str | None = None,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.state = state
        self.redis = client if client is not None else connect(state, source)
        self.replica = replica_id or default_replica_id()
        self.in_flight_per_key = in_flight_per_key
        self._load_daily = load_daily
        self._write_usage = write_usage
        self._decide_usage = decide_usage
        self._seq = itertools.count()
        self.lease_ms = int(state.lease_seconds * 1000)
        self.beat_every = min(1.0, state.lease_seconds / 3)
        self.up = False  # set by the first successful call
        # Last count seen in Redis, the fallback's divisor; None until Redis was
        # seen once: a replica started during an outage cannot know its share.
        self.live_replicas: int | None = None
        self.fallback = Limiter()
        # Without Redis, the in-flight places this process gave out per key (its share of the
        # cap, like the rates' share): the fallback reservations themselves, until settled.
        self._local_places: dict[str, list[Reservation]] = {}
        self._holds: dict[str, Hold] = {}  # live holds of this replica, renewed by the beat
        self._unsettled: deque[tuple[tuple[str, ...], list[str]]] = deque(maxlen=MAX_UNSETTLED)
        # Ledger deltas not yet in the keystore that only this process holds (no record in Redis has
        # them: taken through a library older than 8, during a roll): the next flush's.
        self._pending: dict[tuple[str, str], int] = {}
        # This replica's flushes whose write failed (PostgreSQL away, or its answer lost): the
        # ledger decides each once it answers (decide_usage), flush id -> the flush.
        self._open: dict[str, _Flush] = {}
        # What this replica's settled requests put in `led` and no flush (anyone's) has taken
        # yet, as far as the last beat knew: (day, name) -> {`took` when written: net charge}.
        # Charged again if Redis loses its data (red team round 6: lost from the ledger); one
        # taken within the last beat before the loss is charged twice (never less than billed).
        self._written: dict[tuple[str, str], dict[int, int]] = {}
        self._epoch: str | None = None
        self._touched: set[str] = set()  # names whose charges in Redis this replica flushes next
        self._flushes = 0
        self._snap: dict[str, tuple[float, int, int]] = {}  # name -> (redis now s, requests, tokens)
        self._clock_offset_ms = 0.0  # Redis's clock minus this host's, from the last reserve
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beat: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._probe()  # down at start is an outage like any other: serve, probe again
        self._beat = asyncio.create_task(self._beat_loop())

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        with contextlib.suppress(RedisError, OSError):
            await self._drain_unsettled()
        await self.flush()
        await self.redis.aclose()

    async def _load_library(self) -> None:
        try:
            have = int(await self.redis.fcall_ro("cg_version", 0))
        except ResponseError:
            have = 0  # not loaded (a new or restarted Redis)
        if have < LIBRARY_VERSION:
            # REPLACE only when older: during a rolling deploy an old replica
            # never takes a newer library away from the new ones.
            await self.redis.function_load(LIBRARY, replace=True)

    async def _probe(self) -> None:
        if not self.up:
            await self._load_library()
        self.live_replicas = max(1, int(await self.redis.fcall("cg_beat", 1, REPLICAS_KEY, self.replica,
                                                               int(self.beat_every * 3000) + 500)))  # fmt: skip
        await self._check_epoch()
        if not self.up:
            log.info("shared state: Redis answers again; admission is exact across replicas")
        self.up = True

    async def _check_epoch(self) -> None:
        await self.redis.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
        seen = str(await self.redis.get(EPOCH_KEY))
        if self._epoch is not None and seen != self._epoch and self._written:
            log.warning("shared state: Redis lost its data; the charges this replica had not flushed yet "
                        "are charged again from memory")  # fmt: skip
            written, self._written = self._written, {}
            for (day, name), by_gen in written.items():
                tokens = sum(by_gen.values())
                # Into the new `led` and (once seeded) day counter, in one step: a counter seeded
                # before this has it added, one seeded after reads it from `led` (cg_seed).
                # A hold with no mark in `res`: the "used" it names is what is charged.
                hold = f"lost:{self.replica}:{next(self._seq)}"
                self._queue_settle(_keys(name, day), [hold, str(tokens), "1", day, str(tokens)])
        self._epoch = seen

    async def _prune_written(self) -> None:
        """Forget the charges a flush took since they were written (``took`` moved past them)."""
        names = sorted({name for _, name in self._written})
        if not names:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(_took_key(name))
            took = {name: int(gen or 0) for name, gen in zip(names, await pipe.execute(), strict=True)}
        for key in list(self._written):
            left = {gen: tokens for gen, tokens in self._written[key].items() if gen >= took[key[1]]}
            if left:
                self._written[key] = left
            else:
                del self._written[key]

    def _down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("shared state: Redis unreachable (%s); budgets fail closed, rates per replica",
                        type(exc).__name__)  # fmt: skip
        self.up = False

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.beat_every)
            try:
                await self._probe()
                await self._renew()
                await self._drain_unsettled()
                await self._prune_written()
            except (RedisError, OSError) as exc:
                self._down(exc)

    async def _renew(self) -> None:
        for hold in [h for h in self._holds.values() if h.task is not None and h.task.done()]:
            log.error("reservation %s of %s was never settled; charged as reserved", hold.hold_id, hold.name)
            self.settle(hold, hold.tokens)
        by_key: dict[str, list[str]] = {}
        for hold in self._holds.values():
            by_key.setdefault(hold.keys[5], []).append(hold.hold_id)
        if not by_key:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for fly, ids in by_key.items():
                pipe.fcall("cg_renew", 1, fly, self.lease_ms, *ids)
            await pipe.execute()

    async def _drain_unsettled(self) -> None:
        while self._unsettled:
            keys, args = self._unsettled[0]
            took = await self.redis.fcall("cg_settle", len(keys), *keys, *args)
            self._unsettled.popleft()
            self._settled_to_ledger(keys, args, took)

    def _settled_to_ledger(self, keys: tuple[str, ...], args: list[str], took: Any) -> None:
        """A settlement that moved ``led`` (written, not just queued): that key is flushed next."""
        if len(args) > 3 and args[3]:
            name = _led_name(keys[5])  # settle's keys: tpm amt tot day fly led res took
            if name is not None:
                self._touched.add(name)
                if len(args) > 4 and args[2] == "1" and len(keys) > 7:  # its net charge in `led`: what it used
                    by_gen = self._written.setdefault((args[3], name), {})
                    by_gen[int(took)] = by_gen.get(int(took), 0) + int(args[4])

    # -- the request path ---------------------------------------------------

    async def _fcall(self, name: str, keys: tuple[str, ...], *args: Any) -> Any:
        try:
            return await self.redis.fcall(name, len(keys), *keys, *args)
        except ResponseError as exc:
            if "Function not found" not in str(exc):
                raise
            await self._load_library()  # Redis restarted empty: load and try once more
            return await self.redis.fcall(name, len(keys), *keys, *args)

    async def reserve(self, client: Client, tokens: int, *, count_request: bool = True) -> Reservation:
        """``count_request=False``: the token reservation of a request whose rate count
        (``reserve(client, 0)``, which took rpm and the in-flight place) came first."""
        if not self.up:
            return self._local(client, tokens, count_request)
        s = client.scopes
        # The day is Redis's, not this host's: a replica whose clock is off
        # (or a request at midnight) would charge another day's counter, a
        # fresh budget. Guessed from the clock and the last offset seen;
        # Redis checks it, and says which day it is when the guess is wrong.
        now_ms = time.time() * 1000 + self._clock_offset_ms
        hold_id = f"{self.replica}:{next(self._seq)}"
        try:
            for _ in range(3):
                day_no = int(now_ms // 86_400_000)
                day = _utc_day(day_no * 86_400_000)
                keys = _keys(client.name, day)
                args = (
                    hold_id, tokens,
                    -1 if s.rpm is None or not count_request else s.rpm, -1 if s.tpm is None else s.tpm,
                    -1 if s.daily_tokens is None else s.daily_tokens,
                    self.in_flight_per_key if count_request else -1,
                    self.lease_ms, DAY_TTL, day_no, day, "1",  # ledger_all: every key's usage is ledgered
                )  # fmt: skip
                reply = await self._call_reserve(keys, args)
                self._clock_offset_ms = int(reply[4]) - time.time() * 1000
                if reply[0] != "day":
                    break
                now_ms = float(reply[4])
            else:
                raise _budget_unknown()
            if reply[0] == "seed":
                await self._seed(client.name, day, keys[4])
                reply = await self._call_reserve(keys, args)
                if reply[0] == "day":  # midnight passed while seeding: the client tries again
                    raise _budget_unknown()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return self._local(client, tokens, count_request)
        except GatewayError:
            raise
        except Exception as exc:  # the ledger could not be read to seed today's counter
            log.warning("daily budget of %s not seeded: %s", client.name, type(exc).__name__)
            raise _budget_unknown() from None
        verdict, used, limit, wait_ms, redis_now = reply[0], int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4])
        requests = int(reply[5])
        if not count_request:  # the function did not look at rpm: the rate count's figure stands
            requests = self._snap.get(client.name, (0.0, 0, 0))[1]
        self._snap[client.name] = (redis_now / 1000, requests, int(reply[6]))
        if verdict != "ok":
            raise self._refusal(client, verdict, used, limit, wait_ms, redis_now, tokens)
        # Every key's tokens go to the durable ledger (ledger_all), budgeted or not: it is the fleet's usage.
        # Settled into `led` only if the reservation went there: a version 4 library (loaded by an older
        # replica during a roll) ledgers budgeted keys only, and says nothing.
        counted = _ledgered(reply, s.daily_tokens is not None, tokens)
        # Settled on the keys it was taken on, even if midnight passes meanwhile.
        hold = Hold(client.name, tokens, None, day, counted, hold_id=hold_id, keys=keys, task=asyncio.current_task())
        self._holds[hold_id] = hold
        if counted:
            self._touched.add(client.name)  # the reservation waits in Redis for the ledger
        return hold

    async def _call_reserve(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> list[Any]:
        # Shielded: a client that leaves while the call is on the wire must
        # not leave a hold (and tokens) behind that nobody settles.
        task = asyncio.ensure_future(self._fcall("cg_reserve", keys, *args))
        try:
            return list(await asyncio.shield(task))
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._undo(t, keys, args))
            raise

    def _undo(self, task: asyncio.Task[Any], keys: tuple[str, ...], args: tuple[Any, ...]) -> None:
        if task.cancelled() or task.exception() is not None or task.result()[0] != "ok":
            return
        tokens = int(args[1])
        counted = _ledgered(task.result(), int(args[4]) >= 0, tokens)
        self._queue_settle(keys, [str(args[0]), str(-tokens), "1" if counted else "0", str(args[9]), "0"])

    async def _seed(self, name: str, day: str, key: str) -> None:
        # The ledger's total, plus what is on its way there (in Redis, and any this replica holds).
        total = (await self._load_daily(day)).get(name, 0) + self._pending.get((day, name), 0)
        total += sum(f.kept.get((day, name), 0) for f in self._open.values())
        await self._fcall("cg_seed", (key, _led_key(name)), total, DAY_TTL, day)

    def _refusal(
        self, client: Client, verdict: str, used: int, limit: int, wait_ms: int, now_ms: int, tokens: int
    ) -> GatewayError:
        if verdict == "too_big":
            return GatewayError(
                "invalid_request_error",
                f"This request may use up to {tokens} tokens (input estimate + max_tokens), more than "
                f"this key's limit of {limit} tokens per minute; lower max_tokens",
            )
        if verdict == "inflight":
            message = (f"This key already has {used} requests in flight across the gateway's replicas, "
                       "its limit; wait for one to finish")  # fmt: skip
        elif verdict == "rpm":
            message = f"This key's rate limit of {limit} requests per minute is exceeded"
        elif verdict == "tpm":
            message = f"This key's rate limit of {limit} tokens per minute is exceeded"
        else:
            message = f"This key's daily budget of {limit} tokens is used up ({used} used)"
            wait_ms = (now_ms // 86_400_000 + 1) * 86_400_000 - now_ms
        headers = self.headers(client)
        headers["retry-after"] = str(max(1, -(-wait_ms // 1000)))
        return GatewayError("rate_limit_error", message, headers=headers)

    async def count_request(self, client: Client) -> None:
        if client.scopes.rpm is None:
            return
        if self.up:
            try:
                await self._fcall("cg_count", _keys(client.name, "-")[:1], f"{self.replica}:{next(self._seq)}:p")
                return
            except (RedisError, OSError) as exc:
                self._down(exc)
        self.fallback.count_request(client)

    def adjust_daily(self, name: str, day: str, delta: int) -> None:
        if not delta:
            return
        # cg_settle of a hold that is not in the windows moves only the day
        # (and only once it was seeded: unseeded, it is read from the ledger,
        # which has the settlement already; so not in `led` either).
        self._queue_settle(_keys(name, day), [f"batch:{self.replica}:{next(self._seq)}", str(delta), "1", ""])

    def _local(self, client: Client, tokens: int, count_request: bool = True) -> Reservation:
        """Decide without Redis: budgets fail closed, rates at limit ÷ live replicas."""
        s = client.scopes
        if s.daily_tokens is not None and tokens > 0:
            raise _budget_unknown()
        if s.tpm is not None and tokens > s.tpm:
            raise GatewayError(
                "invalid_request_error",
                f"This request may use up to {tokens} tokens (input estimate + max_tokens), more than "
                f"this key's limit of {s.tpm} tokens per minute; lower max_tokens",
            )
        if self.live_replicas is None and (s.rpm is not None or s.tpm is not None):
            raise GatewayError(
                "api_error",
                "The gateway cannot check this key's rate limit right now (its shared state has been "
                "unreachable since this replica started); retry shortly",
                status=503, headers={"retry-after": "5"},
            )  # fmt: skip
        n = max(1, self.live_replicas or 1)
        share = replace(
            s,
            rpm=None if s.rpm is None else max(1, s.rpm // n) if s.rpm >= n else 0,
            tpm=None if s.tpm is None else s.tpm // n,
            daily_tokens=None,
        )
        if (share.rpm == 0 and count_request) or (share.tpm is not None and tokens > share.tpm):
            raise GatewayError(
                "rate_limit_error",
                "This key's share of its rate limit on this gateway replica is used up while the "
                "gateway's shared state is unreachable; retry shortly",
                headers={"retry-after": "5"},
            )
        # The in-flight cap too is shared out (each process's own cap, concurrency.py, is the whole
        # cap): without this, n replicas let n times the cap fly while Redis is away (red team round 6).
        places = self._local_places.get(client.name, [])
        if count_request and len(places) >= max(1, self.in_flight_per_key // n):
            raise GatewayError(
                "rate_limit_error",
                f"This key already has {len(places)} requests in flight on this gateway replica, its share "
                "of its limit while the gateway's shared state is unreachable; wait for one to finish",
                headers={"retry-after": "1"},
            )
        res = self.fallback.reserve(replace(client, scopes=share), tokens, count_request=count_request)
        if count_request:
            self._local_places.setdefault(client.name, []).append(res)
        return res

    def check_room(self, client: Client, tokens: int) -> None:
        s = client.scopes
        if s.tpm is not None and tokens > s.tpm:
            raise GatewayError(
                "invalid_request_error",
                f"This request's body alone is estimated at {tokens} tokens, more than this key's limit "
                f"of {s.tpm} tokens per minute",
            )

    def settle(self, res: Reservation, used: int) -> None:
        if res.settled:
            return
        if not isinstance(res, Hold):
            places = self._local_places.get(res.name, [])
            for i, held in enumerate(places):
                if held is res:  # its in-flight place, taken while Redis was away
                    del places[i]
                    if not places:
                        del self._local_places[res.name]
                    break
            self.fallback.settle(res, used)
            return
        res.settled = True
        self._holds.pop(res.hold_id, None)
        delta = used - res.tokens
        # A counted hold's settlement goes to `led` with it, in the same step as the daily counter.
        # `used` too: a Redis that lost the reservation (restarted empty) is charged that instead.
        args = [res.hold_id, str(delta), "1" if res.daily else "0", res.day if res.daily else "", str(used)]
        res.settling = self._queue_settle(res.keys, args)

    async def given_back(self, res: Reservation) -> None:
        task = res.settling if isinstance(res, Hold) else None
        if task is not None and not task.done():
            with contextlib.suppress(Exception):  # (TimeoutError too) Redis slow or away: the lease frees it
                await asyncio.wait_for(asyncio.shield(task), self.state.timeout_seconds)

    def _queue_settle(self, keys: tuple[str, ...], args: list[str]) -> asyncio.Task[None] | None:
        if not self.up:
            self._unsettled.append((keys[1:], args))
            return None
        task = asyncio.get_running_loop().create_task(self._settle_now(keys[1:], args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _settle_now(self, keys: tuple[str, ...], args: list[str]) -> None:
        try:
            took = await self._fcall("cg_settle", keys, *args)
        except (RedisError, OSError) as exc:
            self._down(exc)
            self._unsettled.append((keys, args))
            return
        self._settled_to_ledger(keys, args, took)

    def health(self) -> dict[str, float]:
        return {"redis_up": 1.0 if self.up else 0.0, "live_replicas": float(self.live_replicas or 0),
                "unsettled": float(len(self._unsettled)),
                # Keys whose charges in `led` no flush has taken yet (charged again if Redis loses its data).
                "unflushed_keys": float(len({name for _, name in self._written})),
                # Flushes of this replica not written, waiting for the ledger to decide them.
                "open_flushes": float(len(self._open))}  # fmt: skip

    def headers(self, client: Client) -> dict[str, str]:
        s = client.scopes
        snap = self._snap.get(client.name)
        now, requests, tokens = snap if snap is not None else (time.time(), 0, 0)
        out: dict[str, str] = {}
        for kind, limit, used in (("requests", s.rpm, requests), ("tokens", s.tpm, tokens)):
            if limit is None:
                continue
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, limit - used))
            out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(now + 60)
        return out

    async def flush(self) -> None:
        """Move charges on their way to the durable ledger there: this replica's, and any a dead
        replica left in Redis for a key this replica served (or found by the sweep).

        Exactly once, whoever dies when: what is taken from ``led`` stays in Redis as a record
        under a new flush id until the ledger has that id (written in the same transaction as
        the charges), then the record goes. A record left behind (its replica died, or could not
        drop it) is settled by whichever replica finds it: the ledger says whether it has the id,
        and marks it abandoned if not, so it can never be written after (``decide_usage``); the
        record is then dropped, or given back to ``led`` and written under a new id.
        """
        if self._open:
            await self._settle_open()  # the ledger away: raises, all of it tried again next time
        flush = _Flush(f"{self.replica}|{secrets.token_hex(8)}", kept=self._pending, epoch=self._epoch)
        self._pending = {}
        try:
            if self.up:
                await self._take_ledger(flush)
        except BaseException:
            self._shelve(flush)
            raise
        await self._write(flush)

    def _shelve(self, flush: _Flush) -> None:
        """A flush not written: its records wait for the ledger's word, what only this process has waits here."""
        if flush.recorded:
            self._open[flush.txid] = flush
        else:
            self._add_pending(flush.kept)

    def _add_pending(self, amounts: dict[tuple[str, str], int]) -> None:
        for key, tokens in amounts.items():
            if tokens:
                self._pending[key] = self._pending.get(key, 0) + tokens

    async def _write(self, flush: _Flush) -> None:
        amounts = flush.amounts()
        if not any(amounts.values()):
            written = True  # nothing to add (a reservation and its settlement that cancel out): the records go
        else:
            try:
                written = await self._write_usage(flush.txid, amounts)
            except BaseException:
                # Written or not (an answer lost on the way counts as not known): the ledger decides next time.
                self._open[flush.txid] = flush
                raise
        if written:
            await self._drop_records(flush)
        else:
            # Abandoned first: another replica found the records old and gave them back to `led`.
            self._add_pending(flush.kept)

    async def _drop_records(self, flush: _Flush) -> None:
        try:
            for name in sorted(flush.names()):
                await self._fcall("cg_drop_flush", (_fls_key(name), _rec_key(name, flush.txid)), flush.txid)
        except (RedisError, OSError) as exc:
            self._down(exc)
            # Left in Redis, in the ledger already: the next flush that looks at the key drops it.
            self._touched.update(flush.names())

    async def _settle_open(self) -> None:
        """This replica's flushes whose write failed: the ledger decides each (written, or abandoned now)."""
        decided = await self._decide_usage(sorted(self._open))
        for txid in sorted(self._open):
            flush = self._open[txid]
            if flush.recorded and not self.up:
                continue  # its records are in Redis: settled once it answers (by this replica or another)
            try:
                if decided.get(txid):
                    await self._drop_records(flush)
                else:
                    for name in sorted(flush.names()):
                        await self._give_record(name, flush)
            except (RedisError, OSError) as exc:
                self._down(exc)
                continue
            if not decided.get(txid):
                self._add_pending(flush.kept)
            del self._open[txid]

    async def _give_record(self, name: str, flush: _Flush) -> None:
        keys = (_fls_key(name), _rec_key(name, flush.txid), _led_key(name))
        gave = int(await self._fcall("cg_give_flush", keys, flush.txid, DAY_TTL))
        if not gave and flush.epoch is not None and flush.epoch != self._epoch:
            # The record went with Redis's data (lost since the take): what it held, from memory.
            for (day, n), tokens in flush.recorded.items():
                if n == name and tokens:
                    await self._fcall("cg_give_ledger", (_led_key(name),), day, tokens, DAY_TTL)
        # (Not given and the same data: another replica settled it already.)
        for key in [k for k in flush.recorded if k[1] == name]:
            del flush.recorded[key]
        self._touched.add(name)

    async def _take_ledger(self, flush: _Flush) -> None:
        self._flushes += 1
        try:
            if self._flushes % SWEEP_EVERY_FLUSHES == 1:
                for pattern in ("cg:{*}:led", "cg:{*}:fls"):
                    async for key in self.redis.scan_iter(match=pattern, count=500):
                        name = _led_name(str(key))
                        if name is not None:
                            self._touched.add(name)
            await self._check_epoch()  # before taking: what a Redis that lost its data lost is written from memory
            flush.epoch = self._epoch
            names = sorted(self._touched)
            stale = await self._stale_records(names)
        except (RedisError, OSError) as exc:
            self._down(exc)
            return
        if stale:
            decided = await self._decide_usage(sorted(stale))  # the ledger away: raises (nothing taken yet)
            try:
                for txid, where in sorted(stale.items()):
                    for name in where:
                        if decided.get(txid):
                            await self._fcall("cg_drop_flush", (_fls_key(name), _rec_key(name, txid)), txid)
                        else:
                            await self._fcall("cg_give_flush", (_fls_key(name), _rec_key(name, txid), _led_key(name)),
                                              txid, DAY_TTL)  # fmt: skip
            except (RedisError, OSError) as exc:
                self._down(exc)
                return
        try:
            for name in names:
                self._touched.discard(name)
                try:
                    await self._take(flush, name)
                except BaseException:
                    self._touched.add(name)
                    raise
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def _stale_records(self, names: list[str]) -> dict[str, list[str]]:
        """Records of these keys to settle now: flush id -> names. Not this process's own open ones
        (``_settle_open``); a replica's left behind by an earlier process of it, a dead replica's
        (no beat within the beat's lifetime), and any older than RECORD_LEASE_MS."""
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrange(_fls_key(name), 0, -1, withscores=True)
            pipe.zrange(REPLICAS_KEY, 0, -1, withscores=True)
            pipe.time()
            *found, replicas, now = await pipe.execute()
        now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        alive_since = now_ms - (int(self.beat_every * 3000) + 500)
        live = {str(r) for r, at in replicas if float(at) >= alive_since}
        stale: dict[str, list[str]] = {}
        for name, rows in zip(names, found, strict=True):
            for txid, at in rows:
                txid = str(txid)
                if txid in self._open:
                    continue
                owner = _flush_replica(txid)
                if owner == self.replica or owner not in live or now_ms - float(at) > RECORD_LEASE_MS:
                    stale.setdefault(txid, []).append(name)
        return stale

    async def _take(self, flush: _Flush, name: str) -> None:
        keys = (_led_key(name), _took_key(name), _fls_key(name), _rec_key(name, flush.txid))
        rows = list(await self._fcall("cg_take_ledger", keys, flush.txid, DAY_TTL))
        into = flush.recorded
        if rows and rows[0] == "tx":
            rows = rows[1:]
        else:  # a library older than 8 (loaded during a roll): taken and deleted, held here only
            into = flush.kept
        for day, tokens in zip(rows[::2], rows[1::2], strict=True):
            into[(str(day), name)] = into.get((str(day), name), 0) + int(tokens)
