"""The one endpoint parser the smoke test and the audit share (claudegate.probes.wire.endpoint)."""

from __future__ import annotations

import pytest

from claudegate.audit.context import Run
from claudegate.audit.target import AuditTarget
from claudegate.errors import ConfigError
from claudegate.probes.wire import endpoint
from claudegate.smoke import SmokeTarget


def test_a_plain_url() -> None:
    ep = endpoint("https://GW.Example.com./v1prefix/", connect_host="203.0.113.5", http_port=8080)
    assert (ep.domain, ep.connect_host, ep.https_port, ep.http_port, ep.prefix) == (
        "gw.example.com", "203.0.113.5", 443, 8080, "/v1prefix")
    assert ep.https_url("/v1/models") == "https://gw.example.com/v1prefix/v1/models"
    assert ep.http_url("/x") == "http://gw.example.com:8080/v1prefix/x"
    assert ep.host_header == "gw.example.com"


def test_port_in_the_url_or_given_apart_but_not_both_differently() -> None:
    assert endpoint("https://gw.example.com:8443").host_header == "gw.example.com:8443"
    assert endpoint("https://gw.example.com", https_port=8443).https_port == 8443
    assert endpoint("https://gw.example.com:8443", https_port=8443).https_port == 8443
    with pytest.raises(ConfigError, match="names port 8443 but https_port is 9443"):
        endpoint("https://gw.example.com:8443", https_port=9443)


def test_an_ipv6_literal_is_bracketed_in_urls_and_host() -> None:
    ep = endpoint("https://[2001:db8::1]:8443")
    assert ep.domain == "2001:db8::1" and ep.connect_host == "2001:db8::1"
    assert ep.host_header == "[2001:db8::1]:8443"
    assert ep.https_url("/v1/models") == "https://[2001:db8::1]:8443/v1/models"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://gw.example.com", "is not an https:// URL"),
        ("gw.example.com", "is not an https:// URL"),
        ("https://user:pw@gw.example.com", "HOST[:PORT][/PREFIX] only"),
        ("https://gw.example.com/?next=evil", "HOST[:PORT][/PREFIX] only"),
        ("https://gw.example.com/#frag", "HOST[:PORT][/PREFIX] only"),
        ("https://gw.example.com:99999", "has an invalid port"),
        ("https://:443", "HOST[:PORT][/PREFIX] only"),
    ],
)
def test_what_is_not_an_endpoint_is_refused_by_both(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="smoke test base_url") as smoke:
        SmokeTarget(base_url=url).endpoint()
    assert problem in str(smoke.value)
    with pytest.raises(ConfigError, match="audit target") as audit:
        Run.open(AuditTarget(base_url=url))
    assert problem in str(audit.value)


def test_smoke_and_audit_reach_the_same_place() -> None:
    url = "https://gw.example.com:8443/pre"
    smoke = SmokeTarget(base_url=url, connect_host="127.0.0.1", http_port=8080).endpoint()
    audit = Run.open(AuditTarget(base_url=url, connect_host="127.0.0.1", http_port=8080)).ep
    assert smoke == audit
