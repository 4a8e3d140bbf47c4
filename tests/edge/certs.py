"""Test PKI made on the fly: a root CA, an intermediate CA and a server leaf.

Nothing here is committed key material: every run makes fresh keys in tmp.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from tests.support.pki import PrivateKey, ca_certificate, cert_name, pem

# Never fetched by the tests; it only has to be present in the leaf.
CRL_URL = "http://crl.gw.test/intermediate.crl"


@dataclass(frozen=True)
class EdgePKI:
    root_ca: Path  # trust anchor for clients and scanners
    fullchain: Path  # leaf + intermediate: what nginx serves
    leaf_only: Path  # the leaf alone: an incomplete chain
    key: Path
    chain: Path  # intermediate + root: ssl_trusted_certificate for OCSP
    intermediate: Path  # the issuing CA, and its key: enough to run an OCSP responder
    intermediate_key: Path


def _name(common_name: str) -> x509.Name:
    return cert_name(common_name)


def make_pki(
    directory: Path,
    dns_names: tuple[str, ...] = ("gw.test", "localhost"),
    *,
    rsa_leaf: bool = False,
    ocsp_url: str | None = None,
) -> EdgePKI:
    """A three-level chain for ``dns_names`` plus 127.0.0.1 and ::1."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca_certificate(_name("claudegate test root"), root_key, None, root_key, path_len=1)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = ca_certificate(_name("claudegate test intermediate"), inter_key, root.subject, root_key, path_len=0)
    leaf_key: PrivateKey = (
        rsa.generate_private_key(65537, 2048) if rsa_leaf else ec.generate_private_key(ec.SECP256R1())
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(inter.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=80))  # modern: at most 90 days
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=rsa_leaf,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(inter_key.public_key()), critical=False
        )
        # Like Let's Encrypt since 2025: revocation through a CRL, no OCSP.
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(CRL_URL)], None, None, None)]
            ),
            critical=False,
        )
    )
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                    )
                ]
            ),
            critical=False,
        )
    leaf = builder.sign(inter_key, hashes.SHA256())

    paths = EdgePKI(
        root_ca=directory / "root-ca.pem",
        fullchain=directory / "fullchain.pem",
        leaf_only=directory / "cert.pem",
        key=directory / "privkey.pem",
        chain=directory / "chain.pem",
        intermediate=directory / "intermediate.pem",
        intermediate_key=directory / "intermediate-key.pem",
    )
    paths.root_ca.write_bytes(pem(root))
    paths.fullchain.write_bytes(pem(leaf) + pem(inter))
    paths.leaf_only.write_bytes(pem(leaf))
    paths.chain.write_bytes(pem(inter) + pem(root))
    paths.intermediate.write_bytes(pem(inter))
    for path, private in ((paths.key, leaf_key), (paths.intermediate_key, inter_key)):
        path.touch(mode=0o600)
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths
