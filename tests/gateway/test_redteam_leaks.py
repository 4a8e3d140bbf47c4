"""Red team: answers aiohttp makes itself after its parser, before the gateway's handler.

Found here (each failed before its fix): an ``Expect`` header other than
``100-continue`` was answered by aiohttp's own ``417`` text page, which
quotes the header back; a request target that is no path (``OPTIONS *``,
``CONNECT host:443``) got aiohttp's plain ``404: Not Found``, not
Anthropic's error shape.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.gateway.test_stack_leaks import MARK, gw, keys, parse_answer, raw_exchange
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

__all__ = ["gw", "keys"]  # the module's gateway and keys, shared with test_stack_leaks' fixtures

ROUTER_ANSWERS = {
    "an Expect header that is not 100-continue": (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nExpect: {MARK}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
        417, "invalid_request_error",
    ),
    "OPTIONS *": (f"OPTIONS * HTTP/1.1\r\nHost: x\r\nX-A: {MARK}\r\n\r\n".encode(), 404, "not_found_error"),
    "CONNECT host:port": (f"CONNECT {MARK}.example:443 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 404, "not_found_error"),
}


@pytest.mark.parametrize("name", list(ROUTER_ANSWERS))
def test_answers_before_the_handler_are_in_anthropics_shape_and_quote_nothing(
    gw: GatewayProc, fake: FakeAnthropic, name: str
) -> None:
    data, want_status, want_type = ROUTER_ANSWERS[name]
    raw = raw_exchange(gw, data)
    status, headers, body = parse_answer(raw)
    assert status == want_status, raw[:300]
    for leak in (b"aiohttp", b"python", MARK.lower().encode(), b"unknown expect"):
        assert leak not in raw.lower(), (name, raw[:300])
    assert headers.get("server") == "claudegate"
    assert headers.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert doc["type"] == "error" and doc["error"]["type"] == want_type
    assert doc["request_id"].startswith("req_") and headers.get("request-id") == doc["request_id"]
    assert fake.state.requests == []


def test_expect_100_continue_still_works(gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic) -> None:
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {keys['alice']}\r\n"
            f"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(body)
        chunks = [interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]]
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    status, _, answer = parse_answer(b"".join(chunks))
    assert status == 200, answer
    assert json.loads(answer)["type"] == "message"
    assert len(fake.state.requests_for("/v1/messages")) == 1
