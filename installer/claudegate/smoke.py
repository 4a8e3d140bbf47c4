"""The smoke test: prove a deployed gateway is reachable, correct and hardened.

:func:`run_smoke` talks to the gateway the way its clients do -- over HTTPS to
the public name -- and returns one :class:`Check` per property, in a fixed
order (see :data:`CHECK_NAMES`):

``tls.handshake``       a TLS handshake on the HTTPS port, with SNI for the domain, negotiates TLS 1.2 or later
``tls.certificate``     the served chain verifies (``ca_file`` plus the system store) for the domain; the
                        leaf's subjectAltName names the domain; it is valid now and for ``cert_min_days`` more
``http.redirect``       the HTTP port answers 301/308 to ``https://<domain>[:<https port>]`` with the same path
``auth.required``       no key, and a key nobody issued, both get 401 ``authentication_error`` in Anthropic's shape
``api.models``          ``GET /v1/models`` with the client key: 200 and a model list
``headers.security``    HSTS (max-age >= 180 days), nosniff, ``Cache-Control: no-store``, no ``X-Powered-By``,
                        no version in ``Server`` -- on every API response looked at (the 401 and the 200)
``api.count_tokens``    ``POST /v1/messages/count_tokens`` with the client key: 200 and ``input_tokens``
``api.stream``          a streamed message from upstream: ``message_start`` ... ``message_stop`` in order
``stream.unbuffered``   the gateway's own paced stream (``/v1/claudegate/pace``: events 100 ms apart, made
                        by the gateway, never upstream, no tokens) arrives paced, not at once: nothing on the
                        way buffers events, whatever the upstream's pace (up to 3 tries: a buffer bunches
                        every try, a reader that was late to read bunches one)
``limits.body``         a body one byte over ``max_body_bytes`` gets 413 ``request_too_large``
``allowlist.enforced``  (only with ``allowlist_probe``) a request sent from ``probe_source`` is refused
``limits.burst``        ``burst`` quick requests provoke a 429 ``rate_limit_error`` with ``retry-after``

It connects to ``connect_host`` when given (the domain need not resolve yet,
or resolve here) while the domain is used for SNI, certificate verification
and the ``Host`` header. The client key is sent only in ``x-api-key`` headers;
every text the report holds is passed through :func:`claudegate.redact.redact`.

The checks themselves are :mod:`claudegate.probes` (shared with the audit);
this module is the runner: the target, the order, the report.
This module is core code: it imports no UI library.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claudegate.control.controls import current as _controls
from claudegate.errors import Cancelled
from claudegate.knobs import probe_defaults
from claudegate.probes.api import (
    Seen,
    check_auth,
    check_count_tokens,
    check_headers,
    check_models,
    check_redirect,
    check_stream,
)
from claudegate.probes.body import check_body_limit
from claudegate.probes.http import client
from claudegate.probes.limits import check_allowlist, check_burst
from claudegate.probes.pace import check_pace
from claudegate.probes.tls import check_certificate, check_handshake, tls_probe
from claudegate.probes.verdict import Failed, Skipped, describe_error
from claudegate.probes.wire import Endpoint, endpoint, tls_context
from claudegate.redact import Secret, redact

__all__ = [
    "CHECK_NAMES",
    "Check",
    "SmokeReport",
    "SmokeTarget",
    "run_smoke",
]

PASS, FAIL, SKIP = "pass", "fail", "skip"

CHECK_NAMES: tuple[str, ...] = (
    "tls.handshake",
    "tls.certificate",
    "http.redirect",
    "auth.required",
    "api.models",
    "headers.security",
    "api.count_tokens",
    "api.stream",
    "stream.unbuffered",
    "limits.body",
    "allowlist.enforced",
    "limits.burst",
)

DETAIL_MAX = 400


# What a deployment with deploy.yaml's defaults promises (the knob table).
_DEFAULTS = probe_defaults()


@dataclass(frozen=True)
class SmokeTarget:
    """Where the gateway is and what to expect of it."""

    base_url: str  # e.g. "https://gw.example.com" (port optional; a path prefix is kept)
    # IP/host to actually connect to (DNS may not point there yet, or tests);
    # None = resolve base_url's host.
    connect_host: str | None = None
    https_port: int = 443  # used when base_url names no port
    http_port: int = 80  # 0 = no HTTP listener to check
    # An extra CA to trust besides the system store (internal-ca mode, pebble in tests); None = system store only.
    ca_file: Path | None = None
    client_key: str | Secret | None = field(default=None, repr=False)  # a gateway client key; never printed
    model: str = "claude-haiku-4-5"
    max_body_bytes: int = _DEFAULTS["max_body_bytes"]
    burst: int = 0  # requests fired to provoke a 429 (0 = skip that check)
    allowlist_probe: bool = False  # only where testable: needs probe_source
    cert_min_days: int = 7  # the certificate must stay valid at least this long
    # A local address outside the allowlist to send the allowlist probe from
    # (e.g. 127.0.0.2 when the gateway is on this machine).
    probe_source: str | None = None

    def endpoint(self) -> Endpoint:
        """Where to connect, parsed from ``base_url`` and the ports (ConfigError for a bad URL)."""
        return endpoint(
            self.base_url, connect_host=self.connect_host, https_port=self.https_port,
            http_port=self.http_port, what="smoke test base_url",
        )  # fmt: skip


@dataclass(frozen=True)
class Check:
    name: str  # stable id, one of CHECK_NAMES
    status: str  # "pass" | "fail" | "skip"
    detail: str  # one line for people; never contains the client key


@dataclass(frozen=True)
class SmokeReport:
    checks: tuple[Check, ...]
    base_url: str = ""
    elapsed: float = 0.0  # seconds the whole run took

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count against it)."""
        return all(c.status != FAIL for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.status == FAIL)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.status for c in self.checks)
        return {status: counted.get(status, 0) for status in (PASS, FAIL, SKIP)}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "elapsed_seconds": round(self.elapsed, 3),
            "counts": self.counts(),
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
        }

    def table(self) -> str:
        """A plain text table for people, ending with a one-line summary."""
        rows = [("CHECK", "RESULT", "DETAIL")] + [(c.name, c.status.upper(), c.detail) for c in self.checks]
        name_w = max(len(r[0]) for r in rows)
        status_w = max(len(r[1]) for r in rows)
        lines = [f"{n:<{name_w}}  {s:<{status_w}}  {d}".rstrip() for n, s, d in rows]
        lines.insert(1, f"{'-' * name_w}  {'-' * status_w}  {'-' * 6}")
        counts = self.counts()
        verdict = "OK" if self.ok else "FAILED"
        lines.append(
            f"{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"
            + (f" ({self.base_url})" if self.base_url else "")
        )
        return "\n".join(lines)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


