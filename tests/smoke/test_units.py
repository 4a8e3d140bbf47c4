"""The smoke test's pure parts: target parsing, matching, parsing, judging and output."""

from __future__ import annotations

import json

import httpx
import pytest

from claudegate.errors import ConfigError
from claudegate.probes.body import oversize_chunks
from claudegate.probes.http import header_problems
from claudegate.probes.sse import SSEEvent, SSEParser, stream_problems
from claudegate.probes.tls import hostname_matches
from claudegate.redact import Secret
from claudegate.smoke import CHECK_NAMES, Check, SmokeReport, SmokeTarget, run_smoke

KEY = "sk-cg-unit-" + "x" * 30


def test_target_repr_never_shows_the_key() -> None:
    for key in (KEY, Secret(KEY)):
        target = SmokeTarget("https://gw.test", None, client_key=key)
        assert KEY not in repr(target) and KEY not in str(target)


@pytest.mark.parametrize(
    ("url", "https_port", "domain", "port", "prefix"),
    [
        ("https://gw.example.com", 443, "gw.example.com", 443, ""),
        ("https://GW.Example.com./", 443, "gw.example.com", 443, ""),
        ("https://gw.example.com:8443", 443, "gw.example.com", 8443, ""),
        ("https://gw.example.com", 8443, "gw.example.com", 8443, ""),
        ("https://gw.example.com:8443/claude/", 8443, "gw.example.com", 8443, "/claude"),
        ("https://[::1]:9443", 443, "::1", 9443, ""),
    ],
)
def test_endpoint_from_base_url(url: str, https_port: int, domain: str, port: int, prefix: str) -> None:
    ep = SmokeTarget(url, None, https_port=https_port).endpoint()
    assert (ep.domain, ep.https_port, ep.prefix, ep.connect_host) == (domain, port, prefix, domain)
    assert ep.https_url("/v1/models").endswith(f"{prefix}/v1/models")


@pytest.mark.parametrize(
    "url",
    [
        "http://gw.example.com",
        "gw.example.com",
        "https://user:pw@gw.example.com",
        "https://gw.example.com/?q=1",
        "https://gw.example.com:99999",
    ],
)
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        run_smoke(SmokeTarget(url, "127.0.0.1"))


def test_conflicting_ports_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="port"):
        SmokeTarget("https://gw.test:8443", None, https_port=9443).endpoint()


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("gw.example.com", "gw.example.com", True),
        ("GW.example.com", "gw.example.com.", True),
        ("gw.example.com", "example.com", False),
        ("*.example.com", "gw.example.com", True),
        ("*.example.com", "a.gw.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.com", "example.com", False),
        ("g*.example.com", "gw.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
    ],
)
def test_hostname_matching(pattern: str, host: str, expected: bool) -> None:
    assert hostname_matches(pattern, host) is expected


def _events(*names: str) -> list[SSEEvent]:
    return [SSEEvent(n, json.dumps({"type": n}), i / 10) for i, n in enumerate(names)]


GOOD = (
    "message_start",
    "ping",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
)


def test_stream_order_accepted() -> None:
    assert stream_problems(_events(*GOOD)) == []


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (GOOD[1:], "first event is content_block_start"),
        (GOOD[:-1], "not message_stop"),
        ((*GOOD[:6], "message_stop"), "no message_delta"),
        (("message_start", "message_delta", "message_stop"), "no content_block_delta"),
        ((*GOOD[:-1], "message_stop", "message_stop"), "exactly once"),
        ((), "no events"),
    ],
)
def test_stream_order_problems(names: tuple[str, ...], problem: str) -> None:
    assert problem in "; ".join(stream_problems(_events(*names)))


