"""One ACME certificate for several hosts: what a host accepts from the state tier, and what it refuses.

The checks of ``assets/certbot/claudegate_share.py`` on real certificates and
real AES-GCM (the database part runs in the multihost end-to-end test, in
the certbot image): a row that does not open with the host's share key, a
chain swapped under a sealed key, a key that is not the certificate's, another
domain, an expired certificate, an older one than the host installed (a
rollback), and the newest acceptable row chosen past a bogus newer one.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from claudegate.deploy import acme_share
from claudegate.deploy.build_contexts import SHARE_IN_IMAGE, certbot_context
from claudegate.deploy.docker_cli import ContainerSpec
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.renewal import LABEL_SHARE, renewer_spec

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "gw.example.com"
NOW = dt.datetime.now(dt.UTC)


def _share() -> ModuleType:
    spec = importlib.util.spec_from_file_location("claudegate_share", REPO / "assets/certbot/claudegate_share.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["claudegate_share"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


share = _share()
PEM = serialization.Encoding.PEM
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuing CA")])
CA_PEM = (
    x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key())
    .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
    .not_valid_after(NOW + dt.timedelta(days=30)).sign(CA_KEY, hashes.SHA256()).public_bytes(PEM)
)  # fmt: skip


def _issue(*, issued: dt.datetime, lifetime: dt.timedelta = dt.timedelta(days=6), name: str = DOMAIN,
           key: Any = None) -> tuple[bytes, bytes]:  # fmt: skip
    """(fullchain, key PEM) of a leaf for ``name`` issued at ``issued``."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(CA_NAME).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(issued).not_valid_after(issued + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
        .sign(CA_KEY, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(PEM) + CA_PEM, key_pem


KEY = os.urandom(32)


def _open(row: Any, *, key: bytes = KEY, newest: dt.datetime | None = None) -> Any:
    return share.open_row(row, domain=DOMAIN, share_key=key, newest_installed=newest, now=NOW)


def test_a_sealed_certificate_opens_with_the_share_key_and_its_key_matches() -> None:
    chain, key_pem = _issue(issued=NOW - dt.timedelta(hours=1))
    row = share.seal(DOMAIN, chain, key_pem, KEY)
    assert key_pem not in row.sealed_key and b"PRIVATE KEY" not in row.sealed_key  # never in clear
    cert, opened = _open(row)
    assert opened == key_pem and format(cert.serial_number, "x") == row.serial
    assert share.chain_of(chain) == CA_PEM


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        ("another share key", "does not open with this host's share key"),
        ("chain swapped", "does not open with this host's share key"),
        ("serial relabelled", "the chain holds serial"),
        ("key of another certificate", "the key does not match the certificate"),
        ("another domain", f"does not name {DOMAIN}"),
        ("expired", "expired"),
        ("older than installed", "a rollback, refused"),
    ],
)
def test_a_row_a_host_must_not_install_is_refused_saying_why(tamper: str, needle: str) -> None:
    chain, key_pem = _issue(issued=NOW - dt.timedelta(hours=1))
    row = share.seal(DOMAIN, chain, key_pem, KEY)
    key, newest = KEY, None
    if tamper == "another share key":
        key = os.urandom(32)
    elif tamper == "chain swapped":  # someone with write access to the table, not the share key
        other, _ = _issue(issued=NOW - dt.timedelta(minutes=5))
        theirs = share.leaf(other)
        row = share.Sealed(DOMAIN, format(theirs.serial_number, "x"), row.not_before, row.not_after, other,
                           row.nonce, row.sealed_key)  # fmt: skip
    elif tamper == "serial relabelled":
        row = share.Sealed(DOMAIN, "abc", row.not_before, row.not_after, row.fullchain, row.nonce, row.sealed_key)
    elif tamper == "key of another certificate":
        _, stray = _issue(issued=NOW)
        row = share.seal(DOMAIN, chain, stray, KEY)
    elif tamper == "another domain":
        chain, key_pem = _issue(issued=NOW - dt.timedelta(hours=1), name="evil.example.net")
        row = share.seal(DOMAIN, chain, key_pem, KEY)
    elif tamper == "expired":
        chain, key_pem = _issue(issued=NOW - dt.timedelta(days=7))
        row = share.seal(DOMAIN, chain, key_pem, KEY)
    else:
        newest = NOW - dt.timedelta(minutes=30)
    with pytest.raises(share.ShareError, match=needle):
        _open(row, key=key, newest=newest)


