"""The aiohttp server with its own error page replaced.

A request aiohttp's HTTP parser refuses (a bad request line, a non-ASCII
method, a malformed or oversized header...) never reaches the gateway's
handler: aiohttp answers it itself, from ``RequestHandler.handle_error``,
with a ``text/plain`` page that quotes the parser's complaint (the
offending request bytes among it) and, since the request never met the
application, without the ``on_response_prepare`` hook that hides the
``Server: Python/x aiohttp/y`` header (aiohttp issues #3287, #6463: no
public hook exists). :class:`ShapedAppRunner` serves connections with a
handler whose ``handle_error`` answers in Anthropic's error shape instead:
JSON with a ``request_id``, ``Server: claudegate``, nothing of the request,
and the connection closed as aiohttp does.

Two more answers aiohttp makes itself, past the parser but before the
gateway's handler, are shaped the same way: an ``Expect`` header other than
``100-continue`` (aiohttp's 417 page quotes the header: :func:`expect_continue`)
and a request target that is no path (``OPTIONS *``, ``CONNECT host:443``:
no route matches, aiohttp's plain ``404: Not Found``; :func:`shaped_router_errors`).
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from claudegate_gateway.errors import error_body, new_request_id

__all__ = ["SERVER_NAME", "ShapedAppRunner", "expect_continue", "shaped_router_errors"]

log = logging.getLogger("claudegate.gateway")

SERVER_NAME = "claudegate"
_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large", 431: "invalid_request_error"}
_MESSAGES = {
    "invalid_request_error": "The request could not be read as HTTP/1.1",
    "not_found_error": "Not found: the request target is not an API path this gateway serves",
    "request_too_large": "The request's headers are too large",
    "api_error": "Internal gateway error; see the gateway log for this request id",
}


def error_page(status: int, message: str | None = None) -> web.Response:
    """The answer to a request the server could not hand to the gateway."""
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = new_request_id()
    response = web.Response(
        status=status,
        body=error_body(kind, message or _MESSAGES[kind], request_id),
        content_type="application/json",
        headers={"request-id": request_id, "Server": SERVER_NAME},
    )
    response.force_close()
    return response


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """aiohttp's own handling of ``Expect`` (100-continue on HTTP/1.1), with any other value
    refused in Anthropic's shape instead of aiohttp's page that quotes it."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != (1, 1):
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # (as aiohttp: the response proper has not started)
        return None
    return error_page(417, "The Expect header may only be 100-continue")


@web.middleware
async def shaped_router_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request no route takes (a target that is no path) answered in Anthropic's shape.

    The gateway's own handler answers every path itself; an HTTP error
    raised here comes from aiohttp's router (or its default handlers).
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(exc.status)


class _ShapedHandler(web.RequestHandler):
    __slots__ = ()  # one per connection: no instance dict beside aiohttp's slots

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp: part of a response left already, there is no answering now.
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if status >= 500:
            log.error("internal error serving a request", exc_info=exc)
        else:
            # The parser's message quotes the request; only its kind is logged.
            log.info("refused a request the HTTP parser could not read (%s, status %d)", type(exc).__name__, status)
        return error_page(status)


class _ShapedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _ShapedHandler(self, loop=self._loop, **self._kwargs)


class ShapedAppRunner(web.AppRunner):
    """An AppRunner whose connections answer parser errors in Anthropic's shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Application._make_handler builds a plain Server with the app's
        # settings; only the handler class it makes per connection changes.
        server.__class__ = _ShapedServer
        return server
