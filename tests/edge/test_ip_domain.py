"""``domain`` may be an IPv4 address with the internal CA (issue 14): the CA certifies exactly that
address (an IP subjectAltName, an IP name constraint), real nginx serves it, and a client that
trusts ca.pem and connects by address verifies it; other modes are refused with a fix."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from claudegate.config import load_config_text
from claudegate.config.problems import DeployConfigError
from claudegate.deploy.tls_material import internal_ca
from tests.support.nginx_runner import local_settings, running_nginx

CONFIG = """\
target: {{host: local, sudo: false}}
domain: {domain}
tls: {{mode: {mode}{extra}}}
upstream: {{api_key_env: ANTHROPIC_API_KEY}}
"""


def test_an_ip_domain_loads_with_the_internal_ca() -> None:
    cfg = load_config_text(CONFIG.format(domain="192.0.2.10", mode="internal-ca", extra=""))
    assert cfg.domain == "192.0.2.10"


@pytest.mark.parametrize(("mode", "extra"), [("acme", ", email: ops@example.com"), ("files", ", cert_file: c, key_file: k")])
def test_an_ip_domain_needs_the_internal_ca(mode: str, extra: str) -> None:
    with pytest.raises(DeployConfigError) as info:
        load_config_text(CONFIG.format(domain="192.0.2.10", mode=mode, extra=extra))
    text = str(info.value)
    assert "domain: 192.0.2.10 is an IP address, and only tls.mode: internal-ca certifies an address" in text
    assert "set tls.mode: internal-ca" in text


def test_the_internal_ca_certifies_the_address_and_nothing_else(tmp_path: Path) -> None:
    material = internal_ca(tmp_path, "192.0.2.10")
    leaf = x509.load_pem_x509_certificate(material.fullchain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert san.get_values_for_type(x509.DNSName) == []
    ca = x509.load_pem_x509_certificate(material.chain)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert [str(n.value) for n in constraints.value.permitted_subtrees or []] == ["192.0.2.10/32"]
    # Made once: a second deploy reuses it.
    assert internal_ca(tmp_path, "192.0.2.10").fullchain == material.fullchain


def test_nginx_serves_the_address_and_a_client_verifies_it(tmp_path: Path) -> None:
    material = internal_ca(tmp_path / "state", "127.0.0.1")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_bytes(material.fullchain)
    key.write_bytes(material.privkey)
    key.chmod(0o600)
    settings = local_settings(
        tmp_path, domain="127.0.0.1", listen_addresses=["127.0.0.1"], cert_path=str(cert), key_path=str(key),
        upstream="127.0.0.1:9",  # nothing listens: the edge answers by itself
    )
    with running_nginx(settings, tmp_path):
        trusting = ssl.create_default_context(cafile=str(material.trust))
        with socket.create_connection(("127.0.0.1", settings.https_port), timeout=5) as raw, trusting.wrap_socket(
            raw, server_hostname="127.0.0.1"
        ) as tls:
            tls.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        # An answer in Anthropic's shape (the edge's own: no gateway here), over a verified connection.
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        assert b'"type":"error"' in answer.replace(b" ", b""), answer
        # The same CA does not vouch for another address.
        with socket.create_connection(("127.0.0.1", settings.https_port), timeout=5) as raw, pytest.raises(
            ssl.SSLCertVerificationError
        ):
            trusting.wrap_socket(raw, server_hostname="127.0.0.2")
