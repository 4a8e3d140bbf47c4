"""TLS to the state tier: rediss:// and PostgreSQL verify-full against a CA the
operator names, and a server certificate from another CA refused (fail closed).

Real redis-server (its TLS port only) and PostgreSQL (ssl=on), certificates
made fresh for the run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fleet import body, run_parallel
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.pki import ca_certificate, cert_name, pem
from tests.support.state_services import PostgresServer, RedisServer, _tempdir


def make_ca(workdir: Path, name: str) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_certificate(cert_name(name), key, None, key)
    path = workdir / f"{name}.pem"
    path.write_bytes(pem(cert))
    return path, cert, key


def server_cert(workdir: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(cert_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    crt, pk = workdir / "server.crt", workdir / "server.key"
    crt.write_bytes(pem(cert))
    pk.touch(mode=0o600)
    pk.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))  # fmt: skip
    return crt, pk


def metrics(gw: GatewayProc) -> str:
    with urllib.request.urlopen(gw.internal_url + "/metrics", timeout=2) as r:
        return str(r.read().decode())


def test_rediss_with_the_operators_ca_and_a_foreign_ca_refused(
    tmp_path: Path, fake: FakeAnthropic, gateways: list[GatewayProc]
) -> None:
    good_ca, ca, ca_key = make_ca(tmp_path, "state-ca")
    other_ca, _, _ = make_ca(tmp_path, "other-ca")
    redis = RedisServer(tmp_path / "redis", tls=server_cert(tmp_path, ca, ca_key)).start()
    try:
        def gateway(name: str, ca_file: Path) -> GatewayProc:
            state: dict[str, Any] = {"state": {"redis": {
                "url": redis.url, "password_file": str(redis.password_file), "tls_ca_file": str(ca_file)}}}
            gw = make_gateway(tmp_path / name, fake.url, fake.api_key, state,
                              share_keystore=gateways[0] if gateways else None)  # fmt: skip
            gateways.append(gw)
            return gw.start()

        trusting = gateway("trusting", good_ca)
        foreign = gateway("foreign", other_ca)
        assert redis.url.startswith("rediss://")
        key = trusting.create_key("budget", "--daily-tokens", "100000")
        time.sleep(1.2)  # a beat: each has tried Redis at least once
        assert run_parallel([trusting], key, [body()])[0][0] == 200  # a budget needs Redis: TLS works
        assert "claudegate_state_redis_up 1\n" in metrics(trusting)
        # A server certificate the configured CA did not sign is never talked to.
        assert run_parallel([foreign], key, [body()])[0][0] == 503
        assert "claudegate_state_redis_up 0\n" in metrics(foreign)
    finally:
        redis.stop()


def test_postgres_verify_full_with_the_operators_ca_and_a_foreign_ca_refused(
    tmp_path: Path, fake: FakeAnthropic, redis_db: RedisServer, gateways: list[GatewayProc]
) -> None:
    good_ca, ca, ca_key = make_ca(tmp_path, "state-ca")
    other_ca, _, _ = make_ca(tmp_path, "other-ca")
    pg = PostgresServer(_tempdir("cg-pg-tls-"), tls=server_cert(tmp_path, ca, ca_key)).start()
    try:
        def config(ca_file: Path) -> dict[str, Any]:
            return {"state": {
                "redis": {"url": redis_db.url, "password_file": str(redis_db.password_file)},
                "postgres": {"url": pg.url, "password_file": str(pg.password_file), "tls": "verify-full",
                             "tls_ca_file": str(ca_file)},
            }}  # fmt: skip

        trusting = make_gateway(tmp_path / "trusting", fake.url, fake.api_key, config(good_ca))
        gateways.append(trusting)
        trusting.start()
        key = trusting.create_key("team")
        assert run_parallel([trusting], key, [body()])[0][0] == 200
        foreign = make_gateway(tmp_path / "foreign", fake.url, fake.api_key, config(other_ca), share_keystore=trusting)
        out = foreign.cli("keys", "list", check=False)
        assert out.returncode == 2 and "state.postgres: cannot reach PostgreSQL at 127.0.0.1" in out.stderr, out.stderr
        assert "certificate verify failed" in out.stderr and "Traceback" not in out.stderr
        assert "team" not in out.stdout
    finally:
        pg.stop()
        shutil.rmtree(pg.workdir, ignore_errors=True)
