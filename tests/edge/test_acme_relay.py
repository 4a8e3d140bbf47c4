"""Several hosts, one ACME certificate: port 80 relays challenges it cannot answer to the issuer.

Two real nginx processes rendered with ``acme_relay`` pointing at the
"issuer" (the first), as every host of a fleet is rendered (the issuer
relays to itself): a token only the issuer has is served by the other one;
a relayed request is never relayed again (no loop); names that are not
token-shaped, other methods and other paths are never relayed.
"""

from __future__ import annotations

import httpx2
import pytest

from tests.edge.conftest import EdgeFactory
from tests.support.nginx_runner import NginxProcess
from tests.support.ports import free_port

TOKEN = "LoqXcDcVdBn5LhPqU5A8mYyYdMMQp-cwXpX_b4cZbyk"  # 43 characters, base64url, as Let's Encrypt's
KEY_AUTH = TOKEN + ".thumbprint"


@pytest.fixture(scope="module")
def pair(make_edge: EdgeFactory) -> tuple[NginxProcess, NginxProcess]:
    port = free_port()
    relay = f"127.0.0.1:{port}"
    # The issuer relays to itself, as the fleet's one configuration says: at most once.
    issuer = make_edge("relay-issuer", http_port=port, acme_relay=relay)
    follower = make_edge("relay-follower", acme_relay=relay)
    challenges = issuer.workdir / "acme" / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True, exist_ok=True)
    (challenges / TOKEN).write_text(KEY_AUTH)
    (challenges / "short").write_text("not token-shaped")
    (challenges / ("dotted." + TOKEN)).write_text("not token-shaped either")
    return issuer, follower


def test_a_token_only_the_issuer_has_is_served_by_the_other_host(pair: tuple[NginxProcess, NginxProcess]) -> None:
    issuer, follower = pair
    with httpx2.Client() as c:
        r = c.get(f"{follower.http_url}/.well-known/acme-challenge/{TOKEN}", headers={"Host": "gw.test"})
        direct = c.get(f"{issuer.http_url}/.well-known/acme-challenge/{TOKEN}")
    assert (r.status_code, r.text) == (200, KEY_AUTH)
    assert (direct.status_code, direct.text) == (200, KEY_AUTH)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/.well-known/acme-challenge/short", {}),  # too short to be a token
        ("GET", f"/.well-known/acme-challenge/dotted.{TOKEN}", {}),  # not base64url
        ("GET", f"/.well-known/acme-challenge/{TOKEN}/x", {}),
        ("GET", f"/.well-known/acme-challenge/..%2f{TOKEN}", {}),
        ("POST", f"/.well-known/acme-challenge/{TOKEN}", {}),  # challenges are GETs
        ("GET", f"/.well-known/acme-challenge/{TOKEN}", {"X-Claudegate-Acme-Relay": "1"}),  # already relayed
    ],
)
def test_nothing_but_a_token_shaped_get_is_relayed(
    pair: tuple[NginxProcess, NginxProcess], method: str, path: str, headers: dict[str, str]
) -> None:
    _, follower = pair
    with httpx2.Client() as c:
        r = c.request(method, follower.http_url + path, headers=headers)
    assert r.status_code in (301, 404, 405), (r.status_code, r.text)  # 301: ..%2f left the challenge path
    assert KEY_AUTH not in r.text and "token-shaped" not in r.text


def test_a_token_nobody_has_is_a_404_not_a_loop(pair: tuple[NginxProcess, NginxProcess]) -> None:
    issuer, follower = pair
    missing = "M" * 43
    with httpx2.Client(timeout=10) as c:
        for edge in (follower, issuer):  # follower -> issuer -> (issuer's own relay, once) -> 404
            r = c.get(f"{edge.http_url}/.well-known/acme-challenge/{missing}")
            assert r.status_code == 404, r.text


def test_other_paths_on_port_80_still_redirect(pair: tuple[NginxProcess, NginxProcess]) -> None:
    _, follower = pair
    with httpx2.Client() as c:
        r = c.get(f"{follower.http_url}/v1/models")
    assert r.status_code == 301
