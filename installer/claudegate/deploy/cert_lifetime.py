"""When a certificate is due for renewal, and how often to look: both follow its own lifetime.

A fixed "30 days before the end" breaks every certificate shorter than 30
days (Let's Encrypt's 6-day certificates, a test CA's 1-hour ones): it is
due the moment it is issued, so a deploy that just obtained it finds it
"still due" and fails. certbot's own rule is used instead: a certificate is
due once a third of its lifetime is left (30 days of a 90-day certificate,
2 days of a 6-day one, 20 minutes of an hour).

The host's renewal loop (``assets/certbot/claudegate_renew.py``) applies the
same rule; it cannot import this module (it runs in the certbot image), so
``tests/deploy/test_cert_lifetime.py`` checks the two agree.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

__all__ = [
    "RENEW_FRACTION",
    "check_interval",
    "is_due",
    "lifetime",
    "renewal_point",
]

#: Renew when this fraction of the lifetime is left (certbot's default).
RENEW_FRACTION = 3
#: How many times per lifetime the host looks (bounded below and above).
_CHECKS_PER_LIFETIME = 24
MIN_CHECK_INTERVAL = dt.timedelta(seconds=5)
MAX_CHECK_INTERVAL = dt.timedelta(hours=12)


def lifetime(cert: x509.Certificate) -> dt.timedelta:
    return max(cert.not_valid_after_utc - cert.not_valid_before_utc, dt.timedelta(0))


def renewal_point(cert: x509.Certificate) -> dt.datetime:
    """The moment ``cert`` becomes due: a third of its lifetime before its end."""
    return cert.not_valid_after_utc - lifetime(cert) / RENEW_FRACTION


def is_due(cert: x509.Certificate, now: dt.datetime | None = None) -> bool:
    return (now or dt.datetime.now(dt.UTC)) >= renewal_point(cert)


def check_interval(span: dt.timedelta) -> dt.timedelta:
    """How often the host's loop looks at a certificate living ``span``.

    24 looks per lifetime leave 8 chances inside the last third (a CA
    outage of a few checks does not let it expire); 12 hours at most (a
    90-day certificate), 5 seconds at least (a test CA's minutes-long one).
    """
    return min(max(span / _CHECKS_PER_LIFETIME, MIN_CHECK_INTERVAL), MAX_CHECK_INTERVAL)
