"""What a client of the API sees: the HTTP redirect, 401s, the models list, count_tokens, a stream.

The smoke test's checks over an httpx :func:`~claudegate.probes.http.client`;
each returns the detail of a pass or raises
:class:`~claudegate.probes.verdict.Failed` / :class:`~claudegate.probes.verdict.Skipped`.
"""

from __future__ import annotations

import secrets
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from claudegate.probes.http import anthropic_error_problem, client, header_problems, send, snippet
from claudegate.probes.sse import SSEEvent, SSEParser, stream_problems
from claudegate.probes.verdict import Failed, Skipped, describe_error
from claudegate.probes.wire import Endpoint


def auth_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def check_redirect(ep: Endpoint, ctx: ssl.SSLContext, timeout: float) -> str:
    if ep.http_port == 0:
        raise Skipped("no HTTP port given (http_port is 0)")
    path = "/v1/models?claudegate-smoke=1"
    url = ep.http_url(path)
    with client(ep, ctx, timeout) as http:
        try:
            response = http.get(url)
        except httpx.TransportError as exc:
            raise Failed(f"nothing answers on {ep.connect_host}:{ep.http_port}: {describe_error(exc)}") from None
    location = response.headers.get("location", "")
    if response.status_code not in (301, 308):
        extra = f" to {location}" if location else ""
        raise Failed(f"GET {url} answered {response.status_code}{extra}, expected a 301 or 308 to https")
    target = urlsplit(location)
    want = urlsplit(ep.https_url(path))
    try:
        target_port = target.port or (443 if target.scheme == "https" else None)
    except ValueError:
        target_port = None
    if target.scheme != "https":
        raise Failed(f"{response.status_code} to {location!r}, which is not https")
    if (target.hostname or "").lower() != ep.domain:
        raise Failed(f"{response.status_code} to {location!r}: another host than {ep.domain}")
    if target_port != ep.https_port:
        raise Failed(f"{response.status_code} to {location!r}: port {target_port}, expected {ep.https_port}")
    if (target.path, target.query) != (want.path, want.query):
        raise Failed(f"{response.status_code} to {location!r}: the path and query were not kept")
    return f"{response.status_code} {url} -> {location}"


@dataclass
class Seen:
    """API responses kept for the headers check."""

    responses: list[tuple[str, httpx.Response]] = field(default_factory=list)


def check_auth(ep: Endpoint, http: httpx.Client, seen: Seen) -> str:
    url = ep.https_url("/v1/models")
    bogus = "sk-cg-smoke-" + secrets.token_urlsafe(24)  # a key nobody issued
    problems = []
    for label, headers in (("without a key", {}), ("with an unknown key", {"x-api-key": bogus})):
        response = send(http, "GET", url, headers=headers)
        seen.responses.append((f"401 {label}", response))
        problem = anthropic_error_problem(response, 401, "authentication_error")
        if problem:
            problems.append(f"GET /v1/models {label}: {problem} {snippet(response)}".strip())
    if problems:
        raise Failed("; ".join(problems))
    return "401 authentication_error (Anthropic JSON with request_id) without a key and with an unknown key"


def check_models(ep: Endpoint, http: httpx.Client, key: str, model: str, seen: Seen) -> str:
    response = send(http, "GET", ep.https_url("/v1/models"), headers=auth_headers(key))
    seen.responses.append(("200 /v1/models", response))
    if response.status_code != 200:
        raise Failed(f"GET /v1/models with the client key: {response.status_code} {snippet(response)}")
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        data = None
    if not isinstance(data, list):
        raise Failed(f"GET /v1/models: 200 but no model list in the body: {snippet(response)}")
    ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
    # Aliases such as claude-haiku-4-5 name dated ids such as claude-haiku-4-5-20251001.
    listed = "listed" if any(i == model or i.startswith(model + "-") for i in ids) else "not listed"
    return f"200, {len(data)} models ({model} {listed})"


def check_headers(seen: Seen) -> str:
    if not seen.responses:
        raise Skipped("no API response to look at (see auth.required and api.models)")
    problems = []
    for label, response in seen.responses:
        found = header_problems(response.headers)
        if found:
            problems.append(f"{label}: {', '.join(found)}")
    if problems:
        raise Failed("; ".join(problems))
    first = seen.responses[0][1].headers
    labels = sorted({label.split(" ")[0] for label, _ in seen.responses})
    return (
        f"{first.get('strict-transport-security')}; nosniff; no-store; no x-powered-by; "
        f"server {first.get('server', '(none)')!r} (on the {' and '.join(labels)} responses)"
    )


def check_count_tokens(ep: Endpoint, http: httpx.Client, key: str, model: str) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello from the claudegate smoke test."}],
    }
    response = send(http, "POST", ep.https_url("/v1/messages/count_tokens"), headers=auth_headers(key), json=body)
    if response.status_code != 200:
        raise Failed(f"POST /v1/messages/count_tokens: {response.status_code} {snippet(response)}")
    try:
        tokens = response.json().get("input_tokens")
    except (ValueError, AttributeError):
        tokens = None
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise Failed(f"POST /v1/messages/count_tokens: 200 without input_tokens: {snippet(response)}")
    return f"200, input_tokens={tokens}"


def check_stream(ep: Endpoint, http: httpx.Client, key: str, model: str, deadline: float) -> str:
    body = {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Count from 1 to 20, separated by spaces."}],
    }
    headers = {**auth_headers(key), "accept": "text/event-stream", "accept-encoding": "identity"}
    parser = SSEParser()
    events: list[SSEEvent] = []
    started = time.monotonic()
    with http.stream("POST", ep.https_url("/v1/messages"), headers=headers, json=body) as response:
        if response.status_code != 200:
            response.read()
            raise Failed(f"POST /v1/messages (stream): {response.status_code} {snippet(response)}")
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            raise Failed(f"POST /v1/messages (stream): content-type {ctype or 'missing'}, not text/event-stream")
        try:
            for chunk in response.iter_raw():
                arrived = time.monotonic() - started
                events.extend(parser.feed(chunk, arrived))
                if arrived > deadline:
                    raise Failed(f"the stream was still going after {arrived:.0f} s ({len(events)} events)")
        except httpx.TransportError as exc:
            names = " ".join(e.event for e in events if e.event != "ping")[-200:]
            raise Failed(f"the stream broke after {len(events)} events ({names}): {describe_error(exc)}") from None
    problems = stream_problems(events)
    if problems:
        raise Failed("; ".join(problems))
    first = next(e for e in events if e.event == "message_start")
    last = next(e for e in events if e.event == "message_stop")
    # No judgement on timing here: a fast upstream may send everything at once.
    # Buffering on the way is the paced stream's business, at a pace the stack sets.
    return (
        f"{len(events)} events in order; message_start after {first.arrived * 1000:.0f} ms, "
        f"message_stop after {last.arrived * 1000:.0f} ms"
    )