def test_the_newest_acceptable_row_is_chosen_past_a_bogus_newer_one() -> None:
    old = share.seal(DOMAIN, *_issue(issued=NOW - dt.timedelta(hours=3)), KEY)
    good = share.seal(DOMAIN, *_issue(issued=NOW - dt.timedelta(hours=2)), KEY)
    bogus = share.seal(DOMAIN, *_issue(issued=NOW - dt.timedelta(hours=1)), os.urandom(32))
    rows = [bogus, good, old]  # newest first, as the query orders them
    kwargs: dict[str, Any] = {"domain": DOMAIN, "share_key": KEY, "now": NOW}
    row, opened, refused = share.choose(rows, newest_installed=old.not_before, installed_serial=old.serial, **kwargs)
    assert row is good and opened is not None and len(refused) == 1 and bogus.serial in refused[0]
    # Installed already: nothing to do (the refusal still said).
    row, opened, refused = share.choose(rows, newest_installed=good.not_before, installed_serial=good.serial,
                                        **kwargs)  # fmt: skip
    assert row is good and opened is None and len(refused) == 1
    # Only rows older than what the host installed: none is taken.
    row, opened, refused = share.choose([good, old], newest_installed=NOW, installed_serial="feed", **kwargs)
    assert row is None and len(refused) == 2 and all("rollback" in r for r in refused)


def test_installed_files_and_the_hosts_high_water_mark(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    chain, key_pem = _issue(issued=NOW - dt.timedelta(hours=1))
    share.install_files(tls, chain, key_pem)
    assert (tls / "fullchain.pem").read_bytes() == chain and (tls / "chain.pem").read_bytes() == CA_PEM
    assert (tls / "privkey.pem").read_bytes() == key_pem
    assert stat.S_IMODE((tls / "privkey.pem").stat().st_mode) == 0o600
    assert sorted(p.name for p in tls.iterdir()) == ["chain.pem", "fullchain.pem", "privkey.pem"]
    cert = share.leaf(chain)
    share.write_installed(tmp_path, cert)
    assert share.installed_mark(tmp_path) == share.not_before(cert)
    assert stat.S_IMODE((tmp_path / share.INSTALLED_FILE).stat().st_mode) == 0o600


def test_the_one_shot_runs_mount_only_what_they_need() -> None:
    layout = HostLayout()
    image = certbot_context().tag("base")
    sync = acme_share.share_argv(image=image, layout=layout, command="sync", script=SHARE_IN_IMAGE)
    publish = acme_share.share_argv(image=image, layout=layout, command="publish", live="/x/live/claudegate",
                                    script=SHARE_IN_IMAGE)  # fmt: skip
    for argv in (sync, publish):
        assert "--cap-drop" in argv and "ALL" in argv and "--read-only" in argv
        assert f"{layout.acme_state}:/etc/letsencrypt:rw" in argv
        assert not any(layout.secrets in a for a in argv)  # never the gateway's secrets (the Anthropic key)
    assert f"{layout.tls}:/etc/claudegate/tls:rw" in sync and not any(layout.tls + ":" in a for a in publish)
    assert sync[-4:] == ["--share", "/etc/letsencrypt/claudegate-share/share.json", "--tls", "/etc/claudegate/tls"]


def test_the_renewer_of_a_fleet_host_reads_the_share_and_is_recreated_when_it_changes() -> None:
    layout = HostLayout()
    nginx = ContainerSpec(name="n", image="i", network="x", labels={})
    one = renewer_spec(layout, image="c", nginx=nginx, nginx_id="1", domain=DOMAIN, https_port=443, ca_bundle=False)
    assert "--share" not in one.args and LABEL_SHARE not in one.labels
    fleet = renewer_spec(layout, image="c", nginx=nginx, nginx_id="1", domain=DOMAIN, https_port=443,
                         ca_bundle=False, share="0123abcd")  # fmt: skip
    assert "--share" in fleet.args and fleet.labels[LABEL_SHARE] == "0123abcd"
    other = renewer_spec(layout, image="c", nginx=nginx, nginx_id="1", domain=DOMAIN, https_port=443,
                         ca_bundle=False, share="ffff0000")  # fmt: skip
    assert other.digest() != fleet.digest()


def test_role_issuer_is_the_first_host() -> None:
    fleet = [("10.0.0.11", 22), ("10.0.0.12", 22)]
    assert acme_share.role(fleet[0], fleet, acme=True) == "issuer"
    assert acme_share.role(fleet[1], fleet, acme=True) == "follower"
    assert acme_share.role(fleet[0], fleet, acme=False) is None
    assert acme_share.role(fleet[0], fleet[:1], acme=True) is None
