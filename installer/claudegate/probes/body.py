"""The body limit: an oversize upload over a raw HTTP/1.1 exchange, answered before it ends.

A client library would upload the whole body before reading the answer; the
probes send it with :func:`claudegate.probes.wire.exchange`, which stops as
soon as the server answers (or stops reading), so "refused from the headers
alone" and "refused part-way" can be told apart.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

from claudegate.probes.http import error_problem
from claudegate.probes.verdict import Failed
from claudegate.probes.wire import Endpoint, exchange

# How long to wait for the server to refuse an oversize body from its headers
# alone before starting to upload it.
EARLY_ANSWER_WAIT = 1.0


def oversize_chunks(total: int, model: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """A JSON messages body of exactly ``total`` bytes (padding in the user text), made lazily."""
    head = json.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": ""}]})
    prefix, suffix = head[:-4].encode(), head[-4:].encode()  # split just inside the empty "content" string
    padding = total - len(prefix) - len(suffix)
    if padding < 0:
        yield (prefix + suffix)[:total]
        return
    yield prefix
    block = b"a" * chunk_size
    while padding > 0:
        n = min(padding, chunk_size)
        yield block[:n]
        padding -= n
    yield suffix


def check_body_limit(ep: Endpoint, ctx: ssl.SSLContext, model: str, max_body: int, timeout: float) -> str:
    """A body one byte over ``max_body`` gets 413 ``request_too_large``."""
    size = max_body + 1
    answer = exchange(
        ep, ctx, "POST", f"{ep.prefix}/v1/messages", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(size))],
        oversize_chunks(size, model), timeout=timeout,
        # A server that checks Content-Length answers from the headers alone: give it a moment.
        first_wait=min(EARLY_ANSWER_WAIT, timeout),
    )  # fmt: skip
    if answer.status == 0:
        raise Failed(f"POST /v1/messages with {size} bytes: no answer after {answer.sent} of {size} bytes "
                     f"({answer.error})")  # fmt: skip
    problem = error_problem(answer.status, answer.headers.get("content-type", ""), answer.body, 413,
                            "request_too_large")  # fmt: skip
    if problem:
        text = " ".join(answer.body[:120].decode("utf-8", "replace").split())
        raise Failed(f"POST /v1/messages with {size} bytes: {problem} {text}".strip())
    if answer.sent < size:
        when = f"after {answer.sent} of {size} bytes were sent"
    else:
        when = f"after the whole {size}-byte body"
    return f"413 request_too_large for {size} bytes (max_body_bytes + 1), {when}"
