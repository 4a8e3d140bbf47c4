"""Real TLS scanners against the served port, judged by their machine-readable
output: sslyze (Mozilla profile compliance, JSON) and testssl.sh (JSON)."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.edge.certs import EdgePKI, make_pki
from tests.edge.conftest import EdgeFactory, tls_context
from tests.edge.ocsp import ocsp_responder
from tests.edge.tools import bin_sslyze, bin_testssl
from tests.support.nginx_runner import NginxProcess, free_port

# What a scan may accept at all: AEAD suites with forward secrecy.
STRONG_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
STRONG_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> EdgePKI:
    return make_pki(tmp_path_factory.mktemp("pki-rsa"), rsa_leaf=True)


def run_sslyze(target: str, ca: Path, profile: str, out: Path) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [
            bin_sslyze(),
            f"--mozilla_config={profile}",
            "--http_headers",
            f"--certinfo_ca_file={ca}",
            f"--json_out={out}",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(out.read_text())
    (result,) = report["server_scan_results"]
    assert result["scan_status"] == "COMPLETED", proc.stdout[-2000:]
    return proc.returncode, result["scan_result"]


def accepted(scan: dict[str, Any], protocol: str) -> set[str]:
    section = scan[f"{protocol}_cipher_suites"]
    assert section["status"] == "COMPLETED"
    return {c["cipher_suite"]["openssl_name"] for c in section["result"]["accepted_cipher_suites"]}


def assert_chain_complete(scan: dict[str, Any]) -> None:
    (deployment,) = scan["certificate_info"]["result"]["certificate_deployments"]
    supplied = [
        p for p in deployment["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"
    ]
    assert supplied and supplied[0]["was_validation_successful"], supplied
    names = [c["subject"]["rfc4514_string"] for c in deployment["received_certificate_chain"]]
    assert len(names) == 2 and "intermediate" in names[1], names  # leaf + intermediate, no anchor
    assert deployment["received_chain_has_valid_order"] is True
    assert deployment["received_chain_contains_anchor_certificate"] is False


@pytest.mark.parametrize(
    ("profile", "key"), [("intermediate", "ecdsa"), ("intermediate", "rsa"), ("modern", "ecdsa")]
)
def test_sslyze_mozilla_compliance(
    make_edge: EdgeFactory, pki: EdgePKI, rsa_pki: EdgePKI, tmp_path: Path, profile: str, key: str
) -> None:
    chain = rsa_pki if key == "rsa" else pki
    edge = make_edge(
        f"tls-{profile}-{key}",
        tls_profile=profile,
        cert_path=str(chain.fullchain),
        key_path=str(chain.key),
        chain_path=str(chain.chain),
    )
    code, scan = run_sslyze(
        f"127.0.0.1:{edge.settings.https_port}", chain.root_ca, profile, tmp_path / "s.json"
    )
    assert code == 0, "sslyze: not compliant with Mozilla's profile"

    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert accepted(scan, old) == set(), old
    tls12, tls13 = accepted(scan, "tls_1_2"), accepted(scan, "tls_1_3")
    assert tls13 and tls13 <= STRONG_TLS13
    if profile == "modern":
        assert tls12 == set()
    else:
        assert tls12 and tls12 <= STRONG_TLS12
    assert_chain_complete(scan)
    hsts = scan["http_headers"]["result"]["strict_transport_security_header"]
    assert hsts is not None and hsts["max_age"] == 63072000


def test_sslyze_notices_an_incomplete_chain(make_edge: EdgeFactory, pki: EdgePKI, tmp_path: Path) -> None:
    """The chain check is live: serving the leaf alone fails path validation."""
    edge = make_edge("tls-leaf-only", cert_path=str(pki.leaf_only))
    _, scan = run_sslyze(
        f"127.0.0.1:{edge.settings.https_port}", pki.root_ca, "intermediate", tmp_path / "s.json"
    )
    (deployment,) = scan["certificate_info"]["result"]["certificate_deployments"]
    supplied = [
        p for p in deployment["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"
    ]
    assert supplied[0]["was_validation_successful"] is False
    assert len(deployment["received_certificate_chain"]) == 1


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory) -> NginxProcess:
    return make_edge("tls-testssl")


def test_testssl_finds_nothing_high(edge: NginxProcess, pki: EdgePKI, tmp_path: Path) -> None:
    report = tmp_path / "testssl.json"
    # -p protocols, -E ciphers per protocol, -S server defaults (chain), -h headers (HSTS).
    # testssl 3.0.8 exits 0 even with HIGH findings: judge the JSON.
    subprocess.run(
        [
            bin_testssl(),
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--ip",
            "one",
            "--add-ca",
            str(pki.root_ca),
            "--jsonfile",
            str(report),
            "-p",
            "-E",
            "-S",
            "-h",
            f"127.0.0.1:{edge.settings.https_port}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    findings = {f["id"]: f for f in json.loads(report.read_text())}
    bad = {
        k: (f["severity"], f["finding"]) for k, f in findings.items() if f["severity"] in ("HIGH", "CRITICAL")
    }
    assert bad == {}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[old]["finding"] == "not offered", findings[old]
    assert findings["TLS1_2"]["finding"] == "offered"
    assert findings["TLS1_3"]["finding"].startswith("offered")
    assert findings["ALPN_HTTP2"]["finding"] == "h2"
    assert findings["cert_chain_of_trust"]["finding"].startswith("passed")
    assert findings["certs_list_ordering_problem"]["finding"] == "no"
    assert findings["HSTS_time"]["severity"] == "OK"
    assert findings["banner_server"]["finding"] == "nginx"  # no version
    for cipher_id in (k for k in findings if k.startswith("cipher-tls1_2")):
        assert findings[cipher_id]["finding"].split()[3] in STRONG_TLS12, findings[cipher_id]


def test_no_session_tickets_on_tls12(edge: NginxProcess, pki: EdgePKI) -> None:
    """Session tickets are off: a TLS 1.2 client gets no ticket to resume with."""
    ctx = tls_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", edge.settings.https_port)) as raw,
        ctx.wrap_socket(raw, server_hostname="gw.test") as tls,
    ):
        tls.sendall(b"GET /v1/ HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        while tls.recv(4096):
            pass
        session = tls.session
    assert session is not None and not session.has_ticket


def stapled_status(port: int, pki: EdgePKI) -> str:
    """What ``openssl s_client -status`` reports about the stapled OCSP response."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "gw.test", "-status",
         "-CAfile", str(pki.root_ca), "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout[-1000:]
    if "OCSP response: no response sent" in out.stdout:
        return "none"
    match = re.search(r"Cert Status: (\w+)", out.stdout)
    assert match is not None and "OCSP Response Status: successful" in out.stdout, out.stdout
    return match.group(1)


