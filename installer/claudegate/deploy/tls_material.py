"""Certificate and key for nginx, made or read on the operator side.

- ``internal-ca``: a private CA and a server certificate made here with
  ``cryptography`` and kept in the state directory (``ca.pem`` for clients;
  keys under ``tls/``, 0600). The same
  files are reused on every deploy (so a redeploy changes nothing) until the
  server certificate nears its end or the domain changes. Clients and the
  smoke test trust ``ca.pem``.
- ``files``: the operator's PEM files, checked (key matches certificate, not
  expired, names the domain) before anything is uploaded.

ACME is different (the host itself talks to the CA); see :mod:`.tls_acme`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from claudegate.errors import ConfigError
from claudegate.private_files import write_private

__all__ = [
    "RENEW_BEFORE",
    "TLSMaterial",
    "cert_summary",
    "from_files",
    "internal_ca",
    "self_signed",
]

#: A server certificate closer than this to its end is replaced.
RENEW_BEFORE = dt.timedelta(days=30)
_LEAF_LIFETIME = dt.timedelta(days=365)
_CA_LIFETIME = dt.timedelta(days=3650)


@dataclass(frozen=True)
class TLSMaterial:
    """What goes into ``shared/tls`` on the host."""

    fullchain: bytes  # server certificate, then intermediates
    privkey: bytes  # PEM private key (uploaded 0600; never rendered or printed)
    chain: bytes  # intermediates (and root), for OCSP verification
    trust: Path | None  # CA certificate file clients should trust (None: the system store)
    summary: str  # one line for the plan: subject, issuer, expiry


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    write_private(path, data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_summary(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    names = _dns_names(cert)
    return (
        f"{', '.join(names) or cert.subject.rfc4514_string()}, issued by {cert.issuer.rfc4514_string()}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    )


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name) for name in san.get_values_for_type(x509.DNSName)]


def _san_names(cert: x509.Certificate) -> list[str]:
    """Every name in the certificate's subjectAltName: DNS names, then IP addresses."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return _dns_names(cert) + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _address(domain: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(domain)
    except ValueError:
        return None


def _san_for(domain: str) -> x509.GeneralName:
    """The certificate's name for ``domain``: an IP address entry when it is one (clients check that type)."""
    address = _address(domain)
    return x509.IPAddress(address) if address is not None else x509.DNSName(domain)


def _permitted(domain: str) -> x509.GeneralName:
    """What the internal CA may certify: the one address, or names under the domain."""
    address = _address(domain)
    if address is not None:
        return x509.IPAddress(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))
    return x509.DNSName(domain)


def _make_ca(domain: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"claudegate internal CA for {domain}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        # Only names under the deploy's own domain can ever chain to this CA.
        .add_extension(
            x509.NameConstraints(permitted_subtrees=[_permitted(domain)], excluded_subtrees=None),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    domain: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _LEAF_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([_san_for(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _discard(path: Path, data: bytes) -> None:
    """What a plan does with a file it would write: nothing."""


def internal_ca(
    state_dir: Path, domain: str, *, now: dt.datetime | None = None, keep: bool = True
) -> TLSMaterial:
    """The private CA and server certificate for ``domain``, made once and reused.

    ``keep=False`` (a plan) reads what is there and makes what is missing in memory only: a plan changes
    nothing, here either (the deploy then makes and keeps its own).
    """
    now = now or _now()
    write = _write_private if keep else _discard
    tls_dir = state_dir / "tls"
    # ca.pem sits at the top of the state directory: it is what clients are pointed at.
    ca_key_path, ca_path = tls_dir / "ca.key.pem", state_dir / "ca.pem"
    key_path, cert_path = tls_dir / "server.key.pem", tls_dir / "server.pem"

    ca_key, ca_cert = _load_key(ca_key_path), _load_cert(ca_path)
    ca_ok = (
        ca_key is not None
        and ca_cert is not None
        and ca_cert.public_key() == ca_key.public_key()
        and ca_cert.not_valid_after_utc - now > _LEAF_LIFETIME
        and f"for {domain}" in ca_cert.subject.rfc4514_string()
    )
    if not ca_ok:
        ca_key, ca_cert = _make_ca(domain, now)
        write(ca_key_path, _key_pem(ca_key))
        write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    assert ca_key is not None and ca_cert is not None

    key, cert = _load_key(key_path), _load_cert(cert_path)
    leaf_ok = (
        ca_ok
        and key is not None
        and cert is not None
        and cert.public_key() == key.public_key()
        and cert.issuer == ca_cert.subject
        and _san_names(cert) == [domain]
        and cert.not_valid_after_utc - now > RENEW_BEFORE
    )
    if not leaf_ok:
        key, cert = _make_leaf(domain, ca_key, ca_cert, now)
        write(key_path, _key_pem(key))
        write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    assert key is not None and cert is not None

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    leaf_pem = cert.public_bytes(serialization.Encoding.PEM)
    return TLSMaterial(
        fullchain=leaf_pem + ca_pem,
        privkey=_key_pem(key),
        chain=ca_pem,
        trust=ca_path,
        summary=cert_summary(leaf_pem),
    )


def self_signed(domain: str, *, now: dt.datetime | None = None) -> TLSMaterial:
    """A throwaway certificate so nginx can start before ACME issued the real one."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return TLSMaterial(
        pem, _key_pem(key), pem, None, "temporary self-signed certificate until ACME issues one"
    )


def _split_pems(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + marker + b"\n" for part in data.split(marker)[:-1] if part.strip()]


def from_files(
    domain: str, cert_file: Path, key_file: Path, chain_file: Path | None, *, now: dt.datetime | None = None
) -> TLSMaterial:
    """The operator's own certificate files, checked before they go anywhere."""
    now = now or _now()
    try:
        cert_data = cert_file.read_bytes()
        key_data = key_file.read_bytes()
        chain_data = chain_file.read_bytes() if chain_file is not None else None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the TLS file {exc.filename}: {exc.strerror}",
            hint="check tls.cert_file / tls.key_file",
        ) from None
    pems = _split_pems(cert_data)
    if not pems:
        raise ConfigError(
            f"{cert_file} holds no PEM certificate", hint="tls.cert_file must be the full chain, PEM"
        )
    try:
        leaf = x509.load_pem_x509_certificate(pems[0])
        key = serialization.load_pem_private_key(key_data, password=None)
    except ValueError as exc:
        raise ConfigError(
            f"cannot parse the certificate or key: {exc}", hint="both must be unencrypted PEM"
        ) from None
    if leaf.public_key() != key.public_key():
        raise ConfigError(
            f"the key in {key_file} does not belong to the certificate in {cert_file}",
            hint="set tls.key_file to the private key of that certificate",
        )
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(f"the certificate in {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if not _matches(domain, _dns_names(leaf)):
        raise ConfigError(
            f"the certificate in {cert_file} is for {', '.join(_dns_names(leaf)) or 'no DNS name'}, not {domain}",
            hint="use a certificate whose subjectAltName names the domain",
        )
    chain = chain_data if chain_data is not None else b"".join(pems[1:])
    return TLSMaterial(cert_data, key_data, chain, None, cert_summary(pems[0]))


def _matches(domain: str, names: list[str]) -> bool:
    for name in names:
        if name == domain:
            return True
        if name.startswith("*.") and domain.count(".") == name.count(".") and domain.endswith(name[1:]):
            return True
    return False