def test_stream_error_event_is_reported() -> None:
    events = [
        *_events("message_start"),
        SSEEvent("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', 0.2),
    ]
    assert stream_problems(events) == ["the stream carried an error event: overloaded_error: Overloaded"]


def test_sse_parser_handles_split_chunks_crlf_comments_and_utf8() -> None:
    payload = (
        'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
        ": keep-alive comment\n\n"
        'event: content_block_delta\ndata: {"type":"content_block_delta","text":"héllo"}\n\n'
    ).encode()
    parser = SSEParser()
    events = []
    for i in range(len(payload)):  # one byte at a time: splits lines and a UTF-8 character
        events += parser.feed(payload[i : i + 1], float(i))
    assert [e.event for e in events] == ["message_start", "content_block_delta"]
    assert json.loads(events[1].data)["text"] == "héllo"


def test_oversize_body_is_exact_and_valid_json() -> None:
    for total in (200, 1000, 300_000):
        body = b"".join(oversize_chunks(total, "claude-haiku-4-5", chunk_size=4096))
        assert len(body) == total
        assert json.loads(body)["messages"][0]["role"] == "user"


GOOD_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "server": "nginx",
}


def test_security_headers_accepted() -> None:
    assert header_problems(httpx.Headers(GOOD_HEADERS)) == []
    assert header_problems(httpx.Headers({k: v for k, v in GOOD_HEADERS.items() if k != "server"})) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"strict-transport-security": None}, "no strict-transport-security"),
        ({"strict-transport-security": "max-age=86400"}, "max-age=86400 < 15552000"),
        ({"strict-transport-security": "includeSubDomains"}, "without max-age"),
        ({"x-content-type-options": None}, "x-content-type-options is missing"),
        ({"cache-control": "private, max-age=0"}, "needs no-store"),
        ({"x-powered-by": "Express"}, "x-powered-by present"),
        ({"server": "nginx/1.22.1"}, "reveals a version"),
        ({"server": "Python/3.11 aiohttp/3.9.5"}, "reveals a version"),
    ],
)
def test_security_header_problems(change: dict[str, str | None], problem: str) -> None:
    headers = {**GOOD_HEADERS, **change}
    found = header_problems(httpx.Headers({k: v for k, v in headers.items() if v is not None}))
    assert any(problem in p for p in found), found


def test_report_json_table_and_ok() -> None:
    checks = (Check("tls.handshake", "pass", "TLSv1.3"), Check("api.models", "skip", "needs a client key"))
    report = SmokeReport(checks, base_url="https://gw.test")
    assert report.ok
    data = report.to_json()
    assert data["ok"] is True and data["counts"] == {"pass": 1, "fail": 0, "skip": 1}
    assert data["checks"][0] == {"name": "tls.handshake", "status": "pass", "detail": "TLSv1.3"}
    json.dumps(data)
    lines = report.table().splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert lines[2].split()[:2] == ["tls.handshake", "PASS"]
    assert lines[-1].startswith("OK: 1 passed, 0 failed, 1 skipped")

    failing = SmokeReport((*checks, Check("limits.body", "fail", "status 200")))
    assert not failing.ok and failing.failed == ("limits.body",)
    assert failing.table().splitlines()[-1].startswith("FAILED: 1 passed, 1 failed, 1 skipped")


def test_unreachable_target_fails_without_raising() -> None:
    """Nothing listens: the TLS and redirect checks fail, the rest are skipped, in the stable order."""
    seen: list[Check] = []
    target = SmokeTarget("https://gw.test:1", "127.0.0.1", http_port=2, client_key=KEY)
    report = run_smoke(target, timeout=3, progress=seen.append)
    assert tuple(c.name for c in report.checks) == CHECK_NAMES
    assert list(report.checks) == seen
    status = {c.name: c.status for c in report.checks}
    assert status["tls.handshake"] == "fail" and "refused" in report.checks[0].detail.lower()
    assert status["tls.certificate"] == "skip"
    assert status["http.redirect"] == "fail"
    assert {status[n] for n in CHECK_NAMES[3:]} == {"skip"}
    assert not report.ok


def test_core_module_imports_no_ui_library() -> None:
    import subprocess
    import sys

    # Not rich: httpx imports it for its own command line whenever click is installed (import-linter,
    # a test dependency, brings click). Our code importing rich is caught by the import-linter contract.
    code = "import sys, claudegate.smoke; print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'typer')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"
