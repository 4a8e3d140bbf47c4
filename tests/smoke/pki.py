"""Certificates for the smoke tests, made fresh in tmp on every run.

A root CA and an intermediate (what a real ACME CA serves), leaves for any
names and validity window, and self-signed leaves nobody trusts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.pki import ca_certificate, cert_name, pem


@dataclass(frozen=True)
class Leaf:
    fullchain: Path  # leaf + intermediate: what nginx serves
    key: Path
    chain: Path  # intermediate + root


@dataclass(frozen=True)
class CA:
    root: Path  # the trust anchor a client is given (SmokeTarget.ca_file)
    root_cert: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    inter_cert: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return cert_name(cn, "claudegate smoke tests")


def _ca_cert(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    return ca_certificate(
        subject, key, None if issuer == subject else issuer, issuer_key,
        valid_from=dt.timedelta(days=-1), valid_for=dt.timedelta(days=3650),
    )


def make_ca(directory: Path) -> CA:
    directory.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_cert(_name("smoke test root"), root_key, _name("smoke test root"), root_key)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca_cert(_name("smoke test intermediate"), inter_key, root.subject, root_key)
    (directory / "root.pem").write_bytes(pem(root))
    return CA(directory / "root.pem", root, root_key, inter, inter_key)


def make_leaf(
    ca: CA | None,
    directory: Path,
    names: tuple[str, ...] = ("gw.test",),
    *,
    not_before: dt.timedelta = dt.timedelta(hours=-1),
    not_after: dt.timedelta = dt.timedelta(days=90),
) -> Leaf:
    """A server certificate for ``names`` issued by ``ca``'s intermediate, or self-signed when ``ca`` is None.

    ``not_before`` / ``not_after`` are offsets from now.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    issuer_name = ca.inter_cert.subject if ca else _name(names[0])
    issuer_key = ca.inter_key if ca else key
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    leaf = Leaf(directory / "fullchain.pem", directory / "privkey.pem", directory / "chain.pem")
    if ca is not None:
        leaf.fullchain.write_bytes(pem(cert) + pem(ca.inter_cert))
        leaf.chain.write_bytes(pem(ca.inter_cert) + pem(ca.root_cert))
    else:
        leaf.fullchain.write_bytes(pem(cert))
        leaf.chain.write_bytes(pem(cert))
    leaf.key.touch(mode=0o600)
    leaf.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return leaf
