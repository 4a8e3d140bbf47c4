"""The smoke test against a real local stack (nginx -> gateway -> fake Anthropic API):
every check passes on the healthy stack and fails when its property is broken,
and the client key shows up in no output."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path

import pytest

from claudegate.smoke import CHECK_NAMES, Check, run_smoke
from tests.smoke.conftest import (
    DOMAIN,
    EchoUpstream,
    EdgeFactory,
    assert_key_absent,
    by_name,
    chain,
    replace_in,
    target_for,
)
from tests.smoke.pki import CA, make_leaf
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

HTTPS_CHECKS = CHECK_NAMES[3:]

# The fake answers instantly; a real model produces tokens over time. Spacing the
# fake's events 20 ms apart lets api.stream tell a live stream from a buffered one.
pytestmark = pytest.mark.usefixtures("stream_delay")


def failing(report_checks: dict[str, tuple[str, str]]) -> set[str]:
    return {name for name, (status, _) in report_checks.items() if status == "fail"}


# --- the healthy stack -----------------------------------------------------------------


def test_healthy_stack_passes_every_check(
    make_edge: EdgeFactory,
    ca: CA,
    client_key: str,
    stream_delay: FakeAnthropic,
    smoke_gateway: GatewayProc,
    captured_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edge = make_edge("healthy")
    progress: list[Check] = []
    report = run_smoke(target_for(edge, ca, client_key, burst=150), progress=progress.append)
    print(report.table())
    print(json.dumps(report.to_json()))

    assert tuple(c.name for c in report.checks) == CHECK_NAMES
    assert progress == list(report.checks)
    checks = by_name(report)
    assert report.ok, report.table()
    assert {n for n, (s, _) in checks.items() if s == "pass"} == set(CHECK_NAMES) - {"allowlist.enforced"}
    assert checks["allowlist.enforced"][0] == "skip"

    assert checks["tls.handshake"][1].startswith("TLSv1.3")
    assert "89 days left" in checks["tls.certificate"][1]
    assert f"-> https://{DOMAIN}:{edge.settings.https_port}/v1/models" in checks["http.redirect"][1]
    assert "0 of 33554433 bytes were sent" in checks["limits.body"][1]  # refused from the headers alone
    assert "retry-after 1" in checks["limits.burst"][1]
    assert "claude-haiku-4-5 listed" in checks["api.models"][1]

    # The calls reached the fake through the gateway, with the gateway's upstream key only.
    paths = [r.path for r in stream_delay.state.requests]
    assert {"/v1/models", "/v1/messages/count_tokens", "/v1/messages"} <= set(paths)
    assert all(client_key not in json.dumps(dict(r.headers)) for r in stream_delay.state.requests)

    out = capsys.readouterr()
    assert_key_absent(report, client_key, out.out, out.err, captured_logs.text)
    assert all(client_key not in str(r.args) for r in captured_logs.records)


def test_over_ipv6_and_with_the_key_as_secret(
    make_edge: EdgeFactory, ca: CA, client_key: str, stream_delay: FakeAnthropic
) -> None:
    from claudegate.redact import Secret

    edge = make_edge("ipv6")
    report = run_smoke(target_for(edge, ca, None, client_key=Secret(client_key), connect_host="::1"))
    assert report.ok, report.table()
    assert by_name(report)["api.stream"][0] == "pass"
    assert_key_absent(report, client_key)


def test_without_a_client_key_the_key_checks_are_skipped(make_edge: EdgeFactory, ca: CA) -> None:
    edge = make_edge("nokey")
    report = run_smoke(target_for(edge, ca, None))
    checks = by_name(report)
    assert report.ok, report.table()
    for name in ("api.models", "api.count_tokens", "api.stream"):
        assert checks[name] == ("skip", "needs a client key (none given)")
    # The 401 answers are API responses too: their headers are still checked.
    assert checks["headers.security"][0] == "pass" and "401" in checks["headers.security"][1]


# --- TLS -----------------------------------------------------------------------------------


def test_self_signed_certificate_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, tmp_path: Path
) -> None:
    edge = make_edge("selfsigned", leaf=make_leaf(None, tmp_path / "ss", (DOMAIN,)))
    report = run_smoke(target_for(edge, ca, client_key))
    checks = by_name(report)
    assert not report.ok
    assert checks["tls.handshake"][0] == "pass"  # the protocol is fine...
    status, detail = checks["tls.certificate"]  # ...the certificate is not trusted
    assert status == "fail" and "does not verify" in detail and "self-signed" in detail
    assert {checks[n][0] for n in HTTPS_CHECKS} == {"skip"}
    assert_key_absent(report, client_key)


def test_certificate_for_another_name_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, tmp_path: Path
) -> None:
    edge = make_edge("wrongname", leaf=make_leaf(ca, tmp_path / "other", ("other.test", "*.gw.test")))
    report = run_smoke(target_for(edge, ca, client_key))
    status, detail = by_name(report)["tls.certificate"]
    assert status == "fail"
    assert "Hostname mismatch" in detail and "(other.test, *.gw.test) does not name gw.test" in detail
    assert failing(by_name(report)) == {"tls.certificate"}


def test_certificate_expiring_soon_fails_but_the_rest_runs(
    make_edge: EdgeFactory, ca: CA, client_key: str, tmp_path: Path, stream_delay: FakeAnthropic
) -> None:
    # A 90-day certificate with 3 days left (a short-lived one is judged by its lifetime, below).
    soon = make_leaf(
        ca, tmp_path / "soon", (DOMAIN,), not_before=dt.timedelta(days=-87), not_after=dt.timedelta(days=3)
    )
    edge = make_edge("expiring", leaf=soon)
    report = run_smoke(target_for(edge, ca, client_key))
    status, detail = by_name(report)["tls.certificate"]
    assert status == "fail" and "2 days left, at least 7 required" in detail
    assert failing(by_name(report)) == {"tls.certificate"}  # a trusted chain: the other checks ran and passed
    assert run_smoke(target_for(edge, ca, client_key, cert_min_days=2)).ok


def test_expired_certificate_fails(make_edge: EdgeFactory, ca: CA, client_key: str, tmp_path: Path) -> None:
    leaf = make_leaf(
        ca, tmp_path / "old", (DOMAIN,), not_before=dt.timedelta(days=-100), not_after=dt.timedelta(days=-10)
    )
    edge = make_edge("expired", leaf=leaf)
    status, detail = by_name(run_smoke(target_for(edge, ca, client_key)))["tls.certificate"]
    assert status == "fail" and "certificate has expired" in detail and "(10 days ago)" in detail


def test_ca_file_is_needed_for_a_private_ca(make_edge: EdgeFactory, client_key: str) -> None:
    edge = make_edge("noca")
    status, detail = by_name(run_smoke(target_for(edge, None, client_key)))["tls.certificate"]
    assert status == "fail" and "against the system trust store" in detail


# --- http -> https -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            replace_in("claudegate.conf", r"return 301 (https://[^;]+);", r"return 302 \1;", regex=True),
            "answered 302",
        ),
        (  # the plain HTTP port serves the API itself
            replace_in(
                "claudegate.conf",
                r"return 301 https://[^;]+;",
                "include snippets/proxy_gateway.conf;",
                regex=True,
            ),
            "answered 401",
        ),
        (
            replace_in(
                "claudegate.conf", r"return 301 https://gw\.test", "return 301 https://evil.test", regex=True
            ),
            "another host than gw.test",
        ),
        (
            replace_in("claudegate.conf", "$request_uri;", "/;"),
            "the path and query were not kept",
        ),
    ],
    ids=["302", "serves-api", "other-host", "drops-path"],
)
def test_broken_redirect_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, patch: object, expected: str
) -> None:
    edge = make_edge("redirect", patch=patch)
    report = run_smoke(target_for(edge, ca, client_key))
    status, detail = by_name(report)["http.redirect"]
    assert status == "fail" and expected in detail, detail
    assert failing(by_name(report)) == {"http.redirect"}


def test_redirect_to_another_port_fails(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    """Port 80 of one nginx redirects to its own https port, not to the one the target names."""
    first, second = make_edge("port1"), make_edge("port2")
    cross = target_for(second, ca, client_key, http_port=first.settings.http_port)
    status, detail = by_name(run_smoke(cross))["http.redirect"]
    assert status == "fail"
    assert f"port {first.settings.https_port}, expected {second.settings.https_port}" in detail


# --- auth, API and headers ---------------------------------------------------------------


def test_gateway_that_answers_without_auth_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, echo_upstream: EchoUpstream
) -> None:
    """An upstream that serves anyone (and echoes request headers, key included, into its bodies)."""
    edge = make_edge("noauth", upstream=f"127.0.0.1:{echo_upstream.port}")
    report = run_smoke(target_for(edge, ca, client_key))
    checks = by_name(report)
    status, detail = checks["auth.required"]
    assert status == "fail" and "without a key: status 200, expected 401" in detail
    assert "with an unknown key: status 200" in detail
    # count_tokens got 200 without input_tokens; its detail quotes the echoed body, key masked.
    status, detail = checks["api.count_tokens"]
    assert status == "fail" and '"got_key": "********"' in detail
    assert checks["api.stream"][0] == "fail"
    assert_key_absent(report, client_key)


def test_missing_hsts_age_fails(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    edge = make_edge("hsts", hsts_max_age=86400)
    report = run_smoke(target_for(edge, ca, client_key))
    status, detail = by_name(report)["headers.security"]
    assert status == "fail" and "max-age=86400 < 15552000" in detail
    assert failing(by_name(report)) == {"headers.security"}


def test_missing_nosniff_and_server_version_fail(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    patch = chain(
        replace_in("claudegate.conf", "server_tokens off;", "server_tokens on;"),
        replace_in(
            "claudegate.conf", r'\n\s*add_header X-Content-Type-Options "nosniff" always;', "", regex=True
        ),
    )
    edge = make_edge("headers", patch=patch)
    status, detail = by_name(run_smoke(target_for(edge, ca, client_key)))["headers.security"]
    assert status == "fail"
    assert (
        "x-content-type-options is missing" in detail and "server header reveals a version ('nginx/" in detail
    )
    assert "200 /v1/models:" in detail and "401 without a key:" in detail


# --- streaming -------------------------------------------------------------------------------


def test_buffered_stream_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, stream_delay: FakeAnthropic
) -> None:
    edge = make_edge(
        "buffered",
        patch=replace_in("snippets/proxy_gateway.conf", "proxy_buffering off;", "proxy_buffering on;"),
    )
    report = run_smoke(target_for(edge, ca, client_key))
    status, detail = by_name(report)["api.stream"]
    assert status == "fail" and "arrived at once" in detail and "buffered" in detail
    assert failing(by_name(report)) == {"api.stream"}


def test_stream_with_an_error_event_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, stream_delay: FakeAnthropic
) -> None:
    edge = make_edge("stream-error")
    stream_delay.state.fail_mid_stream(3, "overloaded_error")
    status, detail = by_name(run_smoke(target_for(edge, ca, client_key)))["api.stream"]
    assert status == "fail" and "error event: overloaded_error" in detail


def test_stream_cut_short_fails(
    make_edge: EdgeFactory, ca: CA, client_key: str, stream_delay: FakeAnthropic
) -> None:
    edge = make_edge("stream-cut")
    stream_delay.state.disconnect_mid_stream(4)
    status, detail = by_name(run_smoke(target_for(edge, ca, client_key)))["api.stream"]
    assert status == "fail", detail
    assert "broke after" in detail or "cut short" in detail or "error event" in detail, detail


# --- limits ------------------------------------------------------------------------------------


def test_body_limit_not_enforced_fails(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    edge = make_edge("body")
    # The stack takes 32 MiB; claim it must refuse anything over 1 MiB.
    report = run_smoke(target_for(edge, ca, client_key, max_body_bytes=1024 * 1024))
    status, detail = by_name(report)["limits.body"]
    assert status == "fail" and "with 1048577 bytes: status 401, expected 413" in detail


def test_burst_without_a_429_fails(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    edge = make_edge("burst")
    status, detail = by_name(run_smoke(target_for(edge, ca, client_key, burst=5)))["limits.burst"]
    assert status == "fail" and "no 429 in 5 requests" in detail and "401x5" in detail


def test_burst_zero_is_skipped(make_edge: EdgeFactory, ca: CA) -> None:
    edge = make_edge("noburst")
    assert by_name(run_smoke(target_for(edge, ca, None)))["limits.burst"][0] == "skip"


# --- allowlist ---------------------------------------------------------------------------------


def test_allowlist_enforced(
    make_edge: EdgeFactory, ca: CA, client_key: str, stream_delay: FakeAnthropic
) -> None:
    edge = make_edge("allow", allow_cidrs=["127.0.0.1/32", "::1/128"])
    report = run_smoke(target_for(edge, ca, client_key, allowlist_probe=True, probe_source="127.0.0.2"))
    assert report.ok, report.table()
    status, detail = by_name(report)["allowlist.enforced"]
    assert (
        status == "pass"
        and "403 permission_error from 127.0.0.2" in detail
        and "forwarding headers" in detail
    )


def test_missing_allowlist_fails(make_edge: EdgeFactory, ca: CA, client_key: str) -> None:
    edge = make_edge("open")
    target = target_for(edge, ca, client_key, allowlist_probe=True, probe_source="127.0.0.2")
    status, detail = by_name(run_smoke(target))["allowlist.enforced"]
    assert status == "fail" and "was not refused: status 401, expected 403" in detail


@pytest.mark.parametrize(
    ("source", "status", "expected"),
    [(None, "skip", "needs probe_source"), ("192.0.2.77", "fail", "not an address of this machine")],
)
def test_allowlist_probe_needs_a_usable_source(
    make_edge: EdgeFactory, ca: CA, source: str | None, status: str, expected: str
) -> None:
    edge = make_edge("probe")
    got = by_name(run_smoke(target_for(edge, ca, None, allowlist_probe=True, probe_source=source)))
    assert got["allowlist.enforced"][0] == status and expected in got["allowlist.enforced"][1]


def test_nothing_secret_in_any_failure(make_edge: EdgeFactory, ca: CA, tmp_path: Path) -> None:
    """A key nobody issued, against a broken stack: every failing detail is still key-free."""
    key = "sk-cg-" + secrets.token_urlsafe(32)
    edge = make_edge("secret", hsts_max_age=0)
    report = run_smoke(target_for(edge, ca, key, burst=3, max_body_bytes=1024 * 1024))
    assert {
        "api.models",
        "api.count_tokens",
        "api.stream",
        "headers.security",
        "limits.body",
        "limits.burst",
    } <= (failing(by_name(report)))
    assert_key_absent(report, key)
