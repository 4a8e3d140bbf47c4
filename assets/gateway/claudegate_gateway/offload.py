"""Large bodies are inspected in a worker process, off the event loop.

Parsing and filtering a 30 MB body takes long enough (hundreds of ms to
seconds) to stall every other client if it ran on the event loop. A thread
would not help: ``json.loads``, the ``re`` engine and Unicode normalisation
hold the GIL for as long as they run on one large string. So bodies of at
least :data:`INLINE_MAX` bytes go to a small process pool (spawned, not
forked: the gateway has threads); smaller ones, the common case (Claude
Code's ~50 KB requests), are inspected inline, where the hand-off would
cost more than the work. The workers (one per core this process may run
on, see fairqueue.py) start with the first large body and stop when none
came for a while; keys take turns at them (:class:`~.fairqueue.FairTurns`),
so one key's large bodies never make another key's wait behind all of them.

The worker builds its own :class:`FilterPolicy` from the same config (a
policy holds lambdas and is not picklable). If the pool cannot be started
(no ``/dev/shm``, say) the gateway falls back to a thread and says so in
its log once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from claudegate_gateway.fairqueue import FairTurns, host_cores
from claudegate_gateway.filecontents import Contents, contents, looks_opened
from claudegate_gateway.filters import FilterPolicy, FilterResult, Verdict
from claudegate_gateway.filters.clients import ClientPolicies
from claudegate_gateway.filters.response import ResponseFilter
from claudegate_gateway.inspection import Inspection, inspect_body
from claudegate_gateway.keystore import Scopes
from claudegate_gateway.uploads import inside_document

log = logging.getLogger("claudegate.gateway")

INLINE_MAX = 256 * 1024
# One worker per core, up to a ceiling: each idle worker is ~40 MB, and a
# 32 MB body parses into several times that while it is inspected.
MAX_WORKERS = 16
WORKERS = min(MAX_WORKERS, host_cores())
IDLE_SECONDS = 120.0
WORKER_NICENESS = 10

_policy: ClientPolicies | None = None
_R = TypeVar("_R")


def build_policy(filters: Sequence[dict[str, Any]] | None, source: str) -> FilterPolicy:
    """The filter policy of a config: the default one when ``filters`` is absent."""
    return FilterPolicy.default() if filters is None else FilterPolicy.from_config(list(filters), source)


def _init_worker(
    filters: Sequence[dict[str, Any]] | None, source: str, client_filters: Mapping[str, Mapping[str, str]]
) -> None:
    global _policy
    _policy = ClientPolicies(build_policy(filters, source), client_filters)


def _init_process_worker(
    filters: Sequence[dict[str, Any]] | None, source: str, client_filters: Mapping[str, Mapping[str, str]]
) -> None:
    # Below the event loop's priority: on a busy host the loop, which every
    # key's requests and streams go through, gets the CPU before bulk inspection.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    _init_worker(filters, source, client_filters)


def _ready() -> None:
    """Nothing: submitted once per worker so that all of them start with the pool."""


def _inspect_in_worker(kind: str, body: bytes, scopes: Scopes, client: str = "") -> Inspection:
    assert _policy is not None, "worker not initialised"
    found = inspect_body(kind, body, scopes, _policy.request_policy(client))
    if not found.changed:
        found.body = b""  # the parent has it: do not copy 30 MB back
    return found


def _inside_in_worker(data: bytes, client: str) -> tuple[Contents, FilterResult | None]:
    assert _policy is not None, "worker not initialised"
    return _inside(data, _policy.request_policy(client))


def _inside(data: bytes, policy: FilterPolicy) -> tuple[Contents, FilterResult | None]:
    found = contents(data)
    result = None
    if found.refused is None and found.texts:
        result = policy.apply(inside_document(found.texts))
        result.body = {}  # a match blocks the upload: the rewritten text is never used
    found.texts = []  # filtered here: up to 64 MiB not copied back to the parent
    return found, result


def _inside_download_in_worker(data: bytes, client: str) -> tuple[Contents, list[Verdict]]:
    assert _policy is not None, "worker not initialised"
    return inside_download(data, _policy.response_filter(client))


def inside_download(data: bytes, rf: ResponseFilter | None) -> tuple[Contents, list[Verdict]]:
    """What a downloaded file holds beyond its bytes, and the response rules' verdicts on that text."""
    found = contents(data)
    verdicts: list[Verdict] = []
    if found.refused is None and found.texts and rf is not None:
        checked = rf.message({"content": [{"type": "text", "text": t} for t in found.texts]})
        verdicts = checked.tally.verdicts()
    found.texts = []  # checked here: not copied back to the parent
    return found, verdicts


def _apply_in_worker(doc: dict[str, Any], client: str) -> FilterResult:
    assert _policy is not None, "worker not initialised"
    result = _policy.request_policy(client).apply(doc)
    if not result.changed:
        result.body = {}  # unchanged: the parent has it, do not copy 30 MB back
    return result


