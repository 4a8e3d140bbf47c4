"""Each key's share of the event loop spent relaying (and filtering) its streams.

The gateway has one event loop; every stream's events are parsed, filtered
and written on it. An upstream that sends events as fast as the loop can
take them (a long tool input in tiny deltas, many streams at once) would
otherwise keep the loop busy for that key alone, and every other key's
request would wait its turn behind a whole round of them.

:class:`LoopShare` keeps a running account per key of the loop time its
streams used: the account drains at ``share`` seconds per second, and a
stream whose key is over ``burst`` pauses (sleeps, so the loop serves
others) until the account is back under it. A key alone on an idle gateway
is slowed only when it uses more than ``share`` of the loop; the pause is
what lets the other keys' requests through in between.
"""

from __future__ import annotations

import time

#: A key's streams may use this fraction of the loop (more only as a short burst).
SHARE = 0.25
#: Loop seconds a key may use at once before its streams pause.
BURST = 0.004
#: Longest single pause (the account is rechecked after it).
MAX_PAUSE = 0.05


class LoopShare:
    def __init__(self, share: float = SHARE, burst: float = BURST) -> None:
        self.share = share
        self.burst = burst
        self._debt: dict[str, float] = {}
        self._at: dict[str, float] = {}

    def debt(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        debt = self._debt.get(key, 0.0) - (now - self._at.get(key, now)) * self.share
        return max(0.0, debt)

    def charge(self, key: str, used: float, now: float | None = None) -> float:
        """Add ``used`` loop seconds to ``key``'s account; the seconds its stream should pause now."""
        now = time.monotonic() if now is None else now
        debt = self.debt(key, now) + used
        if debt <= 0.0:
            self._debt.pop(key, None)  # bounded state: an idle key leaves no entry
            self._at.pop(key, None)
            return 0.0
        self._debt[key] = debt
        self._at[key] = now
        over = debt - self.burst
        return min(MAX_PAUSE, over / self.share) if over > 0 else 0.0

    def forget_idle(self, now: float | None = None) -> None:
        """Drop the accounts that have drained (called now and then: keeps the table small)."""
        now = time.monotonic() if now is None else now
        for key in [k for k in self._debt if self.debt(k, now) <= 0.0]:
            del self._debt[key]
            del self._at[key]
