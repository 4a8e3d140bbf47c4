"""The rate limit and the allowlist, as a client sees them.

:func:`check_burst` fires quick keep-alive requests until one is refused with
a proper 429 (the smoke test's ``limits.burst``, the audit's
``limits.per_ip_burst``); :func:`check_allowlist` sends from a local address
outside the allowlist, naming an allowed one in forwarding headers.
"""

from __future__ import annotations

import errno
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from claudegate.probes.http import anthropic_error_problem, client
from claudegate.probes.verdict import Failed, Skipped, describe_error, root_cause
from claudegate.probes.wire import Endpoint

BURST_CONCURRENCY = 16


def check_allowlist(
    ep: Endpoint, ctx: ssl.SSLContext, timeout: float, source: str | None, own_address: str | None
) -> str:
    if source is None:
        raise Skipped("allowlist_probe needs probe_source: a local address outside the allowlist")
    headers: dict[str, str] = {}
    if own_address:
        # Naming an allowed address (our own) in forwarding headers must not help.
        headers = {
            "x-forwarded-for": own_address,
            "x-real-ip": own_address,
            "forwarded": f"for={own_address}",
        }
    with client(ep, ctx, timeout, local_address=source) as http:
        try:
            response = http.get(ep.https_url("/v1/models"), headers=headers)
        except httpx.ConnectError as exc:
            cause = root_cause(exc)
            if isinstance(cause, OSError) and cause.errno == errno.EADDRNOTAVAIL:
                raise Failed(f"cannot send from {source}: not an address of this machine") from None
            if isinstance(cause, ConnectionRefusedError):
                return f"a connection from {source} was refused"
            raise Failed(f"the probe from {source} failed: {describe_error(exc)}") from None
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            return f"a request from {source} was cut off ({describe_error(exc)})"
    problem = anthropic_error_problem(response, 403, "permission_error")
    if problem:
        raise Failed(f"a request from {source} (outside the allowlist) was not refused: {problem}")
    spoof = " even when forwarding headers named an allowed address" if headers else ""
    return f"403 permission_error from {source}{spoof}"


def check_burst(ep: Endpoint, ctx: ssl.SSLContext, timeout: float, burst: int) -> str:
    if burst <= 0:
        raise Skipped("burst is 0: set burst to the number of requests that must provoke a 429")
    url = ep.https_url("/v1/models")  # without a key: cheap, and never reaches the upstream
    lock = threading.Lock()
    done = threading.Event()
    state: dict[str, Any] = {"fired": 0, "codes": Counter(), "good": None, "bad": None, "errors": Counter()}

    def worker(http: httpx.Client) -> None:
        while not done.is_set():
            with lock:
                if state["fired"] >= burst:
                    return
                state["fired"] += 1
            try:
                response = http.get(url)
            except httpx.TransportError as exc:
                with lock:
                    state["errors"][type(exc).__name__] += 1
                continue
            with lock:
                state["codes"][response.status_code] += 1
                if response.status_code != 429:
                    continue
                problem = anthropic_error_problem(response, 429, "rate_limit_error")
                if problem is None and not response.headers.get("retry-after", "").strip():
                    problem = "429 without a retry-after header"
                if problem is None:
                    state["good"] = (state["fired"], response.headers["retry-after"].strip())
                    done.set()
                elif state["bad"] is None:
                    state["bad"] = problem

    concurrency = max(1, min(burst, BURST_CONCURRENCY))
    started = time.monotonic()
    with (
        client(ep, ctx, timeout, max_connections=concurrency) as http,
        ThreadPoolExecutor(concurrency, thread_name_prefix="probe-burst") as pool,
    ):
        for future in [pool.submit(worker, http) for _ in range(concurrency)]:
            future.result()
    elapsed = time.monotonic() - started
    codes = ", ".join(f"{code}x{n}" for code, n in sorted(state["codes"].items()))
    errors = ", ".join(f"{name}x{n}" for name, n in sorted(state["errors"].items()))
    seen = codes + (f"; errors {errors}" if errors else "")
    if state["good"] is None:
        if state["bad"]:
            raise Failed(f"{state['fired']} requests got 429 but not a proper one: {state['bad']} ({seen})")
        raise Failed(f"no 429 in {state['fired']} requests within {elapsed:.1f} s ({seen or 'no answers'})")
    fired, retry = state["good"]
    return f"429 rate_limit_error with retry-after {retry} within {fired} requests in {elapsed:.1f} s ({seen})"
