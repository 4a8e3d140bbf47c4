"""TLS: versions and suites offered, the certificate, HSTS, and the HTTP redirect."""

from __future__ import annotations

import ssl
import warnings

import httpx

from claudegate.audit.context import Run, probe
from claudegate.audit.result import ProbeResult
from claudegate.probes.http import HSTS_MIN_AGE, header_problems
from claudegate.probes.tls import check_certificate, tls_probe
from claudegate.probes.verdict import Failed, Skipped
from claudegate.probes.wire import connect

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# TLS 1.2 suites a hardened server must refuse: CBC/SHA1 (not AEAD), and static
# RSA key exchange (no forward secrecy).
NON_AEAD = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:" \
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:AES128-SHA:AES256-SHA:DES-CBC3-SHA"
NON_FS = "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256"


def _offer(run: Run, version: str, ciphers: str | None = None) -> tuple[bool | None, str]:
    """(True: handshake done, False: the server refused, None: this machine cannot offer it), detail."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is another probe's business
    try:
        with warnings.catch_warnings():  # offering TLS 1.0/1.1 is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = _VERSIONS[version]
        # Level 0 so that this side can still offer what the server should refuse.
        ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        return None, f"this machine's OpenSSL cannot offer {version}{' with ' + ciphers if ciphers else ''}: {exc}"
    try:
        with connect(run.ep, ctx, run.timeout) as tls:
            assert isinstance(tls, ssl.SSLSocket)
            cipher = tls.cipher()
            return True, f"{tls.version()} {cipher[0] if cipher else ''}".strip()
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", "") or str(exc)
        if reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "UNSUPPORTED_PROTOCOL") and \
                "alert" not in str(exc):
            return None, f"this machine's OpenSSL refused to offer {version}: {reason}"
        return False, f"refused ({reason})"
    except OSError as exc:
        return False, f"connection closed ({type(exc).__name__})"


def protocols(run: Run) -> ProbeResult:
    p = probe("tls", "tls.protocols", "tls.profile (nginx ssl_protocols in assets/nginx)", run)
    modern = run.target.tls_profile == "modern"
    wanted = {"TLSv1": False, "TLSv1.1": False, "TLSv1.2": not modern, "TLSv1.3": True}
    untestable = []
    for version, should in wanted.items():
        done, detail = _offer(run, version)
        p.saw(f"TLS handshake offering only {version}", detail)
        if done is None:
            untestable.append(version)
            continue
        p.expect(done == should, f"{version} {'accepted' if done else 'refused'}; the {run.target.tls_profile} "
                 f"profile {'offers' if should else 'must not offer'} it")
    if untestable and len(untestable) == len(wanted):
        return p.untested("this machine cannot offer any TLS version for the test")
    tested = [v for v in wanted if v not in untestable]
    note = f" (not testable from here: {', '.join(untestable)})" if untestable else ""
    return p.result(f"offered exactly {', '.join(v for v in tested if wanted[v])}{note}")


def ciphers(run: Run) -> ProbeResult:
    p = probe("tls", "tls.ciphers", "tls.profile (nginx ssl_ciphers in assets/nginx)", run)
    done, detail = _offer(run, "TLSv1.2")
    if not done:
        return p.result("TLS 1.2 is not offered, so only TLS 1.3's AEAD, forward-secret suites can be used")
    for label, suites in (("non-AEAD (CBC)", NON_AEAD), ("non-forward-secret (static RSA)", NON_FS)):
        got, detail = _offer(run, "TLSv1.2", suites)
        p.saw(f"TLS 1.2 handshake offering only {label} suites", detail)
        if got is None:
            continue
        p.expect(not got, f"a {label} suite was accepted ({detail})")
    return p.result("TLS 1.2 refuses non-AEAD and non-forward-secret suites")


def certificate(run: Run) -> ProbeResult:
    p = probe("tls", "tls.certificate", "tls (the certificate files, or the ACME renewal: claudegate renew)", run)
    ep = run.ep
    tls = tls_probe(ep, run.target.ca_file, run.timeout)
    try:
        detail = check_certificate(tls, ep, run.target.ca_file, 14)
    except Skipped as exc:
        return p.untested(str(exc))
    except Failed as exc:
        p.expect(False, str(exc))
        detail = ""
    p.saw(f"TLS handshake with SNI {ep.domain}", detail or "see the problem")
    return p.result(detail)


def hsts(run: Run) -> ProbeResult:
    p = probe("tls", "tls.hsts", "nginx headers (assets/nginx: add_header Strict-Transport-Security)", run)
    answer = run.https("GET", "/v1/models")
    p.saw("GET /v1/models (no key)", answer)
    if not p.expect(answer.status != 0, f"no answer: {answer.error}"):
        return p.result("")
    for problem in header_problems(httpx.Headers(answer.headers)):
        if "strict-transport-security" in problem:
            p.expect(False, problem)
    return p.result(f"strict-transport-security: {answer.headers.get('strict-transport-security')} (>= {HSTS_MIN_AGE})")


def redirect(run: Run) -> ProbeResult:
    p = probe("tls", "tls.redirect", "nginx port-80 server (assets/nginx): redirect to the configured domain only", run)
    if run.ep.http_port == 0:
        return p.untested("no HTTP port configured")
    good = run.http("GET", "/v1/models?x=1", [("Host", run.ep.domain)], defaults=False)
    p.saw(f"GET http://{run.ep.domain}/v1/models?x=1", f"{good.describe()} location={good.headers.get('location')}")
    want = f"https://{run.ep.host_header}/v1/models?x=1"
    p.expect(good.status in (301, 308) and good.headers.get("location") == want,
             f"HTTP is not redirected to {want} (got {good.status} {good.headers.get('location')})")
    evil = "evil.example"
    bad = run.http("GET", "/", [("Host", evil)], defaults=False)
    location = bad.headers.get("location", "")
    p.saw(f"GET http://…/ with Host: {evil}", f"{bad.describe()} location={location}")
    p.expect(evil not in location, f"the redirect follows a foreign Host header: {location}")
    return p.result(f"redirects to https://{run.ep.host_header}, and never to a foreign Host")