def test_ocsp_stapling_where_the_chain_allows(make_edge: EdgeFactory, tmp_path: Path) -> None:
    """With ocsp_stapling on and a leaf naming a responder, nginx fetches,
    verifies (against chain_path) and staples a "good" response; with the
    default (off, as for Let's Encrypt) nothing is stapled."""
    port = free_port()
    ocsp_pki = make_pki(tmp_path / "pki", ocsp_url=f"http://127.0.0.1:{port}/")
    tls = {
        "cert_path": str(ocsp_pki.fullchain),
        "key_path": str(ocsp_pki.key),
        "chain_path": str(ocsp_pki.chain),
    }
    with ocsp_responder(ocsp_pki, port) as asked:
        stapling = make_edge("tls-ocsp", ocsp_stapling=True, resolver=["127.0.0.1"], **tls)
        plain = make_edge("tls-no-ocsp", **tls)
        # nginx fetches the response on the first handshake and staples it from then on.
        deadline = time.monotonic() + 10
        status = stapled_status(stapling.settings.https_port, ocsp_pki)
        while status == "none" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = stapled_status(stapling.settings.https_port, ocsp_pki)
        assert status == "good"
        assert stapled_status(plain.settings.https_port, ocsp_pki) == "none"
    leaf = x509.load_pem_x509_certificate(ocsp_pki.leaf_only.read_bytes())
    assert set(asked) == {leaf.serial_number}  # only the stapling nginx asked
