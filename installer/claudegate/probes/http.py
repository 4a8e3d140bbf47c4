"""Requests through httpx, for the probes that talk to the gateway as its clients' SDKs do.

:func:`client` sends requests for the public name to wherever TCP must go
(the domain may not resolve here yet) with SNI and Host kept on the domain;
:func:`send` waits out a 429 left from an earlier run once; the rest judge
what came back: Anthropic's error shape and the security headers.
"""

from __future__ import annotations

import json
import re
import ssl
from typing import Any

import httpx

from claudegate.probes.wait import pause
from claudegate.probes.wire import ANTHROPIC_VERSION, USER_AGENT, Endpoint

# The most a check waits out a 429 left over from an earlier run before retrying once.
MAX_RETRY_WAIT = 5.0
HSTS_MIN_AGE = 15_552_000  # 180 days


class ConnectTo(httpx.BaseTransport):
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


def client(
    ep: Endpoint,
    ctx: ssl.SSLContext,
    timeout: float,
    *,
    local_address: str | None = None,
    max_connections: int = 4,
) -> httpx.Client:
    """An httpx client for the endpoint: no redirects followed, no retries, no proxy from the environment."""
    inner = httpx.HTTPTransport(
        verify=ctx,
        local_address=local_address,
        retries=0,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    return httpx.Client(
        transport=ConnectTo(inner, ep.domain, ep.connect_host),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,  # the probes talk to the gateway itself, never through a proxy
        headers={"user-agent": USER_AGENT, "anthropic-version": ANTHROPIC_VERSION},
    )


def snippet(response: httpx.Response, limit: int = 120) -> str:
    try:
        text = response.text
    except Exception:  # undecodable or unread body
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return float(value)
    except ValueError:
        return None


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; a 429 left from an earlier burst is waited out once (a few seconds at most)."""
    response = client.request(method, url, **kwargs)
    if response.status_code == 429:
        wait = retry_after(response)
        if wait is not None and wait <= MAX_RETRY_WAIT:
            pause(max(wait, 0.1))
            response = client.request(method, url, **kwargs)
    return response


def anthropic_error_problem(response: httpx.Response, status: int, error_type: str) -> str | None:
    """None when ``response`` is ``status`` with Anthropic's error JSON of ``error_type``, else what is wrong."""
    return error_problem(
        response.status_code, response.headers.get("content-type", ""), response.content, status, error_type
    )


def error_problem(got_status: int, content_type: str, body: bytes, status: int, error_type: str) -> str | None:
    """:func:`anthropic_error_problem` for an answer read off the wire."""
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
