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
                        way buffers events, whatever the upstream's pace
``limits.body``         a body one byte over ``max_body_bytes`` gets 413 ``request_too_large``
``allowlist.enforced``  (only with ``allowlist_probe``) a request sent from ``probe_source`` is refused
``limits.burst``        ``burst`` quick requests provoke a 429 ``rate_limit_error`` with ``retry-after``

It connects to ``connect_host`` when given (the domain need not resolve yet,
or resolve here) while the domain is used for SNI, certificate verification
and the ``Host`` header. The client key is sent only in ``x-api-key`` headers;
every text the report holds is passed through :func:`claudegate.redact.redact`.

This module is core code: it imports no UI library.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import ipaddress
import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
from cryptography import x509

from claudegate.control import cancel as _cancel
from claudegate.control.controls import current as _controls
from claudegate.errors import Cancelled
from claudegate.knobs import probe_defaults
from claudegate.probes.wire import ANTHROPIC_VERSION, USER_AGENT, endpoint, tls_context
from claudegate.probes.wire import Endpoint as _Endpoint
from claudegate.probes.wire import poll as _poll
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

HSTS_MIN_AGE = 15_552_000  # 180 days
# The gateway's paced stream (see claudegate_gateway.routes): its events leave
# PACE_INTERVAL apart; arriving closer together than half that, they were held.
PACE_PATH = "/v1/claudegate/pace"
PACE_EVENTS = 6
PACE_INTERVAL = 0.1
# How long to wait for the server to refuse an oversize body from its headers
# alone before starting to upload it.
EARLY_ANSWER_WAIT = 1.0
# The most a check waits out a 429 left over from an earlier run before retrying once.
MAX_RETRY_WAIT = 5.0
BURST_CONCURRENCY = 16
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


# --------------------------------------------------------------------------------------
# Where to connect


def _endpoint(target: SmokeTarget) -> _Endpoint:
    return endpoint(
        target.base_url, connect_host=target.connect_host, https_port=target.https_port,
        http_port=target.http_port, what="smoke test base_url",
    )  # fmt: skip


