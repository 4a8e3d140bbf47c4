"""The gateway's path and key tricks again, through the real rendered nginx.

nginx decodes and normalises the URI for its own location matching but
passes the original request target on; whatever it does with a trick, the
request must not reach the fake upstream's /v1/messages uninspected. The
same attacks against the gateway alone are in tests/gateway/test_adversarial.py.
"""

from __future__ import annotations

import json

import pytest

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory
from tests.edge.rawhttp import RawResponse, raw_exchange, req
from tests.gateway.test_adversarial import FORBIDDEN_BODY, PATH_TRICKS, _key_tricks
from tests.support.nginx_runner import NginxProcess


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory) -> NginxProcess:
    # Generous edge limits: every trick must get to the gateway, not stop at a 429.
    return make_edge("adversarial", per_ip={"rate": "100r/s", "burst": 500},
                     per_key={"rate": "100r/s", "burst": 500})  # fmt: skip


def send(edge: NginxProcess, pki: EdgePKI, method: str, target: str, *headers: str, body: bytes = b"") -> RawResponse:
    lines = [*headers, "anthropic-version: 2023-06-01", "connection: close"]
    if body:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    payload = req(method, "\x00", *lines, body=body).replace(b"\x00", target.encode("latin-1"), 1)
    return raw_exchange(edge.settings.https_port, pki, payload)


def assert_refused(r: RawResponse, what: object) -> None:
    assert 400 <= r.status < 500 and r.status != 429, (what, r.status, r.body[:200])
    if r.status == 400 and not r.body.startswith(b"{"):
        # Known gap: aiohttp's HTTP parser refuses a request line with raw
        # non-ASCII bytes in plain text before the gateway's handler runs,
        # and nginx passes that 400 on. Refused all the same.
        assert b"Invalid char" in r.body or b"Bad Request" in r.body, (what, r.body[:200])
        return
    doc = json.loads(r.body)  # nginx's own errors are Anthropic-shaped too
    assert doc["type"] == "error", (what, doc)


def test_path_tricks_through_nginx_never_reach_upstream(edge: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("narrow")
    assert backend.gateway is not None
    narrow = backend.gateway.create_key("edge-narrow", "--models", "claude-sonnet-*", "--max-tokens", "1000")
    backend.credentials.add(narrow)
    backend.fake.state.clear_requests()
    for path in PATH_TRICKS:
        assert_refused(send(edge, pki, "POST", path, f"x-api-key: {narrow}", body=FORBIDDEN_BODY), path)
    assert [(r.method, r.raw_path) for r in backend.fake.state.requests] == []
    # Control: the canonical path reaches the gateway, whose scopes refuse the body.
    r = send(edge, pki, "POST", "/v1/messages", f"x-api-key: {narrow}", body=FORBIDDEN_BODY)
    assert r.status == 403 and json.loads(r.body)["error"]["type"] == "permission_error"
    ok = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5,
                     "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
    r = send(edge, pki, "POST", "/v1/messages?beta=true", f"x-api-key: {key}", body=ok)
    assert r.status == 200, r.body[:300]
    assert [(x.raw_path, x.raw_query) for x in backend.fake.state.requests] == [("/v1/messages", "beta=true")]


def test_key_tricks_through_nginx_get_4xx_and_nothing_upstream(edge: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("tricks")
    backend.fake.state.clear_requests()
    for headers in _key_tricks(key):
        r = send(edge, pki, "GET", "/v1/models", *headers)
        assert_refused(r, headers)
        assert r.status in (400, 401), (headers, r.status)
    assert backend.fake.state.requests == []
    assert send(edge, pki, "GET", "/v1/models", f"x-api-key: {key}").status == 200
