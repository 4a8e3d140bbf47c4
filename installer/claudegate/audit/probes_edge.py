"""The edge: every error in Anthropic's shape, nothing revealed, nothing internal reachable."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

from claudegate.audit.context import Run, probe
from claudegate.audit.result import ProbeResult
from claudegate.probes.http import client, header_problems
from claudegate.probes.pace import check_pace
from claudegate.probes.verdict import Failed
from claudegate.probes.wire import Answer

_LEAKS = re.compile(rb"Traceback \(most recent|File \"/|aiohttp/|nginx/\d|<center>|Python/\d|\.py\", line")
# Ports a scan checks besides the expected ones: the gateway's listeners,
# Docker's API, and what often listens by mistake.
DEFAULT_SCAN = (21, 23, 25, 53, 81, 111, 2375, 2376, 3000, 3306, 5000, 5432, 6379, 8000, 8080, 8081, 8443,
                8888, 9000, 9090, 9100, 9443, 11211, 27017)


def _leak_problems(label: str, answer: Answer) -> list[str]:
    problems = []
    found = _LEAKS.search(answer.body)
    if found:
        problems.append(f"{label}: the body reveals internals ({found.group(0)[:40]!r})")
    for problem in header_problems(httpx.Headers(answer.headers)):
        if problem.startswith(("server header", "x-powered-by")):
            problems.append(f"{label}: {problem}")
    return problems


def errors_shaped(run: Run) -> ProbeResult:
    p = probe("edge", "edge.errors_shaped", "nginx error pages (assets/nginx) or the gateway's error path", run)
    key = run.key()
    auth: list[tuple[str, str | bytes]] = [("x-api-key", key)] if key else []
    cases: list[tuple[str, set[int], str, str | bytes, list[tuple[str, str | bytes]], bytes]] = [
        ("400 bad JSON", {400}, "POST", "/v1/messages/count_tokens",
         [*auth, ("content-type", "application/json")], b"{not json"),
        ("400 bad Host", {400}, "GET", "/v1/models", [("Host", b"bad/host")], b""),
        ("401 no key", {401}, "GET", "/v1/models", [], b""),
        ("404 unknown path", {404}, "GET", "/v1/not-an-endpoint", auth, b""),
        ("404/405 wrong method", {404, 405}, "PUT", "/v1/models", auth, b""),
        ("413 Content-Length over the limit", {413}, "POST", "/v1/messages",
         [*auth, ("content-type", "application/json"), ("Content-Length", str(run.target.max_body_bytes + 1))], b""),
        ("414 URI too long", {414}, "GET", "/v1/models?" + "a" * 20_000, [], b""),
        ("431/494/400 header too large", {400, 431, 494}, "GET", "/v1/models", [("x-filler", b"a" * 70_000)], b""),
    ]
    if not key:
        cases = [c for c in cases if not c[4] or c[0].startswith("400 bad Host")]
    for label, statuses, method, path, headers, body in cases:
        # A Content-Length with no body: the server must answer from the headers alone.
        answer = run.https(method, path, headers, body, defaults=True) if "Content-Length" not in dict(headers) \
            else run.https(method, path, headers, iter(()))
        p.saw(f"{method} {path if isinstance(path, str) and len(path) < 80 else '(long)'} [{label}]", answer)
        if answer.status == 0:
            p.expect(False, f"{label}: no answer ({answer.error})")
            continue
        p.expect(answer.status in statuses, f"{label}: status {answer.status}")
        p.expect(answer.shaped(), f"{label}: {answer.status} is not Anthropic's error JSON")
        for problem in _leak_problems(label, answer):
            p.expect(False, problem)
    return p.result(f"{len(cases)} provoked errors, each Anthropic-shaped JSON with a request_id")


INTERNAL_PATHS = (
    "/healthz", "/readyz", "/metrics", "/nginx_status", "/status", "/server-status", "/.git/config", "/.env",
    "/v1/../metrics", "/%2e%2e/metrics", "/v1/%2e%2e/healthz", "/v1/models/../../metrics", "/internal/metrics",
    "/.well-known/acme-challenge/", "/v1/",
)


def internal_endpoints(run: Run) -> ProbeResult:
    p = probe("edge", "edge.internal_endpoints", "nginx locations (assets/nginx) / gateway listeners", run)
    key = run.key()
    for path in INTERNAL_PATHS:
        headers = [("x-api-key", key)] if key else []
        answer = run.https("GET", path, headers)
        p.saw(f"GET {path}", answer)
        looks_internal = re.search(rb"claudegate_\w+\{|# TYPE |\"status\":\s*\"(ok|ready)\"|Index of", answer.body)
        p.expect(answer.status == 0 or answer.status >= 400, f"GET {path}: {answer.status}")
        p.expect(not looks_internal, f"GET {path} reveals an internal endpoint")
        if answer.status:
            p.expect(answer.shaped(), f"GET {path}: {answer.status} is not Anthropic's error JSON")
    return p.result(f"{len(INTERNAL_PATHS)} internal and traversal paths all refused")


def open_ports(run: Run) -> ProbeResult:
    p = probe("edge", "edge.open_ports", "firewall / published ports (only nginx's 80 and 443)", run)
    expected = set(run.target.open_ports)
    ports = sorted(set(run.target.scan_ports or DEFAULT_SCAN) | expected)

    def is_open(port: int) -> bool:
        try:
            with socket.create_connection((run.ep.connect_host, port), timeout=min(run.timeout, 2.0)):
                return True
        except OSError:
            return False

    with ThreadPoolExecutor(16) as pool:
        states = dict(zip(ports, pool.map(is_open, ports), strict=True))
    opened = sorted(port for port, up in states.items() if up)
    p.saw(f"TCP connect to {len(ports)} ports of {run.ep.connect_host}", f"open: {opened}")
    unexpected = sorted(set(opened) - expected)
    p.expect(not unexpected, f"unexpected open ports on {run.ep.connect_host}: {unexpected}")
    return p.result(f"open: {opened} of {len(ports)} probed (expected {sorted(expected)})")




def stream_unbuffered(run: Run) -> ProbeResult:
    p = probe("edge", "edge.stream_unbuffered", "nginx proxy_buffering (assets/nginx/snippets/proxy_gateway.conf)", run)
    key = run.key()
    if key is None:
        return p.untested("needs the run's client key")
    try:
        with client(run.ep, run.ctx(), run.timeout) as http:
            detail = check_pace(run.ep, http, key, 4 * run.timeout)
    except Failed as exc:
        p.expect(False, str(exc))
        detail = str(exc)
    p.saw("GET /v1/claudegate/pace (the gateway's own stream, 100 ms between events)", detail)
    return p.result(detail)