def _ssl_context(ca_file: Path | None, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """Verifying client context: the system store plus ``ca_file``; TLS 1.2 at least; hostname checks on."""
    return tls_context(ca_file, alpn=alpn)


class _ConnectTo(httpx.BaseTransport):
    """Send requests for ``domain`` to ``connect_host``, keeping SNI and Host on the domain."""

    def __init__(self, inner: httpx.BaseTransport, domain: str, connect_host: str) -> None:
        self._inner = inner
        self._domain = domain
        self._connect_host = connect_host

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self._domain:
            # The Host header was set from the original URL when the request was built.
            request.url = request.url.copy_with(host=self._connect_host)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": self._domain}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _client(
    ep: _Endpoint,
    ctx: ssl.SSLContext,
    timeout: float,
    *,
    local_address: str | None = None,
    max_connections: int = 4,
) -> httpx.Client:
    inner = httpx.HTTPTransport(
        verify=ctx,
        local_address=local_address,
        retries=0,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    return httpx.Client(
        transport=_ConnectTo(inner, ep.domain, ep.connect_host),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the smoke test talks to the gateway itself
        headers={"user-agent": USER_AGENT, "anthropic-version": ANTHROPIC_VERSION},
    )


# --------------------------------------------------------------------------------------
# Helpers shared by checks


class _Failed(Exception):
    """A check's verdict: fail with this detail."""


class _Skipped(Exception):
    """A check's verdict: skip with this detail."""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def _snippet(response: httpx.Response, limit: int = 120) -> str:
    try:
        text = response.text
    except Exception:  # undecodable or unread body
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = exc.verify_message
    elif isinstance(exc, httpx.TimeoutException):
        text = f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def anthropic_error_problem(response: httpx.Response, status: int, error_type: str) -> str | None:
    """None when ``response`` is ``status`` with Anthropic's error JSON of ``error_type``, else what is wrong."""
    return _error_problem(
        response.status_code, response.headers.get("content-type", ""), response.content, status, error_type
    )


def _error_problem(
    got_status: int, content_type: str, body: bytes, status: int, error_type: str
) -> str | None:
    if got_status != status:
        return f"status {got_status}, expected {status}"
    if "json" not in content_type.lower():
        return f"{status} but content-type {content_type or 'missing'}, not JSON"
    try:
        data = json.loads(body)
    except ValueError:
        return f"{status} but the body is not JSON"
    if not isinstance(data, dict) or data.get("type") != "error":
        return f'{status} but the body has no "type":"error"'
    err = data.get("error")
    if not isinstance(err, dict) or err.get("type") != error_type:
        got = err.get("type") if isinstance(err, dict) else None
        return f"{status} but error.type is {got!r}, expected {error_type!r}"
    if not isinstance(err.get("message"), str) or not err["message"]:
        return f"{status} {error_type} without an error.message"
    if not isinstance(data.get("request_id"), str) or not data["request_id"]:
        return f"{status} {error_type} without a request_id"
    return None


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return float(value)
    except ValueError:
        return None


def _send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; a 429 left from an earlier burst is waited out once (a few seconds at most)."""
    response = client.request(method, url, **kwargs)
    if response.status_code == 429:
        wait = _retry_after(response)
        if wait is not None and wait <= MAX_RETRY_WAIT:
            _cancel.sleep(max(wait, 0.1), _controls().cancel)
            response = client.request(method, url, **kwargs)
    return response


# --------------------------------------------------------------------------------------
# TLS


@dataclass
class _TLSResult:
    connected: bool = False
    error: str = ""  # why there was no handshake at all
    verified: bool = False
    verify_error: str = ""  # why the verified handshake failed (certificate problems)
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    leaf_der: bytes | None = None
    local_address: str | None = None  # our address as the server saw it (for the allowlist probe)


def _tls_probe(ep: _Endpoint, ca_file: Path | None, timeout: float) -> _TLSResult:
    result = _TLSResult()
    verifying = _ssl_context(ca_file, ("h2", "http/1.1"))
    try:
        with _tls_socket(ep, verifying, timeout) as tls:
            result.connected = result.verified = True
            _record(result, tls)
        return result
    except ssl.SSLCertVerificationError as exc:
        result.connected = True
        result.verify_error = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        result.error = _describe_error(exc)
        return result
    # The chain did not verify: look at what is served anyway, to say what is wrong with it.
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    unverified.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with _tls_socket(ep, unverified, timeout) as tls:
            _record(result, tls)
    except (OSError, ssl.SSLError) as exc:
        result.error = _describe_error(exc)
        result.connected = False
    return result


def _record(result: _TLSResult, tls: ssl.SSLSocket) -> None:
    result.version = tls.version()
    cipher = tls.cipher()
    result.cipher = cipher[0] if cipher else None
    result.alpn = tls.selected_alpn_protocol()
    result.leaf_der = tls.getpeercert(binary_form=True)
    with contextlib.suppress(OSError):
        result.local_address = str(tls.getsockname()[0])


@contextlib.contextmanager
def _tls_socket(ep: _Endpoint, ctx: ssl.SSLContext, timeout: float) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection((ep.connect_host, ep.https_port), timeout=timeout)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=ep.domain)
    except BaseException:
        raw.close()
        raise
    try:
        yield tls
    finally:
        tls.close()


def _check_handshake(tls: _TLSResult, ep: _Endpoint) -> str:
    where = f"{ep.connect_host}:{ep.https_port}"
    if not tls.connected:
        raise _Failed(f"no TLS handshake with {where} (SNI {ep.domain}): {tls.error}")
    if tls.version not in ("TLSv1.2", "TLSv1.3"):
        raise _Failed(f"negotiated {tls.version}; TLS 1.2 or later is required")
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


def _check_certificate(
    tls: _TLSResult, ep: _Endpoint, ca_file: Path | None, min_days: int, now: dt.datetime | None = None
) -> str:
    if not tls.connected or tls.leaf_der is None:
        raise _Skipped("no certificate to look at: the TLS handshake failed (see tls.handshake)")
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
    # cannot have cert_min_days left: it must only not be past its renewal
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
        raise _Failed("; ".join(problems))
    return f"verified against {trust} for {ep.domain} (SAN {names}); expires {not_after:%Y-%m-%d}, {days_left} days left"


# --------------------------------------------------------------------------------------
# HTTP checks


def _check_redirect(ep: _Endpoint, ctx: ssl.SSLContext, timeout: float) -> str:
    if ep.http_port == 0:
        raise _Skipped("no HTTP port given (http_port is 0)")
    path = "/v1/models?claudegate-smoke=1"
    url = ep.http_url(path)
    with _client(ep, ctx, timeout) as client:
        try:
            response = client.get(url)
        except httpx.TransportError as exc:
            raise _Failed(
                f"nothing answers on {ep.connect_host}:{ep.http_port}: {_describe_error(exc)}"
            ) from None
    location = response.headers.get("location", "")
    if response.status_code not in (301, 308):
        extra = f" to {location}" if location else ""
        raise _Failed(f"GET {url} answered {response.status_code}{extra}, expected a 301 or 308 to https")
    target = urlsplit(location)
    want = urlsplit(ep.https_url(path))
    try:
        target_port = target.port or (443 if target.scheme == "https" else None)
    except ValueError:
        target_port = None
    if target.scheme != "https":
        raise _Failed(f"{response.status_code} to {location!r}, which is not https")
    if (target.hostname or "").lower() != ep.domain:
        raise _Failed(f"{response.status_code} to {location!r}: another host than {ep.domain}")
    if target_port != ep.https_port:
        raise _Failed(f"{response.status_code} to {location!r}: port {target_port}, expected {ep.https_port}")
    if (target.path, target.query) != (want.path, want.query):
        raise _Failed(f"{response.status_code} to {location!r}: the path and query were not kept")
    return f"{response.status_code} {url} -> {location}"


@dataclass
class _Seen:
    """API responses kept for the headers check."""

    responses: list[tuple[str, httpx.Response]] = field(default_factory=list)


def _check_auth(ep: _Endpoint, client: httpx.Client, seen: _Seen) -> str:
    url = ep.https_url("/v1/models")
    bogus = "sk-cg-smoke-" + secrets.token_urlsafe(24)  # a key nobody issued
    problems = []
    for label, headers in (("without a key", {}), ("with an unknown key", {"x-api-key": bogus})):
        response = _send(client, "GET", url, headers=headers)
        seen.responses.append((f"401 {label}", response))
        problem = anthropic_error_problem(response, 401, "authentication_error")
        if problem:
            problems.append(f"GET /v1/models {label}: {problem} {_snippet(response)}".strip())
    if problems:
        raise _Failed("; ".join(problems))
    return "401 authentication_error (Anthropic JSON with request_id) without a key and with an unknown key"


def _auth_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def _check_models(ep: _Endpoint, client: httpx.Client, key: str, model: str, seen: _Seen) -> str:
    response = _send(client, "GET", ep.https_url("/v1/models"), headers=_auth_headers(key))
    seen.responses.append(("200 /v1/models", response))
    if response.status_code != 200:
        raise _Failed(f"GET /v1/models with the client key: {response.status_code} {_snippet(response)}")
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        data = None
    if not isinstance(data, list):
        raise _Failed(f"GET /v1/models: 200 but no model list in the body: {_snippet(response)}")
    ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
    # Aliases such as claude-haiku-4-5 name dated ids such as claude-haiku-4-5-20251001.
    listed = "listed" if any(i == model or i.startswith(model + "-") for i in ids) else "not listed"
    return f"200, {len(data)} models ({model} {listed})"


_VERSION_IN_SERVER = re.compile(r"/\s*v?\d|\d+\.\d+")


def header_problems(headers: httpx.Headers) -> list[str]:
    """What the security headers of one response lack (empty when all are right)."""
    problems = []
    hsts = headers.get("strict-transport-security")
    if hsts is None:
        problems.append("no strict-transport-security")
    else:
        match = re.search(r"max-age\s*=\s*\"?(\d+)", hsts, re.IGNORECASE)
        if not match:
            problems.append(f"strict-transport-security without max-age ({hsts!r})")
        elif int(match.group(1)) < HSTS_MIN_AGE:
            problems.append(f"strict-transport-security max-age={match.group(1)} < {HSTS_MIN_AGE}")
    nosniff = headers.get_list("x-content-type-options")
    if [v.strip().lower() for v in nosniff] != ["nosniff"]:
        problems.append(f"x-content-type-options is {', '.join(nosniff) or 'missing'}, expected nosniff")
    directives = {
        d.strip().lower().split("=")[0] for v in headers.get_list("cache-control") for d in v.split(",")
    }
    if "no-store" not in directives:
        problems.append(f"cache-control is {headers.get('cache-control') or 'missing'}, needs no-store")
    if "x-powered-by" in headers:
        problems.append(f"x-powered-by present ({headers['x-powered-by']!r})")
    server = headers.get("server")
    if server is not None and _VERSION_IN_SERVER.search(server):
        problems.append(f"server header reveals a version ({server!r})")
    return problems


def _check_headers(seen: _Seen) -> str:
    if not seen.responses:
        raise _Skipped("no API response to look at (see auth.required and api.models)")
    problems = []
    for label, response in seen.responses:
        found = header_problems(response.headers)
        if found:
            problems.append(f"{label}: {', '.join(found)}")
    if problems:
        raise _Failed("; ".join(problems))
    first = seen.responses[0][1].headers
    labels = sorted({label.split(" ")[0] for label, _ in seen.responses})
    return (
        f"{first.get('strict-transport-security')}; nosniff; no-store; no x-powered-by; "
        f"server {first.get('server', '(none)')!r} (on the {' and '.join(labels)} responses)"
    )


def _check_count_tokens(ep: _Endpoint, client: httpx.Client, key: str, model: str) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello from the claudegate smoke test."}],
    }
    response = _send(
        client, "POST", ep.https_url("/v1/messages/count_tokens"), headers=_auth_headers(key), json=body
    )
    if response.status_code != 200:
        raise _Failed(f"POST /v1/messages/count_tokens: {response.status_code} {_snippet(response)}")
    try:
        tokens = response.json().get("input_tokens")
    except (ValueError, AttributeError):
        tokens = None
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise _Failed(f"POST /v1/messages/count_tokens: 200 without input_tokens: {_snippet(response)}")
    return f"200, input_tokens={tokens}"


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    arrived: float  # seconds since the request was sent


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed bytes, get complete events."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder_pending = b""
        self._cr_pending = ""

    def feed(self, chunk: bytes, arrived: float) -> list[SSEEvent]:
        data = self._decoder_pending + chunk
        try:
            text = data.decode("utf-8")
            self._decoder_pending = b""
        except UnicodeDecodeError as exc:  # a character split across chunks
            text = data[: exc.start].decode("utf-8")
            self._decoder_pending = data[exc.start :]
        text = self._cr_pending + text
        # A CR at the end may be the first half of a CRLF split across chunks: keep it for later.
        self._cr_pending = "\r" if text.endswith("\r") else ""
        text = text[:-1] if self._cr_pending else text
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            event, lines = "message", []
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    lines.append(value)
            if lines or event != "message":
                events.append(SSEEvent(event, "\n".join(lines), arrived))
        return events


def stream_problems(events: list[SSEEvent]) -> list[str]:
    """What is wrong with the order of an Anthropic message stream (empty when it is right)."""
    names = [e.event for e in events if e.event != "ping"]
    for e in events:
        if e.event == "error":
            try:
                err = json.loads(e.data).get("error", {})
                return [f"the stream carried an error event: {err.get('type')}: {err.get('message')}"]
            except (ValueError, AttributeError):
                return ["the stream carried an error event"]
        try:
            payload = json.loads(e.data)
        except ValueError:
            return [f"event {e.event!r} has data that is not JSON"]
        if not isinstance(payload, dict) or payload.get("type") != e.event:
            return [f"event {e.event!r} has data of another type"]
    if not names:
        return ["no events"]
    problems = []
    if names[0] != "message_start":
        problems.append(f"first event is {names[0]}, not message_start")
    if names[-1] != "message_stop":
        problems.append(f"last event is {names[-1]}, not message_stop (the stream was cut short)")
    if names.count("message_start") != 1 or names.count("message_stop") != 1:
        problems.append("message_start and message_stop must come exactly once")
    allowed = {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
    unknown = sorted(set(names) - allowed)
    if unknown:
        problems.append(f"unexpected events: {', '.join(unknown)}")
    if "message_delta" not in names:
        problems.append("no message_delta")
    elif "message_stop" in names and names.index("message_delta") > names.index("message_stop"):
        problems.append("message_delta after message_stop")
    if "content_block_delta" not in names:
        problems.append("no content_block_delta")
    return problems


def _check_stream(ep: _Endpoint, client: httpx.Client, key: str, model: str, deadline: float) -> str:
    body = {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Count from 1 to 20, separated by spaces."}],
    }
    headers = {**_auth_headers(key), "accept": "text/event-stream", "accept-encoding": "identity"}
    parser = SSEParser()
    events: list[SSEEvent] = []
    started = time.monotonic()
    with client.stream("POST", ep.https_url("/v1/messages"), headers=headers, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise _Failed(f"POST /v1/messages (stream): {response.status_code} {_snippet(response)}")
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise _Failed(
                f"POST /v1/messages (stream): content-type {ctype or 'missing'}, not text/event-stream"
            )
        try:
            for chunk in response.iter_raw():
                arrived = time.monotonic() - started
                events.extend(parser.feed(chunk, arrived))
                if arrived > deadline:
                    raise _Failed(f"the stream was still going after {arrived:.0f} s ({len(events)} events)")
        except httpx.TransportError as exc:
            seen = " ".join(e.event for e in events if e.event != "ping")[-200:]
            raise _Failed(
                f"the stream broke after {len(events)} events ({seen}): {_describe_error(exc)}"
            ) from None
    problems = stream_problems(events)
    if problems:
        raise _Failed("; ".join(problems))
    first = next(e for e in events if e.event == "message_start")
    last = next(e for e in events if e.event == "message_stop")
    # No judgement on timing here: a fast upstream may send everything at once.
    # Buffering on the way is stream.unbuffered's business, at a pace the stack sets.
    return (
        f"{len(events)} events in order; message_start after {first.arrived * 1000:.0f} ms, "
        f"message_stop after {last.arrived * 1000:.0f} ms"
    )


def _check_pace(ep: _Endpoint, client: httpx.Client, key: str, deadline: float) -> str:
    headers = {**_auth_headers(key), "accept": "text/event-stream", "accept-encoding": "identity"}
    parser = SSEParser()
    events: list[SSEEvent] = []
    started = time.monotonic()
    with client.stream("GET", ep.https_url(PACE_PATH), headers=headers) as response:
        if response.status_code != 200:
            response.read()
            hint = {
                403: " (the smoke client's scopes predate it: deploy again to renew them)",
                404: " (the gateway is older than this claudegate: deploy again)",
            }.get(response.status_code, "")
            raise _Failed(f"GET {PACE_PATH}: {response.status_code} {_snippet(response)}{hint}")
        try:
            for chunk in response.iter_raw():
                arrived = time.monotonic() - started
                events.extend(e for e in parser.feed(chunk, arrived) if e.event == "claudegate_pace")
                if arrived > deadline:
                    raise _Failed(f"the paced stream was still going after {arrived:.0f} s")
        except httpx.TransportError as exc:
            raise _Failed(f"the paced stream broke after {len(events)} events: {_describe_error(exc)}") from None
    if len(events) != PACE_EVENTS:
        raise _Failed(f"the paced stream carried {len(events)} events, {PACE_EVENTS} were sent")
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(events)]
    held = sum(gap < PACE_INTERVAL / 2 for gap in gaps)
    if held > len(gaps) // 2:
        spread = events[-1].arrived - events[0].arrived
        raise _Failed(
            f"events sent {PACE_INTERVAL * 1000:.0f} ms apart arrived within {spread * 1000:.0f} ms of each other "
            f"({held} of {len(gaps)} gaps under {PACE_INTERVAL * 500:.0f} ms): the stream is buffered somewhere "
            "on the way (e.g. proxy_buffering on in nginx)"
        )
    return (
        f"{PACE_EVENTS} events sent {PACE_INTERVAL * 1000:.0f} ms apart arrived "
        f"{min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms apart: not buffered"
    )


# --------------------------------------------------------------------------------------
# The oversize body: a raw HTTP/1.1 exchange, so the answer can be read before the upload ends


def _oversize_chunks(total: int, model: str, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """A JSON messages body of exactly ``total`` bytes (padding in the user text), made lazily."""
    head = json.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": ""}]})
    prefix, suffix = head[:-4].encode(), head[-4:].encode()  # split just inside the empty "content" string
    padding = total - len(prefix) - len(suffix)
    if padding < 0:
        yield (prefix + suffix)[:total]
        return
    yield prefix
    block = b"a" * chunk_size
    while padding > 0:
        n = min(padding, chunk_size)
        yield block[:n]
        padding -= n
    yield suffix


@dataclass
class _RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    total: int


def _post_oversize(
    ep: _Endpoint, ca_file: Path | None, model: str, size: int, timeout: float
) -> _RawResponse:
    """POST ``size`` bytes, stopping the upload as soon as the server answers (or stops reading)."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=f"{ep.prefix}/v1/messages",
        headers=[
            ("Host", ep.host_header),
            ("User-Agent", USER_AGENT),
            ("anthropic-version", ANTHROPIC_VERSION),
            ("Content-Type", "application/json"),
            ("Content-Length", str(size)),
            ("Connection", "close"),
        ],
    )
    sent = 0
    with _tls_socket(ep, _ssl_context(ca_file), timeout) as sock:
        sock.sendall(conn.send(request))
        # A server that checks Content-Length answers from the headers alone: give it a moment.
        early = _poll(sock, min(EARLY_ANSWER_WAIT, timeout))
        if early is None:
            try:
                for chunk in _oversize_chunks(size, model):
                    early = _poll(sock, 0)
                    if early is not None:
                        break
                    sock.sendall(conn.send(h11.Data(data=chunk)))
                    sent += len(chunk)
                else:
                    sock.sendall(conn.send(h11.EndOfMessage()))
            except (OSError, ssl.SSLError):
                pass  # the server stopped reading, typically after answering: read what it said
        return _read_response(conn, sock, early, sent, size)


