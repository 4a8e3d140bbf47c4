"""Upstream's model catalogue, read once for every key for a short while.

``GET /v1/models`` (and a get of one model is answered by upstream, not
here) pages the caller's scoped view of upstream's *whole* catalogue
(modelscope.py), which costs up to :data:`~claudegate_gateway.modelscope.MAX_UPSTREAM_PAGES`
upstream requests. The catalogue does not depend on the client, so it is
kept here for ``models_cache_seconds`` (gateway.yaml; deploy.yaml
``limits.models_cache_seconds``) and shared by every key:

- **single flight**: while one read is under way, every other list call
  with the same selection waits for it (50 concurrent calls, one upstream
  read); the read runs in its own task, so a caller that leaves does not
  cancel it for the others;
- **only a catalogue is kept**: an upstream error (a status >= 400, an
  unreachable upstream, an answer in an unknown shape) is handed to the
  calls waiting on that read and then forgotten, so the next call asks again;
- **bounded**: at most :data:`MAX_SELECTIONS` selections (the query upstream
  sees and the ``anthropic-version``/``anthropic-beta`` headers) are kept,
  the least recently used dropped first, so a client varying its query
  cannot grow the gateway's memory.

Each list call still counts against its key's rpm (proxy.py counts it
before it gets here); a cache hit only spares upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_SELECTIONS", "Catalogue", "CatalogueCache", "Selection", "UpstreamAnswer"]

#: Selections kept at once (a few in practice: with and without a beta, a lifecycle filter).
MAX_SELECTIONS = 16

#: What distinguishes one upstream read from another: the query upstream sees and the headers that shape it.
Selection = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]


@dataclass(frozen=True)
class Catalogue:
    """Upstream's whole catalogue for one selection, and upstream's answer headers (already allowlisted)."""

    entries: tuple[dict[str, Any], ...]
    headers: tuple[tuple[str, str], ...]
    upstream_request_id: str | None


@dataclass(frozen=True)
class UpstreamAnswer:
    """An upstream error answer, passed on to the calls that waited for it; never kept."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    upstream_request_id: str | None


Read = Callable[[], Awaitable[Catalogue | UpstreamAnswer]]


class CatalogueCache:
    """Catalogues by selection, each kept for ``ttl`` seconds, one upstream read at a time per selection."""

    def __init__(
        self, ttl: float, *, max_selections: int = MAX_SELECTIONS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_selections = max_selections
        self.clock = clock
        self._kept: OrderedDict[Selection, tuple[float, Catalogue]] = OrderedDict()
        self._reading: dict[Selection, asyncio.Task[Catalogue | UpstreamAnswer]] = {}
        #: Upstream reads started (for the metrics and the tests).
        self.reads = 0

    def __len__(self) -> int:
        return len(self._kept)

    async def get(self, selection: Selection, read: Read) -> tuple[Catalogue | UpstreamAnswer, bool]:
        """The catalogue for ``selection`` and whether it was kept or shared (False: this call read it).

        ``read`` is called only when no fresh catalogue is kept and no read of
        this selection is under way; its exceptions reach every waiting call.
        """
        kept = self._kept.get(selection)
        if kept is not None:
            if self.clock() < kept[0]:
                self._kept.move_to_end(selection)
                return kept[1], True
            del self._kept[selection]
        task = self._reading.get(selection)
        shared = task is not None
        if task is None:
            self.reads += 1
            task = asyncio.ensure_future(self._read(selection, read))
            task.add_done_callback(_retrieved)
            self._reading[selection] = task
        # Shielded: a caller that leaves does not cancel the read the others wait for.
        return await asyncio.shield(task), shared

    async def _read(self, selection: Selection, read: Read) -> Catalogue | UpstreamAnswer:
        try:
            answer = await read()
        finally:
            self._reading.pop(selection, None)
        if isinstance(answer, Catalogue) and self.ttl > 0:
            self._kept[selection] = (self.clock() + self.ttl, answer)
            self._kept.move_to_end(selection)
            while len(self._kept) > self.max_selections:
                self._kept.popitem(last=False)
        return answer


def _retrieved(task: asyncio.Task[Catalogue | UpstreamAnswer]) -> None:
    """Every caller of a failed read may have left: its exception is still taken (no "never retrieved")."""
    if not task.cancelled():
        task.exception()
