"""Batches are charged their reservation at creation and settled when they end.

Upstream bills a batch's requests out of the client's sight, later. The
gateway charges the whole reservation when the batch is created (the
keystore's ``batch_charges`` row remembers the day and the amount), and a
background task of the gateway itself, not a client's call, polls every
open batch upstream until it has ended, reads its results' usage
(:func:`batch_usage`) and settles the difference against the day that was
charged. The audit log gets one ``batch_settled`` record per batch.

Every replica polls; the store's ``settle_batch`` marks a batch settled and
corrects the ledger in one transaction, so each batch is settled exactly
once (SQLite's write lock, PostgreSQL's row lock).

A batch upstream no longer knows (deleted before it was polled, expired
results) keeps its reservation: the gateway cannot show it cost less.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yarl

from claudegate_gateway.batchurls import localise_page
from claudegate_gateway.errors import GatewayError
from claudegate_gateway.metering import usage_tokens
from claudegate_gateway.ownership import MAX_OUTPUT_FILES, MAX_SNAPSHOT_BYTES, output_file_ids
from claudegate_gateway.store import Store

log = logging.getLogger("claudegate.gateway")

# Batches looked at per poll; the least recently checked go first.
BATCHES_PER_POLL = 20
# A results line longer than this is not a result the gateway can read: the batch keeps its reservation.
MAX_RESULT_LINE = 64 << 20


class KeepReservation(Exception):
    """The results cannot be read to the end: settle at the reservation."""


def result_usage(line: bytes) -> tuple[int, int]:
    """(input, output) tokens one results line was billed (none for errored, canceled and expired requests)."""
    got_in, got_out, _ = read_result(line)
    return got_in, got_out


def read_result(line: bytes) -> tuple[int, int, list[str]]:
    """(input, output) tokens one results line was billed, and the files its code execution wrote."""
    try:
        doc = json.loads(line)
    except ValueError:
        raise KeepReservation("a results line is not JSON") from None
    result = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(result, dict) or result.get("type") != "succeeded":
        return 0, 0, []
    message = result.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    files = [f for block in content for f in output_file_ids(block)] if isinstance(content, list) else []
    usage = message.get("usage") if isinstance(message, dict) else None
    if not isinstance(usage, dict):
        return 0, 0, files
    total = usage_tokens(usage)
    out = usage.get("output_tokens")
    output = out if isinstance(out, int) and not isinstance(out, bool) else 0
    return total - output, output, files


def batch_usage(results: bytes) -> int:
    """The tokens a whole results file (JSON lines) was billed: the settle step of a batch."""
    return sum(sum(result_usage(line)) for line in results.splitlines() if line.strip())


class BatchSettler:
    """The background poll: ended batches settled against the day they were charged."""

    def __init__(
        self, store: Store, adjust_daily: Callable[[str, str, int], None],
        session: Callable[[], aiohttp.ClientSession | None], base_url: str,
        upstream_key: str, audit: Callable[[dict[str, Any]], None], interval: float,
    ) -> None:  # fmt: skip
        self.store = store
        # Admission's own view of the day (Redis's counter with state.redis), moved
        # by the replica whose settle_batch won; the store's ledger moved in it.
        self._adjust_daily = adjust_daily
        self._session = session
        self._base = base_url
        self._key = upstream_key
        self._audit = audit
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad poll must not end the task; the next one retries
                log.warning("batch settlement poll failed: %s", type(exc).__name__)

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._key, "anthropic-version": "2023-06-01"}

    async def poll(self) -> int:
        """Check the open batches once; return how many were settled."""
        settled = 0
        for batch_id, owner, _day, reserved in await self.store.open_batches(BATCHES_PER_POLL):
            billed = await self._ended_usage(batch_id, owner, reserved)
            if billed is None:
                await self.store.batch_checked(batch_id)
                continue
            used = sum(billed)
            done = await self.store.settle_batch(batch_id, used)
            if done is not None:
                owner, day, reserved, daily = done
                if daily:
                    self._adjust_daily(owner, day, used - reserved)
                settled += 1
                self._audit({
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "event": "batch_settled",
                    "batch_id": batch_id,
                    "key_name": owner,
                    "day": day,
                    "reserved_tokens": reserved,
                    # What upstream billed (claudegate usage adds these to the key's day).
                    "input_tokens": billed[0],
                    "output_tokens": billed[1],
                    "used_tokens": used,
                    "settled_tokens": used - reserved,
                })  # fmt: skip
        return settled

    async def _ended_usage(self, batch_id: str, owner: str, reserved: int) -> tuple[int, int] | None:
        """The batch's billed (input, output) once it has ended; None while it runs (or upstream cannot say now).

        A batch whose results cannot be read keeps its reservation, counted as input.
        The files its requests' code execution wrote become the batch owner's
        (as a message's do for its caller), the first owner of an id keeping it.
        """
        session = self._session()
        if session is None:
            return None
        url = yarl.URL(f"{self._base}/v1/messages/batches/{batch_id}", encoded=True)
        try:
            async with session.get(url, headers=self._headers(), allow_redirects=False) as up:
                if up.status == 404:
                    with contextlib.suppress(GatewayError):  # and it leaves the owner's list
                        await self.store.owners.forget("batch", batch_id)
                    return reserved, 0  # gone upstream: it keeps what it was charged
                if up.status != 200:
                    return None
                doc = await up.json(content_type=None)
            await self._keep(batch_id, doc)
            if not isinstance(doc, dict) or doc.get("processing_status") != "ended":
                return None
            async with session.get(url / "results", headers=self._headers(), allow_redirects=False) as up:
                if up.status == 404:
                    return reserved, 0
                if up.status != 200:
                    return None
                got_in, got_out, files = await self._sum_results(up)
            # Only while the batch is still its owner's: a name revoked and given to someone
            # else meanwhile disowned it, and its outputs are not the new holder's.
            with contextlib.suppress(GatewayError):  # the store is away: the files stay nobody's
                if files and await self.store.owners.owns("batch", batch_id, owner):
                    for file_id in files:
                        await self.store.owners.record("file", file_id, owner)
            return got_in, got_out
        except KeepReservation:
            return reserved, 0
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _keep(self, batch_id: str, doc: Any) -> None:
        """The batch as the poll saw it, for the owner's lists (objects.py): they stay current without a client's get."""
        if isinstance(doc, dict) and doc.get("id") == batch_id and doc.get("type") == "message_batch":
            localise_page(doc)  # a list shows the gateway's results path, never upstream's
            text = json.dumps(doc, separators=(",", ":"))
            if len(text) <= MAX_SNAPSHOT_BYTES:  # (a larger one: the list keeps the view it has)
                with contextlib.suppress(GatewayError):  # the store is away: the list shows the older view
                    await self.store.owners.snapshot("batch", batch_id, text)

    async def _sum_results(self, up: aiohttp.ClientResponse) -> tuple[int, int, list[str]]:
        total_in = total_out = 0
        files: dict[str, None] = {}

        def add(line: bytes) -> None:
            nonlocal total_in, total_out
            got_in, got_out, wrote = read_result(line)
            total_in, total_out = total_in + got_in, total_out + got_out
            for file_id in wrote:
                if len(files) < MAX_OUTPUT_FILES * 10:
                    files[file_id] = None

        pending = bytearray()  # the line being read; bytearray: appending a long line stays linear
        started = time.monotonic()
        async for chunk in up.content.iter_any():
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                pending += chunk[start:end]
                if pending.strip():
                    add(bytes(pending))
                pending.clear()
                start = end + 1
            pending += chunk[start:]
            if len(pending) > MAX_RESULT_LINE:
                raise KeepReservation("a results line over the gateway's limit")
            if time.monotonic() - started > 600:
                raise KeepReservation("the results took too long to read")
        if pending.strip():
            add(bytes(pending))
        return total_in, total_out, list(files)
