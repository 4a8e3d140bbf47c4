"""What ``status`` says about the certificate: the one nginx *serves*, the renewer's last word, warnings.

The file on disk is not what clients get: a renewal that nginx never
reloaded leaves the old certificate served until it expires (the failure
operators report most). So ``status`` opens a TLS connection to the
target's HTTPS port with the deploy's domain as SNI and reads the
certificate presented there (read, not verified: an expired or untrusted
one must still be shown), and reports the host renewer's last round
(``claudegate-renewal.json``, see ``assets/certbot/claudegate_renew.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector
from claudegate.deploy.cert_lifetime import renewal_point
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.steps.renewal import status_path
from claudegate.errors import DeployFailed

__all__ = [
    "FILES_WARN_BEFORE",
    "CertificateStatus",
    "certificate_status",
    "describe",
    "expiry_warning",
    "fetch_served",
    "fleet_served_serial",
]

#: A certificate the operator supplies (``tls.mode: files``) nearer its end than this is a warning.
FILES_WARN_BEFORE = dt.timedelta(days=14)


def fetch_served(host: str, port: int, domain: str, *, timeout: float = 10.0) -> x509.Certificate | None:
    """The leaf certificate presented at ``host:port`` for SNI ``domain`` (None when nothing answers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read what is served, even when it is expired or untrusted
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def describe(cert: x509.Certificate, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        remaining = "EXPIRED"
    elif left < dt.timedelta(days=2):
        remaining = f"{left.total_seconds() / 3600:.1f} h left"
    else:
        remaining = f"{left.days} days left"
    return (
        f"serial {cert.serial_number:x}, issued by {cert.issuer.rfc4514_string()}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({remaining})"
    )


def expiry_warning(cert: x509.Certificate, *, mode: str, now: dt.datetime | None = None) -> str | None:
    """A warning when the certificate will not renew itself and is near its end (or past it)."""
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    if mode == "files" and left < FILES_WARN_BEFORE:
        days = max(left.total_seconds(), 0) / 86400
        return (
            f"warning: the certificate from tls.cert_file ends {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
            f"({days:.1f} days left); nothing renews it: put a new certificate in tls.cert_file / tls.key_file "
            "and deploy"
        )
    if mode == "acme" and now > renewal_point(cert) + (cert.not_valid_after_utc - renewal_point(cert)) / 2:
        return (
            f"warning: the served ACME certificate ends {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC and was "
            "due for renewal long ago; see the renewal line, and run claudegate renew"
        )
    return None


@dataclass(frozen=True)
class CertificateStatus:
    served: str | None  # the certificate on the HTTPS port, described
    renewal: dict[str, Any] | None  # the host renewer's last report (ACME only)
    warnings: tuple[str, ...]


def certificate_status(
    cfg: DeployConfig, connector: Connector, layout: HostLayout, *, sudo: bool
) -> CertificateStatus:
    warnings: list[str] = []
    host = "127.0.0.1" if cfg.target.is_local else cfg.target.host
    cert = fetch_served(host, cfg.ports.https, cfg.domain) if host else None
    served = None
    if cert is not None:
        served = describe(cert)
        warning = expiry_warning(cert, mode=cfg.tls.mode)
        if warning:
            warnings.append(warning)
    renewal: dict[str, Any] | None = None
    if cfg.tls.mode == "acme":
        raw = connector.get_file(status_path(layout), sudo=sudo, timeout=60)
        try:
            loaded = json.loads(raw) if raw else None
        except ValueError:
            loaded = None
        renewal = loaded if isinstance(loaded, dict) else None
        if renewal is None:
            warnings.append(
                "warning: the host's renewer has not reported yet (deploy starts it; is it running?)"
            )
        elif renewal.get("result") == "failed":
            warnings.append(f"warning: the last renewal round failed: {renewal.get('message')}")
    return CertificateStatus(served, renewal, tuple(warnings))


def fleet_served_serial(cfg: DeployConfig, *, wait: float = 30.0, poll: float = 1.0) -> str:
    """After a fleet deploy with ACME: the one serial every host serves, else :class:`DeployFailed`.

    Read from this machine at each host's HTTPS port (what a client gets),
    waiting up to ``wait`` seconds for the hosts to agree (a renewer that was
    reloading nginx right then).
    """
    deadline = time.monotonic() + wait
    while True:
        seen: dict[str, str] = {}
        for host in cfg.fleet:
            cert = fetch_served(host.host, cfg.ports.https, cfg.domain)
            seen[host.host] = "nothing" if cert is None else format(cert.serial_number, "x")
        serials = set(seen.values())
        if len(serials) == 1 and "nothing" not in serials:
            return serials.pop()
        if time.monotonic() >= deadline:
            which = "; ".join(f"host {i + 1}/{len(seen)} ({h}): {s}" for i, (h, s) in enumerate(seen.items()))
            raise DeployFailed(
                f"the hosts do not serve one certificate for {cfg.domain} after the deploy ({which})",
                hint="`claudegate status --config <your file>` shows each host's certificate and its renewer's "
                "last round; a host that cannot reach state.postgres keeps the certificate it had",
            )
        time.sleep(poll)