def _read_response(
    conn: h11.Connection, sock: ssl.SSLSocket, first: bytes | None, sent: int, total: int
) -> _RawResponse:
    status, headers, body = 0, {}, b""
    after = f"after {sent} of {total} bytes"
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if status:
                break  # closed in the middle of the body: the status and headers are what matter
            raise _Failed(f"no valid HTTP answer {after}: {exc}") from None
        if event is h11.NEED_DATA:
            if first is not None:
                data, first = first, None
            else:
                try:
                    data = sock.recv(65536)
                except (OSError, ssl.SSLError) as exc:
                    if status:
                        break  # the headers (and perhaps some body) are in: good enough
                    raise _Failed(
                        f"the connection was dropped without an answer {after} ({_describe_error(exc)})"
                    ) from None
            if not data and status == 0:
                raise _Failed(f"the connection was closed without an answer {after}")
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    return _RawResponse(status, headers, body, sent, total)


def _check_body_limit(ep: _Endpoint, ca_file: Path | None, model: str, max_body: int, timeout: float) -> str:
    size = max_body + 1
    answer = _post_oversize(ep, ca_file, model, size, timeout)
    problem = _error_problem(
        answer.status, answer.headers.get("content-type", ""), answer.body, 413, "request_too_large"
    )
    if problem:
        text = " ".join(answer.body[:120].decode("utf-8", "replace").split())
        raise _Failed(f"POST /v1/messages with {size} bytes: {problem} {text}".strip())
    if answer.sent < answer.total:
        when = f"after {answer.sent} of {answer.total} bytes were sent"
    else:
        when = f"after the whole {answer.total}-byte body"
    return f"413 request_too_large for {size} bytes (max_body_bytes + 1), {when}"


