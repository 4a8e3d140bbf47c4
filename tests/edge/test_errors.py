"""Every error nginx produces on its own is Anthropic-shaped JSON, never HTML,
and carries the same security headers as any other answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory
from tests.edge.rawhttp import RawResponse, raw_exchange, req
from tests.support.nginx_runner import NginxProcess, free_port


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory) -> NginxProcess:
    return make_edge("errors", client_body_timeout=1, proxy_read_timeout=1)


@pytest.fixture(scope="module")
def edge_without_gateway(make_edge: EdgeFactory) -> NginxProcess:
    return make_edge("no-gateway", upstream=f"127.0.0.1:{free_port()}")


def check(resp: RawResponse, status: int, error_type: str, *, https: bool = True) -> None:
    assert resp.status == status, (resp.status_line, resp.body[:300])
    assert resp.headers["content-type"] == "application/json"
    assert b"<html" not in resp.body.lower()
    body = resp.json()
    assert body["type"] == "error"
    error = body["error"]
    assert isinstance(error, dict) and error["type"] == error_type and error["message"]
    request_id = body["request_id"]
    assert isinstance(request_id, str) and re.fullmatch(r"req_edge[0-9a-f]{32}", request_id)
    assert resp.headers["request-id"] == request_id
    assert resp.headers["server"] == "nginx"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-store"
    if https:
        assert resp.headers["strict-transport-security"].startswith("max-age=")
    assert ("retry-after" in resp.headers) == (status == 429)


def test_400_malformed_request(edge: NginxProcess, pki: EdgePKI) -> None:
    check(
        raw_exchange(edge.settings.https_port, pki, b"GET /v1/models HTTP/1.1\r\nHost gw.test\r\n\r\n"),
        400,
        "invalid_request_error",
    )


def test_400_header_too_large(edge: NginxProcess, pki: EdgePKI) -> None:
    huge = "X-Big: " + "a" * 20000
    check(
        raw_exchange(edge.settings.https_port, pki, req("GET", "/v1/models", huge)),
        400,
        "invalid_request_error",
    )


def test_400_plain_http_to_the_https_port(edge: NginxProcess) -> None:
    check(
        raw_exchange(edge.settings.https_port, None, req("GET", "/v1/models")), 400, "invalid_request_error"
    )


def test_404_unknown_path(edge: NginxProcess, pki: EdgePKI) -> None:
    check(raw_exchange(edge.settings.https_port, pki, req("GET", "/admin")), 404, "not_found_error")


def test_404_on_port_80_challenge_that_does_not_exist(edge: NginxProcess) -> None:
    resp = raw_exchange(edge.settings.http_port, None, req("GET", "/.well-known/acme-challenge/missing"))
    check(resp, 404, "not_found_error", https=False)


def test_405_trace(edge: NginxProcess, pki: EdgePKI) -> None:
    check(
        raw_exchange(edge.settings.https_port, pki, req("TRACE", "/v1/models")), 405, "invalid_request_error"
    )


def test_body_too_slow_is_cut_off(edge: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    """client_body_timeout: nginx 1.22 ends a stalled upload by closing the
    connection (it never writes a 408 page, HTML or otherwise); the body
    streams to the gateway, but nothing of it reaches upstream."""
    before = len(backend.upstream_requests())
    key = backend.new_key("stalled")
    head = req("POST", "/v1/messages", "Content-Type: application/json", "Content-Length: 100", f"x-api-key: {key}")
    started = time.monotonic()
    resp = raw_exchange(edge.settings.https_port, pki, head + b'{"mo', timeout=8)
    assert time.monotonic() - started < 4  # client_body_timeout is 1 s here
    assert resp.raw == b""
    assert len(backend.upstream_requests()) == before


def test_a_stalled_upload_without_a_valid_key_is_refused_at_once(
    edge: NginxProcess, pki: EdgePKI, backend: Backend
) -> None:
    """The body streams to the gateway, which answers 401 on the headers: an
    unauthenticated upload holds nothing until the body timeout."""
    before = len(backend.upstream_requests())
    for key_header in ((), ("x-api-key: sk-junk-" + "x" * 24,)):
        head = req("POST", "/v1/messages", "Content-Type: application/json", "Content-Length: 100", *key_header)
        resp = raw_exchange(edge.settings.https_port, pki, head + b'{"mo', timeout=8)
        # An answer at all proves it came before the body timeout (which closes silently).
        assert resp.status == 401, (resp.status_line, resp.body[:300])
        error = resp.json()["error"]
        assert isinstance(error, dict) and error["type"] == "authentication_error"
    assert len(backend.upstream_requests()) == before


def test_413_body_too_large(edge: NginxProcess, pki: EdgePKI) -> None:
    head = req(
        "POST", "/v1/messages", "Content-Type: application/json", f"Content-Length: {33 * 1024 * 1024}"
    )
    check(raw_exchange(edge.settings.https_port, pki, head), 413, "request_too_large")


def test_414_uri_too_long(edge: NginxProcess, pki: EdgePKI) -> None:
    check(
        raw_exchange(edge.settings.https_port, pki, req("GET", "/v1/" + "a" * 9000)),
        414,
        "invalid_request_error",
    )


def test_501_unknown_transfer_encoding(edge: NginxProcess, pki: EdgePKI) -> None:
    head = req("POST", "/v1/messages", "Transfer-Encoding: gzip, chunked")
    check(raw_exchange(edge.settings.https_port, pki, head), 501, "invalid_request_error")


def test_505_unsupported_http_version(edge: NginxProcess, pki: EdgePKI) -> None:
    resp = raw_exchange(edge.settings.https_port, pki, req("GET", "/v1/models", version="HTTP/2.5"))
    check(resp, 505, "invalid_request_error")


def test_502_gateway_down(edge_without_gateway: NginxProcess, pki: EdgePKI) -> None:
    resp = raw_exchange(
        edge_without_gateway.settings.https_port, pki, req("GET", "/v1/models", "x-api-key: k")
    )
    check(resp, 502, "api_error")


@pytest.fixture
def hanging_upstream(backend: Backend) -> Iterator[None]:
    backend.fake.state.hang(seconds=3, path="/v1/models")
    yield
    backend.fake.state.failures.clear()


def test_504_gateway_too_slow(
    edge: NginxProcess, pki: EdgePKI, backend: Backend, hanging_upstream: None
) -> None:
    key = backend.new_key("slow")
    head = req("GET", "/v1/models", f"x-api-key: {key}", "anthropic-version: 2023-06-01")
    check(raw_exchange(edge.settings.https_port, pki, head), 504, "timeout_error")
