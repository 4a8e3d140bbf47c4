"""The acme step's plan on each host of a fleet, from canned host files (no host, no Docker), one case a row.

The first host (the issuer) runs certbot and shares; every other host (a
follower) installs what is shared. See :mod:`tests.deploy.canned`; the whole
path runs in test_e2e_multihost.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Result
from claudegate.deploy.acme_share import SHARE_KEY, share_json
from claudegate.deploy.engine import Put
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.acme import AcmeStep
from tests.deploy.canned import context, kinds, ok, plan
from tests.deploy.conftest import ConfigFactory
from tests.deploy.support import write_secret

LAYOUT = HostLayout()
SHARE = f"{LAYOUT.acme_state}/claudegate-share"
LIVE = f"{LAYOUT.acme_state}/live/claudegate/fullchain.pem"
SERVED = f"{LAYOUT.tls}/fullchain.pem"
PG_PASSWORD = "pg-password-never-shown"


def _cert() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example.com")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=6)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), format(cert.serial_number, "x")


@pytest.fixture
def fleet(make_cfg: ConfigFactory, tmp_path: Path) -> DeployConfig:
    one = {"host": "10.0.0.11", "user": "deploy", "known_hosts": str(tmp_path / "known_hosts")}
    state = {
        "redis": {"url": "redis://10.0.0.5:6379/0", "password_file": str(write_secret(tmp_path / "r", "r"))},
        "postgres": {"url": "postgresql://claudegate@10.0.0.5:5432/claudegate", "tls": "disable",
                     "password_file": str(write_secret(tmp_path / "pg", PG_PASSWORD))},
    }  # fmt: skip
    return make_cfg(
        target=one, hosts=[one, {**one, "host": "10.0.0.12"}], state=state,
        tls={"mode": "acme", "email": "ops@example.com"},
    )  # fmt: skip


def _host(files: dict[str, bytes]) -> Any:
    """Answers the sha256 fact from ``files``."""

    def answer(argv: list[str]) -> Result | None:
        if argv[:4] == ["sh", "-c", argv[2], "claudegate-sha256"]:
            return ok("".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in argv[4:] if p in files))
        return None

    return answer


def _steady(cfg: DeployConfig, role: str, tmp_path: Path) -> dict[str, bytes]:
    """The share's files as the last deploy left them."""
    key = b"ab" * 32 + b"\n"
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / SHARE_KEY).write_bytes(key)
    ctx = context(cfg)
    return {
        f"{SHARE}/share.json": share_json(ctx, role),
        f"{SHARE}/share.key": key,
        f"{SHARE}/pg_password": Path(str(cfg.state.postgres.password_file)).read_bytes(),
    }


def test_a_new_follower_gets_the_shares_files_and_installs_the_shared_certificate(fleet: DeployConfig) -> None:
    follower = fleet.for_host(fleet.fleet[1])
    changes, _ = plan(AcmeStep(), context(follower, _host({}), dry_run=True))
    summaries = [c.summary for c in changes]
    assert summaries[0].startswith("upload the certificate share's settings (follower)")
    assert any(s.startswith("create the fleet's certificate share key") for s in summaries)  # made by the real run
    assert any(s.startswith("upload the PostgreSQL password (for the certificate share)") for s in summaries)
    assert summaries[-1] == (
        "install the fleet's certificate for gw.example.com from the state tier (issued by 10.0.0.11)"
    )
    assert kinds(changes[-1]) == ("call: install the shared certificate",)
    assert not any("certbot" in s or "obtain" in s for s in summaries)  # a follower never orders
    assert PG_PASSWORD not in "".join(summaries)
    for change in changes[:-1]:
        for op in change.ops:
            if isinstance(op, Put):
                assert (op.mode, op.owner) == (0o600, "0:0") and op.path.startswith(SHARE)


def test_a_follower_serving_what_it_installed_plans_nothing(fleet: DeployConfig, tmp_path: Path) -> None:
    follower = fleet.for_host(fleet.fleet[1])
    chain, serial = _cert()
    files = {**_steady(follower, "follower", tmp_path), SERVED: chain,
             f"{SHARE}/installed.json": json.dumps({"serial": serial}).encode()}  # fmt: skip
    changes, _ = plan(AcmeStep(), context(follower, _host(files), files))
    assert changes == [], [c.summary for c in changes]
    # nginx serves another certificate (the tls step's temporary one, or a hand-made one): install again.
    other, _ = _cert()
    changes, _ = plan(AcmeStep(), context(follower, _host({**files, SERVED: other}), {**files, SERVED: other}))
    assert [c.summary.split(" from ")[0] for c in changes] == ["install the fleet's certificate for gw.example.com"]


def test_the_issuer_shares_a_certificate_it_has_not_shared(fleet: DeployConfig, tmp_path: Path) -> None:
    chain, serial = _cert()
    files = {**_steady(fleet, "issuer", tmp_path), LIVE: chain, SERVED: chain,
             f"{SHARE}/published.json": json.dumps({"serial": serial}).encode()}  # fmt: skip
    changes, _ = plan(AcmeStep(), context(fleet, _host(files), files))
    assert changes == [], [c.summary for c in changes]
    files[f"{SHARE}/published.json"] = b'{"serial": "1234"}'
    changes, _ = plan(AcmeStep(), context(fleet, _host(files), files))
    assert [c.summary for c in changes] == [
        f"share the certificate with the other hosts (sealed into the state tier): serial {serial}"
    ]
    assert kinds(changes[0]) == ("call: share the certificate",)
    # Nothing issued yet: certbot first, then the share, in that order.
    changes, _ = plan(AcmeStep(), context(fleet, _host({}), {}, dry_run=True))
    summaries = [c.summary for c in changes]
    assert summaries[-2].startswith("obtain a certificate for gw.example.com")
    assert summaries[-1] == "share the certificate with the other hosts (sealed into the state tier)"