# --------------------------------------------------------------------------------------
# The allowlist and the burst


def _check_allowlist(
    ep: _Endpoint, ctx: ssl.SSLContext, timeout: float, source: str | None, own_address: str | None
) -> str:
    if source is None:
        raise _Skipped("allowlist_probe needs probe_source: a local address outside the allowlist")
    headers: dict[str, str] = {}
    if own_address:
        # Naming an allowed address (our own) in forwarding headers must not help.
        headers = {
            "x-forwarded-for": own_address,
            "x-real-ip": own_address,
            "forwarded": f"for={own_address}",
        }
    with _client(ep, ctx, timeout, local_address=source) as client:
        try:
            response = client.get(ep.https_url("/v1/models"), headers=headers)
        except httpx.ConnectError as exc:
            cause = _root_cause(exc)
            if isinstance(cause, OSError) and cause.errno == errno.EADDRNOTAVAIL:
                raise _Failed(f"cannot send from {source}: not an address of this machine") from None
            if isinstance(cause, ConnectionRefusedError):
                return f"a connection from {source} was refused"
            raise _Failed(f"the probe from {source} failed: {_describe_error(exc)}") from None
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            return f"a request from {source} was cut off ({_describe_error(exc)})"
    problem = anthropic_error_problem(response, 403, "permission_error")
    if problem:
        raise _Failed(f"a request from {source} (outside the allowlist) was not refused: {problem}")
    spoof = " even when forwarding headers named an allowed address" if headers else ""
    return f"403 permission_error from {source}{spoof}"


