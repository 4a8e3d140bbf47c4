"""Per-client request and token limits, in process.

Tokens are *reserved* before a request is forwarded (an input estimate plus
its max_tokens) and *settled* from the usage the response reports. Checking
and reserving happen with no await in between, so on one event loop N
parallel requests can never overshoot a limit.

Windows are exact sliding minutes (a log of entries), not fixed buckets: a
burst at a bucket edge cannot get twice the limit through.

The daily budget is shared with every other gateway process on the same
keystore (a blue/green switch runs two): it is checked and taken in one
keystore transaction (:class:`DailyLedger`, SQLite's ``BEGIN IMMEDIATE`` in
keystore.py), so two processes can never both admit the last of a day's
tokens. rpm and tpm stay in process (windows per process).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.keystore import Client

WINDOW = 60.0


@dataclass(eq=False)
class _Entry:
    at: float
    amount: int
    live: bool = True


@dataclass
class _Window:
    entries: deque[_Entry] = field(default_factory=deque)
    total: int = 0

    def expire(self, now: float) -> None:
        while self.entries and self.entries[0].at <= now - WINDOW:
            gone = self.entries.popleft()
            gone.live = False
            self.total -= gone.amount

    def wait_for(self, room_needed: int, limit: int, now: float) -> float:
        """Seconds until `room_needed` more fits under `limit`."""
        excess = self.total + room_needed - limit
        for entry in self.entries:
            excess -= entry.amount
            if excess <= 0:
                return max(0.0, entry.at + WINDOW - now)
        return WINDOW


class DailyLedger(Protocol):
    """Where the daily budget is counted; one atomic check-and-take per request."""

    def reserve_daily(self, name: str, day: str, tokens: int, limit: int) -> int | None:
        """Take `tokens` of `day` if they fit under `limit`: None when taken, else the tokens used already."""

    def add_daily(self, name: str, day: str, delta: int) -> None:
        """Add `delta` (negative: give back) to `day`'s usage, never below zero."""

    def daily_used(self, name: str, day: str) -> int:
        """Tokens `day` has used so far."""


