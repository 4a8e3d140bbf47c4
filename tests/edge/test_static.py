"""Every rendered variant passes ``nginx -t`` (without a single warning) and
gixy-ng with zero findings at any severity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from claudegate.edge.render import render_edge, write_edge
from claudegate.edge.settings import EdgeSettings
from tests.edge.certs import EdgePKI, make_pki
from tests.edge.tools import bin_gixy
from tests.support.nginx_runner import nginx_test

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "modern": {"tls_profile": "modern"},
    "ocsp-stapling": {"ocsp_stapling": True, "resolver": ["127.0.0.11"]},
    "allowlist-v4-v6": {"allow_cidrs": ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32", "::1/128"]},
    "behind-proxies": {
        "trusted_proxy_cidrs": ["172.18.0.2/32", "fd00:18::2/128"],
        "real_ip_recursive": True,
        "allow_cidrs": ["192.0.2.0/24"],
    },
    "real-ip-header": {"trusted_proxy_cidrs": ["10.0.0.5/32"], "real_ip_header": "X-Real-IP"},
    "per-minute-limits": {
        "per_ip": {"rate": "600r/m", "burst": 100, "zone_size": "20m"},
        "per_key": {"rate": "60r/m", "burst": 10},
        "conn_per_ip": 4,
    },
    "ipv4-only-odd-ports": {"listen_addresses": ["0.0.0.0"], "http_port": 8080, "https_port": 8443},
    "hsts-preload": {"hsts_include_subdomains": True, "hsts_preload": True},
    "small-bodies-short-timeouts": {
        "client_max_body_size": "1m",
        "client_header_timeout": 5,
        "client_body_timeout": 5,
        "send_timeout": 10,
        "proxy_read_timeout": 3600,
    },
    "two-prefixes": {"proxied_prefixes": ["/v1/", "/v1beta/"]},
    # Several gateway replicas: messages and count_tokens replayable (internal locations, a map).
    "replicas": {"upstream_replicas": 2},
    "no-access-log": {"access_log_path": "off"},
    "stdout-logs": {"access_log_path": "/dev/stdout", "error_log_path": "stderr"},
}


@pytest.fixture(scope="module")
def stapling_pki(tmp_path_factory: pytest.TempPathFactory) -> EdgePKI:
    # A leaf that names an OCSP responder, as a commercial CA's would.
    return make_pki(tmp_path_factory.mktemp("pki-ocsp"), ocsp_url="http://127.0.0.1:9/")


def render_variant(name: str, workdir: Path, pki: EdgePKI) -> Path:
    (workdir / "temp").mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "domain": "gw.example.com",
        "cert_path": str(pki.fullchain),
        "key_path": str(pki.key),
        "chain_path": str(pki.chain),
        # nginx -t resolves upstream names; "gateway" only exists on the Docker network.
        "upstream": "localhost:8080",
        "pid_path": str(workdir / "nginx.pid"),
        "temp_dir": str(workdir / "temp"),
        "acme_webroot": str(workdir / "acme"),
    }
    if VARIANTS[name].get("access_log_path") is None:
        values["access_log_path"] = str(workdir / "access.jsonl")
    values.update(VARIANTS[name])
    settings = EdgeSettings.model_validate(values)
    conf_dir = workdir / "conf"
    write_edge(render_edge(settings), conf_dir)
    return conf_dir / "nginx.conf"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_passes_nginx_t_and_gixy(
    name: str, tmp_path: Path, pki: EdgePKI, stapling_pki: EdgePKI
) -> None:
    conf = render_variant(name, tmp_path, stapling_pki if name == "ocsp-stapling" else pki)

    checked = nginx_test(conf, tmp_path)
    assert checked.returncode == 0, checked.stderr
    noisy = [line for line in checked.stderr.splitlines() if "[warn]" in line or "[emerg]" in line]
    assert noisy == [], checked.stderr

    # All checks, every severity; JSON so the assertion names what was found.
    report = tmp_path / "gixy.json"
    run = subprocess.run(
        [bin_gixy(), "-f", "json", "-o", str(report), str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    findings = json.loads(report.read_text() or "[]")
    summary = [(f["plugin"], f["severity"], f.get("reason", "")) for f in findings]
    assert summary == [], summary
    assert run.returncode == 0, run.stderr


def test_gixy_does_see_a_broken_config(tmp_path: Path, pki: EdgePKI) -> None:
    """The analyser is live: the same tree with server_tokens on is reported."""
    conf = render_variant("defaults", tmp_path, pki)
    http = conf.parent / "claudegate.conf"
    http.write_text(http.read_text().replace("server_tokens off;", "server_tokens on;"))
    report = tmp_path / "gixy.json"
    run = subprocess.run(
        [bin_gixy(), "-f", "json", "-o", str(report), str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert {f["plugin"] for f in json.loads(report.read_text())} == {"version_disclosure"}