def _check_burst(ep: _Endpoint, ctx: ssl.SSLContext, timeout: float, burst: int) -> str:
    if burst <= 0:
        raise _Skipped("burst is 0: set burst to the number of requests that must provoke a 429")
    url = ep.https_url("/v1/models")  # without a key: cheap, and never reaches the upstream
    lock = threading.Lock()
    done = threading.Event()
    state: dict[str, Any] = {"fired": 0, "codes": Counter(), "good": None, "bad": None, "errors": Counter()}

    def worker(client: httpx.Client) -> None:
        while not done.is_set():
            with lock:
                if state["fired"] >= burst:
                    return
                state["fired"] += 1
            try:
                response = client.get(url)
            except httpx.TransportError as exc:
                with lock:
                    state["errors"][type(exc).__name__] += 1
                continue
            with lock:
                state["codes"][response.status_code] += 1
                if response.status_code != 429:
                    continue
                problem = anthropic_error_problem(response, 429, "rate_limit_error")
                if problem is None and not response.headers.get("retry-after", "").strip():
                    problem = "429 without a retry-after header"
                if problem is None:
                    state["good"] = (state["fired"], response.headers["retry-after"].strip())
                    done.set()
                elif state["bad"] is None:
                    state["bad"] = problem

    concurrency = max(1, min(burst, BURST_CONCURRENCY))
    started = time.monotonic()
    with (
        _client(ep, ctx, timeout, max_connections=concurrency) as client,
        ThreadPoolExecutor(concurrency, thread_name_prefix="smoke-burst") as pool,
    ):
        for future in [pool.submit(worker, client) for _ in range(concurrency)]:
            future.result()
    elapsed = time.monotonic() - started
    codes = ", ".join(f"{code}x{n}" for code, n in sorted(state["codes"].items()))
    errors = ", ".join(f"{name}x{n}" for name, n in sorted(state["errors"].items()))
    seen = codes + (f"; errors {errors}" if errors else "")
    if state["good"] is None:
        if state["bad"]:
            raise _Failed(f"{state['fired']} requests got 429 but not a proper one: {state['bad']} ({seen})")
        raise _Failed(f"no 429 in {state['fired']} requests within {elapsed:.1f} s ({seen or 'no answers'})")
    fired, retry = state["good"]
    return (
        f"429 rate_limit_error with retry-after {retry} within {fired} requests in {elapsed:.1f} s ({seen})"
    )


