"""A throwaway, minimal stand-in for the fake Anthropic API.

Used by the benchmarks only when ``tests/support/fake_anthropic.py`` is not
there (or with ``--fake standin``). Same command line as the real fake:

    python bench/_standin_fake.py --listen 127.0.0.1:0 --api-key K [--latency S] [--event-delay S]

It answers ``POST /v1/messages`` (JSON, or SSE when ``"stream": true``) and
prints ``listening on http://HOST:PORT`` once bound. It checks the key, and
nothing else: it is a load target, not a conformance fake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import uuid

from aiohttp import web

WORDS = ["Hello", " from", " the", " stand", "-in", " fake", " Anthropic", " API", "."]


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_standin"}
    return web.json_response(body, status=status)


def make_app(api_key: str, latency: float, event_delay: float, deltas: int, delta_chars: int = 0) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
            "Bearer "
        )
        if given != api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "body is not JSON")
        model = body.get("model", "claude-standin")
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        if latency:
            await asyncio.sleep(latency)
        long_text = "x" * delta_chars
        text = [long_text if delta_chars else WORDS[i % len(WORDS)] for i in range(deltas)]
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "".join(text)}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": deltas},
                },
                headers={"request-id": "req_" + msg_id[4:]},
            )
        resp = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": "req_" + msg_id[4:],
            }
        )
        await resp.prepare(request)
        events: list[tuple[str, dict]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 10, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        tail: list[tuple[str, dict]] = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": deltas},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        deltas_made = (
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
            for t in text
        )
        for i, (name, data) in enumerate(itertools.chain(events, deltas_made, tail)):
            if i and event_delay:
                await asyncio.sleep(event_delay)
            await resp.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


async def _main(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    app = make_app(args.api_key, args.latency, args.event_delay, args.deltas, args.delta_chars)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port), backlog=1024)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--api-key", required=True)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--event-delay", type=float, default=0.0)
    p.add_argument("--deltas", type=int, default=8, help="content_block_delta events per stream")
    p.add_argument("--delta-chars", type=int, default=0, help="characters of each delta's text (0: one word)")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
