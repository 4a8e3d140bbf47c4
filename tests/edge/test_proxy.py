"""nginx -> gateway -> fake Anthropic API with the official SDK: streams arrive
event by event, headers are clean, forwarded-for headers are not believed, and
only the gateway's public API is reachable."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator

import anthropic
import httpx2
import pytest

from tests.edge.certs import EdgePKI
from tests.edge.conftest import Backend, EdgeFactory, assert_anthropic_error, client, tls_context
from tests.edge.tools import bin_curl
from tests.support.nginx_runner import NginxProcess

MODEL = "claude-haiku-4-5"
EVENT_DELAY = 0.25


@pytest.fixture(scope="module")
def edge(make_edge: EdgeFactory) -> NginxProcess:
    return make_edge("proxy")


@pytest.fixture
def slow_events(backend: Backend) -> Iterator[float]:
    backend.fake.state.configure(event_delay=EVENT_DELAY)
    yield EVENT_DELAY
    backend.fake.state.configure(event_delay=0.0)


def assert_spread(gaps: list[float], delay: float) -> None:
    """Events arrive one by one, about ``delay`` apart, not in a lump.

    Buffering would deliver everything at once at the end (gaps near 0). A
    loaded machine may hold back one event now and then, so most gaps, not
    all, must show the upstream's spacing."""
    spaced = [g for g in gaps if g > delay * 0.5]
    assert len(spaced) >= 0.8 * len(gaps), gaps


def sdk(edge: NginxProcess, pki: EdgePKI, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=key,
        base_url=edge.https_url,
        max_retries=0,
        http_client=httpx2.Client(verify=tls_context(pki), timeout=30),
    )


def test_sdk_message_through_the_edge(edge: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    key = backend.new_key("sdk")
    raw = sdk(edge, pki, key).messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "reply with 3 words"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.content
    headers = raw.headers
    assert headers["server"] == "nginx"  # no version, no upstream server
    assert "x-powered-by" not in headers
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "retry-after" not in headers
    # The backend's own request id survives; nginx adds none of its own.
    assert headers["request-id"].startswith("req_") and not headers["request-id"].startswith("req_edge")
    seen = backend.upstream_requests("/v1/messages")[-1]
    assert key not in seen.headers.values() or backend.gateway is None


def test_stream_arrives_event_by_event(
    edge: NginxProcess, pki: EdgePKI, backend: Backend, slow_events: float
) -> None:
    key = backend.new_key("stream")
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    with sdk(edge, pki, key).messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "reply with 6 words"}]
    ) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["x-accel-buffering"] == "no"
        for event in stream:
            arrivals.append((time.monotonic() - start, event.type))
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and len(final.content[0].text.split()) == 6  # type: ignore[union-attr]
    times = [t for t, _ in arrivals]
    kinds = [k for _, k in arrivals]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    # The SDK also yields derived events ("text") right after each delta: look
    # at the raw SSE events only, which the fake sends EVENT_DELAY apart.
    raw = [t for t, k in arrivals if k not in ("text",)]
    gaps = [b - a for a, b in itertools.pairwise(raw)]
    assert len(raw) >= 8
    assert_spread(gaps, slow_events)
    assert times[-1] - raw[0] > slow_events * (len(raw) - 2)


def test_http2_stream_is_not_buffered(
    edge: NginxProcess, pki: EdgePKI, backend: Backend, slow_events: float
) -> None:
    key = backend.new_key("h2")
    body = '{"model":"%s","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"reply with 4 words"}]}'
    cmd = [
        bin_curl(),
        "-sS",
        "-N",
        "--http2",
        "--cacert",
        str(pki.root_ca),
        "-D",
        "-",
        "-H",
        f"x-api-key: {key}",
        "-H",
        "anthropic-version: 2023-06-01",
        "-H",
        "content-type: application/json",
        "--data",
        body % MODEL,
        f"{edge.https_url}/v1/messages",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    start = time.monotonic()
    events: list[float] = []
    status = ""
    for line in proc.stdout:
        if line.startswith("HTTP/"):
            status = line.strip()
        if line.startswith("event: "):
            events.append(time.monotonic() - start)
    assert proc.wait(30) == 0
    assert status == "HTTP/2 200"
    gaps = [b - a for a, b in itertools.pairwise(events)]
    assert len(events) >= 6
    assert_spread(gaps, slow_events)


def test_client_forwarding_headers_are_not_believed(
    edge: NginxProcess, pki: EdgePKI, backend: Backend
) -> None:
    key = backend.new_key("spoof")
    with client(pki) as c:
        r = c.post(
            f"{edge.https_url}/v1/messages",
            headers={
                "x-api-key": key,
                "anthropic-version": "2023-06-01",
                "X-Forwarded-For": "203.0.113.9",
                "X-Real-IP": "203.0.113.10",
                "Forwarded": "for=203.0.113.11",
            },
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == 200, r.text
    assert backend.client_ips(key) == ["127.0.0.1"]
    seen = backend.upstream_requests("/v1/messages")[-1].headers
    for spoofed in ("203.0.113.9", "203.0.113.10", "203.0.113.11"):
        assert spoofed not in " ".join(seen.values())
    assert "x-forwarded-for" not in seen and "forwarded" not in seen


def test_backend_errors_pass_through_untouched(edge: NginxProcess, pki: EdgePKI, backend: Backend) -> None:
    with client(pki) as c:
        r = c.post(
            f"{edge.https_url}/v1/messages",
            headers={"x-api-key": backend.junk_key(), "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        )
    body = assert_anthropic_error(r, 401, "authentication_error")
    assert not body["request_id"].startswith("req_edge")  # the backend's own answer
    assert r.headers["request-id"] == body["request_id"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/metrics", "/v1/../metrics", "/v1/%2e%2e/metrics", "/", "/v2/messages", "/.env"],
)
def test_only_the_public_api_is_reachable(
    edge: NginxProcess, pki: EdgePKI, backend: Backend, path: str
) -> None:
    before = len(backend.upstream_requests())
    with client(pki) as c:
        r = c.get(edge.https_url + path)
    body = assert_anthropic_error(r, 404, "not_found_error")
    assert body["request_id"].startswith("req_edge")  # nginx answered, nothing was proxied
    assert len(backend.upstream_requests()) == before
    if backend.gateway is not None:
        internal = f"127.0.0.1:{backend.gateway.internal_port}"
        assert internal not in "".join(edge.files.values())


@pytest.fixture
def upstream_429(backend: Backend) -> Iterator[None]:
    backend.fake.state.fail(status=429, type="rate_limit_error", retry_after=7, path="/v1/messages")
    yield
    backend.fake.state.failures.clear()


def test_backend_429_keeps_its_own_retry_after(
    edge: NginxProcess, pki: EdgePKI, backend: Backend, upstream_429: None
) -> None:
    """nginx adds retry-after only to the 429s it makes; a passed-through 429 keeps the backend's."""
    with client(pki) as c:
        r = c.post(
            f"{edge.https_url}/v1/messages",
            headers={"x-api-key": backend.new_key("upstream-429"), "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        )
    body = assert_anthropic_error(r, 429, "rate_limit_error")
    assert not body["request_id"].startswith("req_edge")
    assert r.headers.get_list("retry-after") == ["7"]
    assert r.headers.get_list("request-id") == [body["request_id"]]