# --------------------------------------------------------------------------------------
# The run


def run_smoke(
    target: SmokeTarget, *, timeout: float = 15.0, progress: Callable[[Check], None] | None = None
) -> SmokeReport:
    """Run every check against ``target``; never raises for a failing gateway, only for a bad target.

    ``timeout`` bounds each network operation (connect, each read, each write),
    not the whole run. ``progress`` is called with each check as it finishes.
    """
    ep = _endpoint(target)
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
        except _Skipped as exc:
            record(name, SKIP, str(exc))
        except _Failed as exc:
            record(name, FAIL, str(exc))
        except Exception as exc:  # a check must never take the run down; say what happened instead
            record(name, FAIL, _describe_error(exc))
        else:
            record(name, PASS, detail)

    def skip_all(names: tuple[str, ...], reason: str) -> None:
        for name in names:
            record(name, SKIP, reason)

    tls = _tls_probe(ep, target.ca_file, timeout)
    run("tls.handshake", lambda: _check_handshake(tls, ep))
    run("tls.certificate", lambda: _check_certificate(tls, ep, target.ca_file, target.cert_min_days))
    ctx = _ssl_context(target.ca_file)
    run("http.redirect", lambda: _check_redirect(ep, ctx, timeout))

    https_checks = CHECK_NAMES[3:]
    if not tls.connected:
        skip_all(https_checks, "HTTPS is not reachable (see tls.handshake)")
    elif not tls.verified:
        skip_all(https_checks, "no verified HTTPS connection (see tls.certificate)")
    else:
        seen = _Seen()
        no_key = "needs a client key (none given)"
        with _client(ep, ctx, timeout) as client:
            run("auth.required", lambda: _check_auth(ep, client, seen))
            if key:
                run("api.models", lambda: _check_models(ep, client, key, target.model, seen))
            else:
                record("api.models", SKIP, no_key)
            run("headers.security", lambda: _check_headers(seen))
            if key:
                run("api.count_tokens", lambda: _check_count_tokens(ep, client, key, target.model))
                run("api.stream", lambda: _check_stream(ep, client, key, target.model, 4 * timeout))
                run("stream.unbuffered", lambda: _check_pace(ep, client, key, 2 * timeout))
            else:
                record("api.count_tokens", SKIP, no_key)
                record("api.stream", SKIP, no_key)
                record("stream.unbuffered", SKIP, no_key)
        run(
            "limits.body",
            lambda: _check_body_limit(ep, target.ca_file, target.model, target.max_body_bytes, timeout),
        )
        if target.allowlist_probe:
            run(
                "allowlist.enforced",
                lambda: _check_allowlist(ep, ctx, timeout, target.probe_source, tls.local_address),
            )
        else:
            record("allowlist.enforced", SKIP, "not requested (allowlist_probe is off)")
        # Last: it empties the rate-limit buckets the other checks need.
        run("limits.burst", lambda: _check_burst(ep, ctx, timeout, target.burst))

    return SmokeReport(tuple(checks), base_url=target.base_url, elapsed=time.monotonic() - started)
