"""Port 80 serves only ACME HTTP-01 challenges from the webroot and redirects
everything else to https; nothing on it reaches the gateway."""

from __future__ import annotations

import httpx2
import pytest

from tests.edge.conftest import Backend, EdgeFactory, assert_anthropic_error
from tests.support.nginx_runner import NginxProcess

TOKEN = "Xq3-token_value"
KEY_AUTH = "Xq3-token_value.thumbprint"


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory) -> NginxProcess:
    proc = make_edge("http-port", allow_cidrs=["127.0.0.1/32"])
    challenge = proc.workdir / "acme" / ".well-known" / "acme-challenge" / TOKEN
    challenge.write_text(KEY_AUTH)
    (proc.workdir / "acme" / "secret.txt").write_text("outside the challenge dir")
    return proc


def test_challenge_is_served_as_text(edge: NginxProcess) -> None:
    # Validation servers come from anywhere: the HTTPS allowlist does not apply here.
    transport = httpx2.HTTPTransport(local_address="127.0.0.2")
    with httpx2.Client(transport=transport) as c:
        r = c.get(f"{edge.http_url}/.well-known/acme-challenge/{TOKEN}")
    assert r.status_code == 200
    assert r.text == KEY_AUTH
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["server"] == "nginx"


def test_missing_challenge_is_json_404(edge: NginxProcess) -> None:
    with httpx2.Client() as c:
        r = c.get(f"{edge.http_url}/.well-known/acme-challenge/nope")
    assert_anthropic_error(r, 404, "not_found_error")


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/acme-challenge/../secret.txt",
        "/.well-known/acme-challenge/%2e%2e/secret.txt",
        "/secret.txt",
    ],
)
def test_nothing_else_in_the_webroot_is_served(edge: NginxProcess, path: str) -> None:
    with httpx2.Client() as c:
        r = c.get(edge.http_url + path)
    assert "outside the challenge dir" not in r.text
    assert r.status_code in (301, 404)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_everything_else_redirects_to_https(edge: NginxProcess, backend: Backend, method: str) -> None:
    before = len(backend.upstream_requests())
    with httpx2.Client() as c:
        r = c.request(method, f"{edge.http_url}/v1/messages?beta=true", headers={"Host": "evil.example"})
    assert r.status_code == 301
    # The target is the configured name, never the Host the client sent.
    assert r.headers["location"] == f"https://gw.test:{edge.settings.https_port}/v1/messages?beta=true"
    assert "strict-transport-security" not in r.headers  # meaningless over plain HTTP
    assert len(backend.upstream_requests()) == before