class MemoryLedger:
    """A ledger in this process alone (unit tests; a gateway uses the keystore's)."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, str], int] = {}

    def reserve_daily(self, name: str, day: str, tokens: int, limit: int) -> int | None:
        used = self.used.get((day, name), 0)
        if used + tokens > limit:
            return used
        self.used[(day, name)] = used + tokens
        return None

    def add_daily(self, name: str, day: str, delta: int) -> None:
        self.used[(day, name)] = max(0, self.used.get((day, name), 0) + delta)

    def daily_used(self, name: str, day: str) -> int:
        return self.used.get((day, name), 0)


@dataclass(slots=True)  # one or two per request, held as long as it (a stream's for minutes)
class Reservation:
    name: str
    tokens: int
    entry: _Entry | None
    day: str
    daily: bool = False  # counted against the daily budget
    settled: bool = False


def _utc_day(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d")


def _rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Limiter:
    def __init__(self, ledger: DailyLedger | None = None) -> None:
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self.ledger: DailyLedger = ledger if ledger is not None else MemoryLedger()
        self.day = _utc_day(time.time())
        self._day_ends = 0.0

    def _roll_day(self, wall: float) -> None:
        if wall < self._day_ends:
            return  # formatting the date costs more than the rest of reserve()
        self.day = _utc_day(wall)
        self._day_ends = (int(wall) // 86400 + 1) * 86400

    def count_request(self, client: Client, now: float | None = None) -> None:
        """Count one more upstream request against the key's rpm without checking it.

        For a list's extra upstream pages: the call was admitted, and the
        pages it costs make the key's next request wait instead.
        """
        if client.scopes.rpm is None:
            return
        mono = time.monotonic() if now is None else now
        window = self._requests.setdefault(client.name, _Window())
        window.entries.append(_Entry(mono, 1))
        window.total += 1

    def reserve(
        self, client: Client, tokens: int, now: float | None = None, *, count_request: bool = True
    ) -> Reservation:
        """Admit one request needing up to `tokens`, or raise a 429 GatewayError.

        ``count_request=False``: the request was counted against rpm already
        (the proxy counts every operation first, before reading its body).
        """
        mono = time.monotonic() if now is None else now
        wall = time.time()
        self._roll_day(wall)
        s = client.scopes
        name = client.name
        req_w = self._requests.setdefault(name, _Window()) if s.rpm is not None and count_request else None
        tok_w = self._tokens.setdefault(name, _Window()) if s.tpm is not None and tokens else None
        if req_w is not None and s.rpm is not None:
            req_w.expire(mono)
            if req_w.total + 1 > s.rpm:
                wait = req_w.wait_for(1, s.rpm, mono)
                raise self._refuse(
                    f"This key's rate limit of {s.rpm} requests per minute is exceeded", wait, client, mono, wall
                )
        if tok_w is not None and s.tpm is not None:
            tok_w.expire(mono)
            if tokens > s.tpm:
                raise GatewayError(
                    "invalid_request_error",
                    f"This request may use up to {tokens} tokens (input estimate + max_tokens), more than "
                    f"this key's limit of {s.tpm} tokens per minute; lower max_tokens",
                )
            if tok_w.total + tokens > s.tpm:
                wait = tok_w.wait_for(tokens, s.tpm, mono)
                raise self._refuse(
                    f"This key's rate limit of {s.tpm} tokens per minute is exceeded", wait, client, mono, wall
                )
        if s.daily_tokens is not None and tokens:
            # Checked and taken in one keystore transaction: the last check,
            # so a refusal here leaves nothing taken anywhere.
            used = self.ledger.reserve_daily(name, self.day, tokens, s.daily_tokens)
            if used is not None:
                midnight = (int(wall) // 86400 + 1) * 86400
                raise self._refuse(
                    f"This key's daily budget of {s.daily_tokens} tokens is used up ({used} used)",
                    midnight - wall,
                    client,
                    mono,
                    wall,
                )
        # Everything checked: now take the room, with no await since the checks.
        if req_w is not None:
            req_w.entries.append(_Entry(mono, 1))
            req_w.total += 1
        entry = None
        if tok_w is not None:
            entry = _Entry(mono, tokens)
            tok_w.entries.append(entry)
            tok_w.total += tokens
        return Reservation(name, tokens, entry, self.day, s.daily_tokens is not None)

    def check_room(self, client: Client, tokens: int, now: float | None = None) -> None:
        """Raise the error reserve() would raise for `tokens` tokens, taking nothing.

        The cheap check before a body is parsed: a body whose size alone is
        more than the key has left is refused without being read through.
        """
        s = client.scopes
        mono = time.monotonic() if now is None else now
        wall = time.time()
        if s.tpm is not None:
            if tokens > s.tpm:
                raise GatewayError(
                    "invalid_request_error",
                    f"This request's body alone is estimated at {tokens} tokens, more than this key's limit "
                    f"of {s.tpm} tokens per minute",
                )
            window = self._tokens.get(client.name)
            if window is not None:
                window.expire(mono)
                if window.total + tokens > s.tpm:
                    wait = window.wait_for(tokens, s.tpm, mono)
                    raise self._refuse(
                        f"This key's rate limit of {s.tpm} tokens per minute is exceeded", wait, client, mono, wall
                    )
        if s.daily_tokens is not None:
            self._roll_day(wall)
            used = self.ledger.daily_used(client.name, self.day)
            if used + tokens > s.daily_tokens:
                midnight = (int(wall) // 86400 + 1) * 86400
                raise self._refuse(
                    f"This key's daily budget of {s.daily_tokens} tokens is used up ({used} used)",
                    midnight - wall, client, mono, wall,
                )

    def settle(self, res: Reservation, used: int) -> None:
        """Replace a reservation by what the response reported it used."""
        if res.settled:
            return
        res.settled = True
        delta = used - res.tokens
        if delta == 0:
            return
        if res.entry is not None:
            window = self._tokens.get(res.name)
            if window is not None and res.entry.live:
                window.total += delta
            res.entry.amount += delta
        if res.daily and res.tokens:
            self.ledger.add_daily(res.name, res.day, delta)

    def _refuse(self, message: str, wait: float, client: Client, mono: float, wall: float) -> GatewayError:
        headers = self.headers(client, mono, wall)
        headers["retry-after"] = str(max(1, int(wait + 0.999)))
        return GatewayError("rate_limit_error", message, headers=headers)

    def headers(self, client: Client, now: float | None = None, wall: float | None = None) -> dict[str, str]:
        """anthropic-ratelimit-* headers describing this gateway's own limits for the client."""
        mono = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        s = client.scopes
        out: dict[str, str] = {}
        for kind, limit, windows in (("requests", s.rpm, self._requests), ("tokens", s.tpm, self._tokens)):
            if limit is None:
                continue
            window = windows.get(client.name)
            used = 0
            reset = wall
            if window is not None:
                window.expire(mono)
                used = window.total
                if window.entries:
                    reset = wall + (window.entries[0].at + WINDOW - mono)
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, limit - used))
            out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(reset)
        return out
