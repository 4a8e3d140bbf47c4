"""The demo's echo upstream: a tiny Anthropic-compatible API that answers without a model.

``claudegate try`` runs it as its own, clearly labelled container
(``claudegate-demo-upstream``, from the gateway image, so no other image is
built) and points the demo deployment's ``upstream.base_url`` at it. It is
never started for a real deploy: nothing but ``claudegate try`` names it.

It speaks just enough of the Messages API for the official SDKs, curl,
Claude Code and the deploy's smoke test: ``GET /v1/models[/{id}]``,
``POST /v1/messages`` (plain JSON and SSE streaming, with usage in
``message_start`` / ``message_delta`` so the gateway meters it as usual) and
``POST /v1/messages/count_tokens``. The answer repeats the last user text,
prefixed with ``echo:``, so nobody mistakes it for a model. Tokens are
estimated (4 characters each); nothing is billed anywhere.

It wants an upstream key that starts with ``sk-ant-demo-`` (the one
``claudegate try`` writes), so a demo gateway that failed to inject its key,
or a real key sent here by mistake, is refused with Anthropic's 401 shape.

    python -m claudegate_gateway.demo_upstream --listen 0.0.0.0:8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["DEMO_KEY_PREFIX", "MODELS", "main", "make_app"]

DEMO_KEY_PREFIX = "sk-ant-demo-"
MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5")
#: Bounds that keep the echo cheap whatever a client sends.
MAX_BODY = 8 * 1024 * 1024
MAX_ECHO_CHARS = 2000


def _rid() -> str:
    return "req_demo_" + secrets.token_hex(12)


def _error(status: int, kind: str, message: str) -> web.Response:
    rid = _rid()
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": rid}
    return web.json_response(body, status=status, headers={"request-id": rid})


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _text_of(content: Any) -> str:
    """The plain text of a message's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _all_text(body: Mapping[str, Any]) -> str:
    parts = [_text_of(body.get("system", ""))]
    messages = body.get("messages")
    if isinstance(messages, list):
        parts += [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
    return "\n".join(p for p in parts if p)


def _typed(content: Any) -> str:
    """What the person typed: the last text block that is not a client's ``<system-reminder>``.

    Claude Code sends its environment and reminders as text blocks ahead of the
    prompt; echoing those would hide the prompt behind pages of context.
    """
    if isinstance(content, list):
        texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        typed = [t for t in texts if isinstance(t, str) and not t.lstrip().startswith("<system-reminder>")]
        if typed:
            return str(typed[-1])
    return _text_of(content)


def _answer(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    last = ""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                last = _typed(message.get("content"))
                break
    return ("echo: " + last)[:MAX_ECHO_CHARS]


@web.middleware
async def _require_demo_key(request: web.Request, handler: Any) -> web.StreamResponse:
    bearer = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
    if not key.startswith(DEMO_KEY_PREFIX):
        return _error(401, "authentication_error", "the demo upstream accepts only the demo's key (sk-ant-demo-...)")
    response: web.StreamResponse = await handler(request)
    return response


def _model_entry(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": f"{model} (demo echo)", "created_at": "2026-01-01T00:00:00Z"}


async def _models(request: web.Request) -> web.Response:
    data = [_model_entry(m) for m in MODELS]
    return web.json_response({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})


async def _model(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    if model not in MODELS:
        return _error(404, "not_found_error", f"model: {model}")
    return web.json_response(_model_entry(model))


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "invalid_request_error", "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error(400, "invalid_request_error", "model: field required")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return _error(400, "invalid_request_error", "messages: at least one message is required")
    return body


async def _count_tokens(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    return web.json_response({"input_tokens": _tokens(_all_text(body))})


async def _messages(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _error(400, "invalid_request_error", "max_tokens: must be a positive integer")
    # Cut to max_tokens (4 characters each), as a model stops at its budget.
    text = _answer(body)[: max_tokens * 4]
    stop = "end_turn" if len(text) < max_tokens * 4 else "max_tokens"
    usage_in, usage_out = _tokens(_all_text(body)), _tokens(text)
    message: dict[str, Any] = {
        "id": "msg_demo_" + secrets.token_hex(12),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
    }
    if not body.get("stream"):
        return web.json_response(message, headers={"request-id": _rid()})
    return await _stream(request, message, text)


async def _stream(request: web.Request, message: dict[str, Any], text: str) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "request-id": _rid()}
    )
    await response.prepare(request)

    async def send(event: str, data: Mapping[str, Any]) -> None:
        await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    await send("message_start", {"type": "message_start", "message": start})
    await send("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})  # fmt: skip
    await send("ping", {"type": "ping"})
    # A few words per event, a little apart: a stream a person can see arrive.
    words = text.split(" ")
    for i in range(0, len(words), 3):
        chunk = " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
        await send("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": chunk}})  # fmt: skip
        await asyncio.sleep(0.02)
    await send("content_block_stop", {"type": "content_block_stop", "index": 0})
    await send("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                 "usage": {"output_tokens": message["usage"]["output_tokens"]}})  # fmt: skip
    await send("message_stop", {"type": "message_stop"})
    await response.write_eof()
    return response


def make_app() -> web.Application:
    app = web.Application(middlewares=[_require_demo_key], client_max_size=MAX_BODY)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="claudegate_gateway.demo_upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    print(f"claudegate demo echo upstream (not the Anthropic API) on {args.listen}", flush=True)
    web.run_app(make_app(), host=host or "0.0.0.0", port=int(port), print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
