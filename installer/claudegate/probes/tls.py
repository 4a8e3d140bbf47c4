"""The TLS handshake and the served certificate, as a client of the public name sees them.

:func:`tls_probe` connects once verifying (the system store plus a CA file)
and, when that fails on the certificate, once more without verifying, to say
what is wrong with what is served. :func:`check_handshake` and
:func:`check_certificate` judge the result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from claudegate.probes.verdict import Failed, Skipped, describe_error
from claudegate.probes.wire import Endpoint, connect, tls_context


@dataclass
class TLSResult:
    connected: bool = False
    error: str = ""  # why there was no handshake at all
    verified: bool = False
    verify_error: str = ""  # why the verified handshake failed (certificate problems)
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    leaf_der: bytes | None = None
    local_address: str | None = None  # our address as the server saw it (for the allowlist probe)


def tls_probe(ep: Endpoint, ca_file: Path | None, timeout: float) -> TLSResult:
    """One verified handshake with the endpoint; an unverified one too if the certificate failed."""
    result = TLSResult()
    try:
        with connect(ep, tls_context(ca_file, alpn=("h2", "http/1.1")), timeout) as tls:
            result.connected = result.verified = True
            _record(result, tls)
        return result
    except ssl.SSLCertVerificationError as exc:
        result.connected = True
        result.verify_error = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        result.error = describe_error(exc)
        return result
    # The chain did not verify: look at what is served anyway, to say what is wrong with it.
    try:
        with connect(ep, tls_context(None, verify=False, alpn=()), timeout) as tls:
            _record(result, tls)
    except (OSError, ssl.SSLError) as exc:
        result.error = describe_error(exc)
        result.connected = False
    return result


def _record(result: TLSResult, tls: socket.socket) -> None:
    assert isinstance(tls, ssl.SSLSocket)  # connect() with a context wraps
    result.version = tls.version()
    cipher = tls.cipher()
    result.cipher = cipher[0] if cipher else None
    result.alpn = tls.selected_alpn_protocol()
    result.leaf_der = tls.getpeercert(binary_form=True)
    with contextlib.suppress(OSError):
        result.local_address = str(tls.getsockname()[0])


def check_handshake(tls: TLSResult, ep: Endpoint) -> str:
    where = f"{ep.connect_host}:{ep.https_port}"
    if not tls.connected:
        raise Failed(f"no TLS handshake with {where} (SNI {ep.domain}): {tls.error}")
    if tls.version not in ("TLSv1.2", "TLSv1.3"):
        raise Failed(f"negotiated {tls.version}; TLS 1.2 or later is required")
    detail = f"{tls.version}, {tls.cipher}"
    if tls.alpn:
        detail += f", ALPN {tls.alpn}"
    if not tls.verified:
        detail += " (the certificate did not verify: see tls.certificate)"
    return detail


def hostname_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 matching of one SAN DNS name: exact, or a ``*`` as the whole leftmost label."""
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if "*" not in pattern:
        return pattern == hostname
    first, _, rest = pattern.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False  # only "*.example.com"-style wildcards, never "*.com" or "a*.b.c"
    host_first, _, host_rest = hostname.partition(".")
    return bool(host_first) and host_rest == rest


def _san_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def check_certificate(
    tls: TLSResult, ep: Endpoint, ca_file: Path | None, min_days: int, now: dt.datetime | None = None
) -> str:
    """The served chain verifies, names the domain, and is valid now and for ``min_days`` more."""
    if not tls.connected or tls.leaf_der is None:
        raise Skipped("no certificate to look at: the TLS handshake failed (see tls.handshake)")
    now = now or dt.datetime.now(dt.UTC)
    cert = x509.load_der_x509_certificate(tls.leaf_der)
    problems: list[str] = []
    trust = f"{ca_file} + the system trust store" if ca_file else "the system trust store"
    if not tls.verified:
        problems.append(f"the chain does not verify against {trust}: {tls.verify_error}")

    dns, ips = _san_names(cert)
    try:
        address = ipaddress.ip_address(ep.domain)
    except ValueError:
        address = None
    if address is not None:
        name_ok = str(address) in ips
    else:
        name_ok = any(hostname_matches(name, ep.domain) for name in dns)
    names = ", ".join(dns + ips) or "none"
    if not dns and not ips:
        problems.append("the certificate has no subjectAltName")
    elif not name_ok:
        problems.append(f"subjectAltName ({names}) does not name {ep.domain}")

    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    days_left = int((not_after - now).total_seconds() // 86400)
    # A short-lived certificate (Let's Encrypt's 6 days, a test CA's minutes)
    # cannot have min_days left: it must only not be past its renewal
    # point (a third of its lifetime left, the renewer's rule).
    required = min(dt.timedelta(days=min_days), (not_after - not_before) / 3)
    if not_before > now:
        problems.append(f"not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    if not_after <= now:
        days_ago = int((now - not_after).total_seconds() // 86400)
        problems.append(f"expired on {not_after:%Y-%m-%d} ({days_ago} days ago)")
    elif not_after - now < required:
        need = (
            f"{min_days}"
            if required.days == min_days
            else f"{required.total_seconds() / 86400:.2f} (a third of its lifetime)"
        )
        problems.append(
            f"expires on {not_after:%Y-%m-%d %H:%M} UTC: {days_left} days left, at least {need} required"
        )
    if problems:
        raise Failed("; ".join(problems))
    return f"verified against {trust} for {ep.domain} (SAN {names}); expires {not_after:%Y-%m-%d}, {days_left} days left"