# --------------------------------------------------------------------------------------
# The run


def run_smoke(
    target: SmokeTarget, *, timeout: float = 15.0, progress: Callable[[Check], None] | None = None
) -> SmokeReport:
    """Run every check against ``target``; never raises for a failing gateway, only for a bad target.

    ``timeout`` bounds each network operation (connect, each read, each write),
    not the whole run. ``progress`` is called with each check as it finishes.
    """
    ep = target.endpoint()
    key = target.client_key.reveal() if isinstance(target.client_key, Secret) else target.client_key
    secret_values = [key]
    checks: list[Check] = []
    started = time.monotonic()

    def record(name: str, status: str, detail: str) -> None:
        check = Check(name, status, _one_line(redact(detail, secret_values)))
        checks.append(check)
        if progress is not None:
            progress(check)

    cancel = _controls().cancel

    def run(name: str, fn: Callable[[], str]) -> None:
        cancel.raise_if_cancelled(step="smoke")
        try:
            detail = fn()
        except Cancelled:
            raise
        except Skipped as exc:
            record(name, SKIP, str(exc))
        except Failed as exc:
            record(name, FAIL, str(exc))
        except Exception as exc:  # a check must never take the run down; say what happened instead
            record(name, FAIL, describe_error(exc))
        else:
            record(name, PASS, detail)

    def skip_all(names: tuple[str, ...], reason: str) -> None:
        for name in names:
            record(name, SKIP, reason)

    tls = tls_probe(ep, target.ca_file, timeout)
    run("tls.handshake", lambda: check_handshake(tls, ep))
    run("tls.certificate", lambda: check_certificate(tls, ep, target.ca_file, target.cert_min_days))
    ctx = tls_context(target.ca_file)
    run("http.redirect", lambda: check_redirect(ep, ctx, timeout))

    https_checks = CHECK_NAMES[3:]
    if not tls.connected:
        skip_all(https_checks, "HTTPS is not reachable (see tls.handshake)")
    elif not tls.verified:
        skip_all(https_checks, "no verified HTTPS connection (see tls.certificate)")
    else:
        seen = Seen()
        no_key = "needs a client key (none given)"
        with client(ep, ctx, timeout) as http:
            run("auth.required", lambda: check_auth(ep, http, seen))
            if key:
                run("api.models", lambda: check_models(ep, http, key, target.model, seen))
            else:
                record("api.models", SKIP, no_key)
            run("headers.security", lambda: check_headers(seen))
            if key:
                run("api.count_tokens", lambda: check_count_tokens(ep, http, key, target.model))
                run("api.stream", lambda: check_stream(ep, http, key, target.model, 4 * timeout))
                run("stream.unbuffered", lambda: check_pace(ep, http, key, 2 * timeout))
            else:
                record("api.count_tokens", SKIP, no_key)
                record("api.stream", SKIP, no_key)
                record("stream.unbuffered", SKIP, no_key)
        run(
            "limits.body",
            lambda: check_body_limit(ep, ctx, target.model, target.max_body_bytes, timeout),
        )
        if target.allowlist_probe:
            run(
                "allowlist.enforced",
                lambda: check_allowlist(ep, ctx, timeout, target.probe_source, tls.local_address),
            )
        else:
            record("allowlist.enforced", SKIP, "not requested (allowlist_probe is off)")
        # Last: it empties the rate-limit buckets the other checks need.
        run("limits.burst", lambda: check_burst(ep, ctx, timeout, target.burst))

    return SmokeReport(tuple(checks), base_url=target.base_url, elapsed=time.monotonic() - started)
