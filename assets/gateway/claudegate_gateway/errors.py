"""Errors in Anthropic's wire shape.

Every error the gateway itself produces is
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``
with the status Anthropic uses for that type, so the official SDKs map it to the
same exception class they would raise against the real API.
"""

from __future__ import annotations

import json
import secrets

from aiohttp import web

STATUS_BY_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def new_request_id() -> str:
    # Same look as Anthropic's ids so log tooling treats them alike.
    return "req_gw" + secrets.token_hex(12)


class GatewayError(Exception):
    """An error answered to the client in Anthropic's shape."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status if status is not None else STATUS_BY_TYPE[error_type]
        self.headers = headers or {}


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        },
        separators=(",", ":"),
    ).encode()


def error_response(err: GatewayError, request_id: str) -> web.Response:
    headers = {"request-id": request_id, **err.headers}
    return web.Response(
        status=err.status,
        body=error_body(err.error_type, err.message, request_id),
        content_type="application/json",
        headers=headers,
    )
