"""IP allowlist: the client address is the TCP peer; forwarded headers count
only when the peer is a configured trusted proxy."""

from __future__ import annotations

import httpx2
import pytest

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory, assert_anthropic_error, client
from tests.edge.rawhttp import raw_exchange, req
from tests.support.nginx_runner import NginxProcess

BODY = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
TRUSTED_PROXY = "127.0.0.3"


@pytest.fixture(scope="module")
def only_dot1(make_edge: EdgeFactory) -> NginxProcess:
    """Allows 127.0.0.1 and ::1; believes X-Forwarded-For from 127.0.0.3 only."""
    return make_edge(
        "allow-dot1", allow_cidrs=["127.0.0.1/32", "::1/128"], trusted_proxy_cidrs=[f"{TRUSTED_PROXY}/32"]
    )


@pytest.fixture(scope="module")
def only_dot2(make_edge: EdgeFactory) -> NginxProcess:
    return make_edge("allow-dot2", allow_cidrs=["127.0.0.2/32"])


def post(c: httpx2.Client, base: str, key: str, extra: dict[str, str] | None = None) -> httpx2.Response:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", **(extra or {})}
    return c.post(f"{base}/v1/messages", headers=headers, json=BODY)


def assert_denied(r: httpx2.Response) -> None:
    body = assert_anthropic_error(r, 403, "permission_error")
    assert body["request_id"].startswith("req_edge")


def test_refused_outside_the_allowlist(only_dot1: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("outside")
    before = len(backend.upstream_requests())
    with client(pki, local_address="127.0.0.2") as c:
        assert_denied(post(c, only_dot1.https_url, key))
        # Every path and method, not only the proxied ones.
        assert_denied(c.get(f"{only_dot1.https_url}/v1/models", headers={"x-api-key": key}))
        assert_denied(c.get(f"{only_dot1.https_url}/no/such/path"))
        assert_denied(c.delete(f"{only_dot1.https_url}/v1/files/file_1", headers={"x-api-key": key}))
    assert len(backend.upstream_requests()) == before


@pytest.mark.parametrize(
    "spoof",
    [
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
        {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"},
        {"X-Forwarded-For": "127.0.0.3, 127.0.0.1"},
    ],
)
def test_spoofed_forwarding_headers_change_nothing(
    only_dot1: NginxProcess, pki: EdgePKI, backend: Backend, spoof: dict[str, str]
) -> None:
    with client(pki, local_address="127.0.0.2") as c:
        assert_denied(post(c, only_dot1.https_url, backend.junk_key(), spoof))


def test_accepted_inside_the_allowlist(only_dot1: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("inside")
    with client(pki, local_address="127.0.0.1") as c:
        r = post(
            c, only_dot1.https_url, key, {"X-Forwarded-For": "203.0.113.50", "X-Real-IP": "203.0.113.51"}
        )
    assert r.status_code == 200, r.text
    # The backend was told the TCP peer, not what the client claimed.
    assert backend.client_ips(key) == ["127.0.0.1"]


def test_ipv6_loopback_allowed(only_dot1: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("v6")
    with client(pki, local_address="::1") as c:
        r = post(c, f"https://[::1]:{only_dot1.settings.https_port}", key)
    assert r.status_code == 200, r.text


def test_allowing_the_other_address_flips_the_answer(
    only_dot2: NginxProcess, pki: EdgePKI, backend: Backend
) -> None:
    key = backend.new_key("flip")
    with client(pki, local_address="127.0.0.2") as c:
        assert post(c, only_dot2.https_url, key).status_code == 200
    with client(pki, local_address="127.0.0.1") as c:
        assert_denied(post(c, only_dot2.https_url, key))


def test_trusted_proxy_forwarded_address_is_used(
    only_dot1: NginxProcess, pki: EdgePKI, backend: Backend
) -> None:
    key = backend.new_key("proxied")
    with client(pki, local_address=TRUSTED_PROXY) as c:
        # The proxy says the client is 127.0.0.1: allowed, and that address is passed on.
        assert post(c, only_dot1.https_url, key, {"X-Forwarded-For": "127.0.0.1"}).status_code == 200
        # The proxy says 127.0.0.2: refused, even though the proxy itself connected.
        assert_denied(post(c, only_dot1.https_url, key, {"X-Forwarded-For": "127.0.0.2"}))
        # Only the address the proxy appended (the last one) counts, not what the client prepended.
        assert_denied(post(c, only_dot1.https_url, key, {"X-Forwarded-For": "127.0.0.1, 127.0.0.2"}))
    assert backend.client_ips(key) == ["127.0.0.1"]


def test_refused_client_gets_json_even_for_a_broken_request_line(
    only_dot1: NginxProcess, pki: EdgePKI
) -> None:
    """Errors raised before nginx knows the URI still reach the JSON pages, also for refused clients."""
    resp = raw_exchange(
        only_dot1.settings.https_port, pki, req("GET", "/v1/" + "a" * 9000), source="127.0.0.2"
    )
    assert resp.status == 414 and resp.json()["error"] == {
        "type": "invalid_request_error",
        "message": "The request URI is too long.",
    }
    resp = raw_exchange(only_dot1.settings.https_port, pki, req("GET", "/v1/models"), source="127.0.0.2")
    assert resp.status == 403 and resp.headers["content-type"] == "application/json"
