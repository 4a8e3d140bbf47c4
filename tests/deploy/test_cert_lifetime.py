"""Renewal timing, the ACME pre-check's probe and DNS look-up, the renewer's container, expiry warnings.

The pre-check's HTTP probe runs against real sockets on loopback, and its
DNS look-up against Debian's pebble-challtestsrv (the mock DNS the ACME
end-to-end test gives pebble); the whole path, with a deploy, is in
test_e2e_acme_renewal.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.server
import importlib.util
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from claudegate.deploy import docker_cli
from claudegate.deploy.acme_precheck import (
    CHALLENGE_PATH,
    probe_address,
    resolve,
    target_addresses,
    write_token_argv,
)
from claudegate.deploy.cert_lifetime import MAX_CHECK_INTERVAL, MIN_CHECK_INTERVAL, check_interval, is_due
from claudegate.deploy.cert_status import describe, expiry_warning
from claudegate.deploy.engine import run_steps
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.progress import StepEvent
from claudegate.deploy.steps.files import TLSStep
from claudegate.deploy.steps.renewal import renewer_spec
from claudegate.deploy.tls_material import self_signed
from claudegate.errors import DeployFailed
from tests.deploy.conftest import ConfigFactory
from tests.deploy.test_engine import Recorder, make_ctx

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _cert(lifetime: dt.timedelta, *, issued: dt.datetime = NOW) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example.com")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(issued)
        .not_valid_after(issued + lifetime).sign(key, hashes.SHA256())
    )  # fmt: skip


def _renewer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "claudegate_renew", REPO / "assets/certbot/claudegate_renew.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("lifetime", "due_after"),
    [
        (dt.timedelta(days=90), dt.timedelta(days=60)),
        (dt.timedelta(days=6), dt.timedelta(days=4)),
        (dt.timedelta(hours=1), dt.timedelta(minutes=40)),
        (dt.timedelta(minutes=2), dt.timedelta(seconds=80)),
    ],
)
def test_due_when_a_third_of_the_lifetime_is_left(lifetime: dt.timedelta, due_after: dt.timedelta) -> None:
    cert = _cert(lifetime)
    assert not is_due(cert, NOW)  # just issued: never due (the old fixed 30 days said "due" for all four)
    assert not is_due(cert, NOW + due_after - dt.timedelta(seconds=1))
    assert is_due(cert, NOW + due_after)
    assert is_due(cert, NOW + lifetime + dt.timedelta(days=1))  # expired: due
    # The host's renewer (which cannot import claudegate) applies the same rule.
    assert _renewer().renewal_point(cert) == NOW + due_after


def test_check_interval_follows_the_lifetime_within_bounds() -> None:
    renewer = _renewer()
    for lifetime, expected in [
        (dt.timedelta(days=90), MAX_CHECK_INTERVAL),
        (dt.timedelta(days=6), dt.timedelta(hours=6)),
        (dt.timedelta(minutes=2), MIN_CHECK_INTERVAL),
        (dt.timedelta(hours=1), dt.timedelta(seconds=150)),
    ]:
        assert check_interval(lifetime) == expected
        assert renewer.interval_for(_cert(lifetime), 0.0) == expected.total_seconds()
    assert renewer.interval_for(_cert(dt.timedelta(days=90)), 7.0) == 7.0  # the test override wins


def test_files_certificate_near_its_end_warns() -> None:
    cert = _cert(dt.timedelta(days=90), issued=NOW - dt.timedelta(days=77))  # 13 days left
    warning = expiry_warning(cert, mode="files", now=NOW)
    assert warning is not None and "13.0 days left" in warning and "tls.cert_file" in warning
    fine = _cert(dt.timedelta(days=90), issued=NOW - dt.timedelta(days=75))  # 15 days left
    assert expiry_warning(fine, mode="files", now=NOW) is None
    expired = _cert(dt.timedelta(days=90), issued=NOW - dt.timedelta(days=91))
    assert "0.0 days left" in (expiry_warning(expired, mode="files", now=NOW) or "")
    # ACME and internal-ca renew themselves: 20 days of a 90-day ACME certificate is no alarm
    # (a renewal round or two may have failed) ...
    renewing = _cert(dt.timedelta(days=90), issued=NOW - dt.timedelta(days=70))
    assert expiry_warning(renewing, mode="acme", now=NOW) is None
    assert expiry_warning(cert, mode="internal-ca", now=NOW) is None
    # ... but one left unrenewed for half of its last third is.
    stale = _cert(dt.timedelta(days=90), issued=NOW - dt.timedelta(days=76))
    assert "due for renewal long ago" in (expiry_warning(stale, mode="acme", now=NOW) or "")
    assert "EXPIRED" in describe(expired, NOW) and "13 days left" in describe(cert, NOW)


def test_renewer_container_has_no_socket_no_caps_but_chown_and_nginx_namespaces() -> None:
    layout = HostLayout()
    nginx = docker_cli.nginx_spec(layout, "img", http_port=80, https_port=443, fixed_ip="10.0.0.2")
    spec = renewer_spec(
        layout, image="claudegate/certbot:abc", nginx=nginx, nginx_id="f00d", domain="gw.example.com",
        https_port=443, ca_bundle=False,
    )  # fmt: skip
    argv = docker_cli.create_container(spec)
    text = " ".join(argv)
    assert "docker.sock" not in text  # the Docker socket would be root on the host
    assert argv[argv.index("--network") + 1] == "container:f00d"
    assert argv[argv.index("--pid") + 1] == "container:f00d"
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"] == ["CHOWN"]
    assert "--read-only" in argv and "no-new-privileges" in argv
    assert argv[argv.index("--restart") + 1] == "unless-stopped"  # back after a reboot, with Docker
    assert argv[argv.index("--entrypoint") + 1] == "python3"
    volumes = {argv[i + 1] for i, a in enumerate(argv) if a == "--volume"}
    assert volumes == {
        "/opt/claudegate/releases:/etc/claudegate/releases:ro",  # nginx -t reads what nginx reads
        "/opt/claudegate/shared/tls:/etc/claudegate/tls:rw",  # renewed files are installed here
        "/opt/claudegate/shared/acme:/var/www/acme:rw",  # HTTP-01 answers
        "/opt/claudegate/shared/letsencrypt:/etc/letsencrypt:rw",
    }
    assert "--ca-bundle" not in argv and "--interval" not in argv
    # A recreated nginx (new id) gives another spec: the renewal step recreates the renewer.
    other = renewer_spec(
        layout, image="claudegate/certbot:abc", nginx=nginx, nginx_id="beef", domain="gw.example.com",
        https_port=443, ca_bundle=False,
    )  # fmt: skip
    assert other.digest() != spec.digest()


def test_docker_spec_digest_of_older_containers_is_unchanged() -> None:
    # pid/entrypoint are hashed only when set: an upgrade does not recreate nginx or the gateway.
    spec = docker_cli.nginx_spec(HostLayout(), "img", http_port=80, https_port=443, fixed_ip="10.0.0.2")
    assert spec.pid is None and spec.entrypoint is None
    assert "--pid" not in docker_cli.create_container(spec)


# -- the pre-check's probe -------------------------------------------------------


@contextlib.contextmanager
def _http_server(body: bytes, status: int = 200) -> Iterator[int]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.headers.get('Host')} {self.path}")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert all(line.startswith("gw.example.com /.well-known/acme-challenge/") for line in seen), seen


def test_probe_accepts_only_the_exact_token() -> None:
    with _http_server(b"tok-123") as port:
        assert probe_address("127.0.0.1", "gw.example.com", "tok-123", port=port).ok
    # Another site on port 80 (what a stale record points at): 404, or a page that is not the token.
    with _http_server(b"not found", status=404) as port:
        probe = probe_address("127.0.0.1", "gw.example.com", "tok-123", port=port)
        assert not probe.ok and "HTTP 404" in probe.detail
    with _http_server(b"tok-123 and more") as port:
        assert not probe_address("127.0.0.1", "gw.example.com", "tok-123", port=port).ok
    with _http_server(b"") as port:
        assert not probe_address("127.0.0.1", "gw.example.com", "tok-123", port=port).ok


def test_probe_of_a_closed_port_fails_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        started = time.monotonic()
        probe = probe_address("127.0.0.1", "gw.example.com", "tok", port=port)
    assert not probe.ok and not probe.unchecked and "did not answer" in probe.detail
    assert time.monotonic() - started < 2
    assert CHALLENGE_PATH == "/.well-known/acme-challenge/"


def test_target_addresses() -> None:
    assert target_addresses("203.0.113.10") == ["203.0.113.10"]
    assert target_addresses("2001:db8::1") == ["2001:db8::1"]
    assert target_addresses("localhost") != []
    assert target_addresses(None) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mock_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    dns_port, management = _free_port(), _free_port()
    argv = [
        "pebble-challtestsrv", "-defaultIPv4", "", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{dns_port}",
        "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{management}",
    ]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", management), 1):
                    break
                time.sleep(0.05)
            monkeypatch.setenv("CLAUDEGATE_ACME_RESOLVER", f"127.0.0.1:{dns_port}")
            yield f"http://127.0.0.1:{management}"
        finally:
            proc.terminate()


def test_resolve_asks_the_configured_dns_server(mock_dns: str) -> None:
    import json
    import urllib.request

    assert resolve("gw.example.com") == []  # no record: the pre-check says which one to create
    body = json.dumps({"host": "gw.example.com.", "addresses": ["203.0.113.7"]}).encode()
    urllib.request.urlopen(urllib.request.Request(mock_dns + "/add-a", data=body, method="POST"), timeout=5)
    assert resolve("gw.example.com") == ["203.0.113.7"]


def test_resolve_fails_clearly_when_the_dns_server_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CLAUDEGATE_ACME_RESOLVER", f"127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(DeployFailed, match="did not answer"):
            resolve("gw.example.com")


def test_a_files_certificate_near_its_end_warns_in_plan_and_deploy(
    make_cfg: ConfigFactory, tmp_path: Path
) -> None:
    material = self_signed("gw.example.com")  # 7 days of validity: under the 14-day mark
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(material.fullchain)
    key.write_bytes(material.privkey)
    key.chmod(0o600)
    cfg = make_cfg(tls={"mode": "files", "cert_file": str(cert), "key_file": str(key)})

    def warnings(events: list[StepEvent]) -> list[str]:
        return [e.message for e in events if e.kind == "note" and e.message.startswith("warning:")]

    planned: list[StepEvent] = []
    run_steps(make_ctx(cfg, Recorder(), dry_run=True, events=planned), [TLSStep()])  # plan
    assert len(warnings(planned)) == 1 and "days left" in warnings(planned)[0]
    assert "tls.cert_file" in warnings(planned)[0]
    deployed: list[StepEvent] = []
    ctx = make_ctx(cfg, Recorder(), events=deployed)
    step = TLSStep()
    step.plan(ctx)
    step.plan(ctx)  # the engine's verification plans again: no second warning from that
    step.perform(ctx)  # deploy
    assert len(warnings(deployed)) == 1
    # internal-ca renews itself: no warning.
    quiet: list[StepEvent] = []
    run_steps(make_ctx(make_cfg(), Recorder(), dry_run=True, events=quiet), [TLSStep()])
    assert warnings(quiet) == []


def test_a_due_certificate_is_renewed_with_force_renewal() -> None:
    from claudegate.deploy.steps.acme import certbot_argv

    common: dict[str, Any] = {
        "image": "claudegate/certbot:x", "prefix": "claudegate", "network": "claudegate-egress",
        "state_dir": "/s", "webroot": "/w", "domain": "gw.example.com", "email": "ops@example.com",
        "directory": "https://acme.example/dir", "ca_bundle": False,
    }  # fmt: skip
    first = certbot_argv(**common)
    assert "--keep-until-expiring" in first and "--force-renewal" not in first
    # Debian's certbot 2 would apply its own 30 days: claudegate decided it is due, so force it.
    renewal = certbot_argv(**common, renew=True)
    assert "--force-renewal" in renewal and "--keep-until-expiring" not in renewal


def test_the_probe_token_is_served_world_readable_and_nothing_else_changes(tmp_path: Path) -> None:
    webroot = tmp_path / "acme"
    webroot.mkdir()
    subprocess.run(write_token_argv(str(webroot), "tok-XYZ_1"), check=True)
    token = webroot / ".well-known" / "acme-challenge" / "tok-XYZ_1"
    assert token.read_text() == "tok-XYZ_1"
    assert token.stat().st_mode & 0o777 == 0o644  # nginx's workers (www-data) read it
    assert (webroot / ".well-known").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in token.parent.iterdir()) == ["tok-XYZ_1"]  # no temp file left


def test_a_sleeping_renewer_wakes_when_another_certificate_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy may issue another certificate (another CA, a shorter lifetime) while the
    # renewer sleeps the 12 h of a 90-day one: it must look at the new one promptly.
    renewer = _renewer()
    monkeypatch.setattr(renewer, "WAKE_POLL", 0.05)
    live = tmp_path / "live"
    live.mkdir()
    (live / "cert.pem").write_bytes(b"first")
    loop = renewer.Renewer(
        argparse.Namespace(live=str(live), tls=str(tmp_path), status=str(tmp_path / "status.json"))
    )
    threading.Timer(0.3, (live / "cert.pem").write_bytes, args=(b"second",)).start()
    started = time.monotonic()
    loop.sleep(30)
    assert time.monotonic() - started < 5
    started = time.monotonic()
    loop.sleep(0.3)  # nothing changes: the whole interval
    assert time.monotonic() - started >= 0.3
