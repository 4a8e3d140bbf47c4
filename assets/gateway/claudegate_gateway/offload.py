"""Large bodies are inspected in a worker process, off the event loop.

Parsing and filtering a 30 MB body takes long enough (hundreds of ms to
seconds) to stall every other client if it ran on the event loop. A thread
would not help: ``json.loads``, the ``re`` engine and Unicode normalisation
hold the GIL for as long as they run on one large string. So bodies of at
least :data:`INLINE_MAX` bytes go to a small process pool (spawned, not
forked: the gateway has threads); smaller ones, the common case (Claude
Code's ~50 KB requests), are inspected inline, where the hand-off would
cost more than the work.

The worker builds its own :class:`FilterPolicy` from the same config (a
policy holds lambdas and is not picklable). If the pool cannot be started
(no ``/dev/shm``, say) the gateway falls back to a thread and says so in
its log once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from claudegate_gateway.filters import FilterPolicy, FilterResult
from claudegate_gateway.filters.clients import ClientPolicies
from claudegate_gateway.inspection import Inspection, inspect_body
from claudegate_gateway.keystore import Scopes

log = logging.getLogger("claudegate.gateway")

INLINE_MAX = 256 * 1024
WORKERS = 1

_policy: ClientPolicies | None = None


def build_policy(filters: Sequence[dict[str, Any]] | None, source: str) -> FilterPolicy:
    """The filter policy of a config: the default one when ``filters`` is absent."""
    return FilterPolicy.default() if filters is None else FilterPolicy.from_config(list(filters), source)


def _init_worker(
    filters: Sequence[dict[str, Any]] | None, source: str, client_filters: Mapping[str, Mapping[str, str]]
) -> None:
    global _policy
    _policy = ClientPolicies(build_policy(filters, source), client_filters)


def _inspect_in_worker(kind: str, body: bytes, scopes: Scopes, client: str = "") -> Inspection:
    assert _policy is not None, "worker not initialised"
    found = inspect_body(kind, body, scopes, _policy.request_policy(client))
    if not found.changed:
        found.body = b""  # the parent has it: do not copy 30 MB back
    return found


def _apply_in_worker(doc: dict[str, Any], client: str) -> FilterResult:
    assert _policy is not None, "worker not initialised"
    return _policy.request_policy(client).apply(doc)


def _ready() -> bool:
    return _policy is not None


class Offload:
    """Runs :func:`inspect_body` inline or in the worker pool, by body size."""

    def __init__(
        self, policy: FilterPolicy, filters: Sequence[dict[str, Any]] | None, source: str,
        client_filters: Mapping[str, Mapping[str, str]] | None = None, inline_max: int = INLINE_MAX,
    ) -> None:
        self.policy = policy
        # Per-client overrides (rule off, or another action), here and in the worker.
        self.policies = ClientPolicies(policy, client_filters or {})
        self.inline_max = inline_max
        overrides = {name: dict(rules) for name, rules in (client_filters or {}).items()}
        self._initargs = (None if filters is None else tuple(filters), source, overrides)
        self._pool: concurrent.futures.Executor | None = None

    def _new_pool(self) -> concurrent.futures.Executor:
        try:
            return concurrent.futures.ProcessPoolExecutor(
                max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=self._initargs,
            )
        except (OSError, ImportError) as exc:  # e.g. no semaphores without /dev/shm
            log.warning("no worker process for large bodies (%s); inspecting them in a thread", exc)
            _init_worker(*self._initargs)
            return concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="inspect")

    async def start(self) -> None:
        """Start the pool and wait for the worker to be ready, so the first large body does not pay for it."""
        self._pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self._pool, _ready)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def inspect(self, kind: str, body: bytes, scopes: Scopes, client: str = "") -> Inspection:
        if len(body) < self.inline_max or self._pool is None:
            return inspect_body(kind, body, scopes, self.policies.request_policy(client))
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self._pool, _inspect_in_worker, kind, body, scopes, client)
        except BrokenProcessPool:
            # The worker died (killed, out of memory): start a new one for the
            # next request; this one is answered as the gateway's failure.
            log.error("the inspection worker died; starting a new one")
            self._pool = self._new_pool()
            raise
        if not found.changed:
            found.body = body
        return found

    async def apply_policy(self, doc: dict[str, Any], size: int, client: str = "") -> FilterResult:
        """The client's request policy alone on a prepared document (an upload's text), in the worker when large."""
        if size < self.inline_max or self._pool is None:
            return self.policies.request_policy(client).apply(doc)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, _apply_in_worker, doc, client)
        except BrokenProcessPool:
            log.error("the inspection worker died; starting a new one")
            self._pool = self._new_pool()
            raise