class Offload:
    """Runs :func:`inspect_body` inline or in the worker pool, by body size.

    The worker processes start with the first large body and stop after
    ``idle_seconds`` without one, so a gateway that never sees large bodies
    pays no memory for them (a worker and multiprocessing's resource tracker
    are ~40 MB together).
    """

    def __init__(
        self, policy: FilterPolicy, filters: Sequence[dict[str, Any]] | None, source: str,
        client_filters: Mapping[str, Mapping[str, str]] | None = None, inline_max: int = INLINE_MAX,
        idle_seconds: float = IDLE_SECONDS, workers: int = WORKERS,
    ) -> None:  # fmt: skip
        self.policy = policy
        # Per-client overrides (rule off, or another action), here and in the worker.
        self.policies = ClientPolicies(policy, client_filters or {})
        self.inline_max = inline_max
        self.idle_seconds = idle_seconds
        overrides = {name: dict(rules) for name, rules in (client_filters or {}).items()}
        self._initargs = (None if filters is None else tuple(filters), source, overrides)
        self._pool: concurrent.futures.Executor | None = None
        self.workers = max(1, workers)
        self.turns = FairTurns(self.workers)
        self._busy = 0
        self._last_used = 0.0
        self._reaper: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._pool is not None

    def _new_pool(self) -> concurrent.futures.Executor:
        try:
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process_worker, initargs=self._initargs,
            )  # fmt: skip
            # Spawned workers start on demand, one per job that finds none idle:
            # start them all now, so a second key's body does not wait for a
            # Python to start while the first key's body holds the only worker.
            for _ in range(self.workers):
                pool.submit(_ready)
            return pool
        except (OSError, ImportError) as exc:  # e.g. no semaphores without /dev/shm
            log.warning("no worker process for large bodies (%s); inspecting them in a thread", exc)
            _init_worker(*self._initargs)
            return concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="inspect")

    def start(self) -> None:
        """Start the idle reaper (on the running event loop)."""
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.idle_seconds / 4))
            if self._pool is not None and not self._busy and time.monotonic() - self._last_used > self.idle_seconds:
                self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self._shutdown()

    async def inspect(self, kind: str, body: bytes, scopes: Scopes, client: str = "") -> Inspection:
        if len(body) < self.inline_max:
            found = inspect_body(kind, body, scopes, self.policies.request_policy(client), parse_pdfs=False)
            if not found.needs_worker:
                return found
            # A PDF sent inline is parsed (inspection.py): never on the event loop, however small.
        found = await self._in_worker(client, _inspect_in_worker, kind, body, scopes, client)
        if not found.changed:
            found.body = body
        return found

    async def apply_policy(self, doc: dict[str, Any], size: int, client: str = "") -> FilterResult:
        """The client's request policy alone on a prepared document (an upload's text), in the worker when large."""
        if size < self.inline_max:
            return self.policies.request_policy(client).apply(doc)
        return await self._in_worker(client, _apply_in_worker, doc, client)

    async def inside(self, data: bytes, client: str = "") -> tuple[Contents, FilterResult | None]:
        """What an uploaded file holds beyond its bytes (filecontents.py), and the client's request
        policy on it, in one worker call; a plain file has nothing inside to read."""
        if not looks_opened(data):
            return Contents(), None
        return await self._in_worker(client, _inside_in_worker, data, client)

    async def inside_download(self, data: bytes, client: str = "") -> tuple[Contents, list[Verdict]]:
        """What a downloaded file holds beyond its bytes (a compressed file, a zip, a PDF) and the
        client's response rules' verdicts on it, in one worker call."""
        if not looks_opened(data):
            return Contents(), []
        return await self._in_worker(client, _inside_download_in_worker, data, client)

    async def _in_worker(self, key: str, fn: Callable[..., _R], *args: Any) -> _R:
        """``fn(*args)`` in a worker, when it is ``key``'s turn (round robin over keys)."""
        self._busy += 1  # counted while waiting too: the reaper must not stop the pool under a queue
        try:
            return await self.turns.run(key, lambda: self._submit(fn, *args))
        finally:
            self._busy -= 1
            self._last_used = time.monotonic()

    async def _submit(self, fn: Callable[..., _R], *args: Any) -> _R:
        if self._pool is None:
            self._pool = self._new_pool()
        pool = self._pool
        try:
            # At most `workers` jobs are ever submitted at once (the turns see
            # to it), so the executor's own first-come queue never decides.
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this request is the
            # gateway's failure (a 500); the next large body starts new workers.
            if self._pool is pool:  # not one a concurrent job already replaced
                log.error("an inspection worker died; the next large body starts new ones")
                self._shutdown()
            raise
