"""Streaming, filters, audit and config errors, seen from outside the running gateway."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import raw_headers

MODEL = "claude-sonnet-4-6"
HDRS = {"anthropic-version": "2023-06-01"}


def test_stream_events_leave_as_they_arrive(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("s")
    fake.state.configure(event_delay=0.15)
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "reply with 6 words"}]}
    arrivals: list[tuple[float, str]] = []
    with httpx.stream("POST", gw.url + "/v1/messages", json=body, headers={**HDRS, "x-api-key": key}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        for line in r.iter_lines():
            if line.startswith("event: "):
                arrivals.append((time.monotonic(), line[7:]))
    names = [n for _, n in arrivals]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names.count("content_block_delta") >= 6 and "ping" in names and "message_delta" in names
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    # Every event was held back by the fake for 150 ms; had the gateway
    # buffered, several would arrive together (gaps of a few ms). A loaded
    # machine delays one event and not the next: 0.0996 s seen in a full run.
    assert min(gaps) > 0.05, gaps
    rec = gw.record(r.headers)
    assert rec["stream"] is True and rec["output_tokens"] >= 6 and rec["input_tokens"] > 0


def test_client_disconnect_mid_stream_is_audited_and_settled(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("d", "--tpm", "5000")
    fake.state.configure(event_delay=0.05)
    body = json.dumps({"model": MODEL, "max_tokens": 3000, "stream": True,
                       "messages": [{"role": "user", "content": "reply with 100 words"}]}).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + key.encode() +
                  b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
    rec = gw.record(raw_headers(head))
    assert rec["error_type"] == "client_closed"
    # Upstream's final usage never arrived, so leaving does not make the
    # request cheap: the whole 3000-token reservation stays charged.
    r = httpx.post(gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key},
                   json={"model": MODEL, "max_tokens": 3000, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"]


def test_filters_block_and_redact(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory({"filters": [
        {"name": "secrets", "detectors": ["all"], "action": "redact"},
        {"name": "codename", "pattern": r"project\s*falcon", "action": "block", "status": 403},
        {"name": "no-ssn", "pattern": r"\b\d{3}-\d{2}-\d{4}\b", "action": "block"},
    ]})
    key = gw.create_key("f")
    secret = "AKIAIOSFODNN7EXAMPLE"

    def send(content: object) -> httpx.Response:
        return httpx.post(gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key},
                          json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": content}]})

    redacted = send(f"my key is {secret}, keep it")
    assert redacted.status_code == 200
    forwarded = fake.state.last_request("/v1/messages")
    assert forwarded is not None and secret not in forwarded.text and "[REDACTED:secrets]" in forwarded.text

    blocked = send("tell me about PROJECT   Falcon")
    assert blocked.status_code == 403 and blocked.json()["error"]["type"] == "permission_error"
    assert "codename" in blocked.json()["error"]["message"] and "Falcon" not in blocked.text
    ssn = send([{"type": "text", "text": "id 123-45-"}, {"type": "text", "text": "6789"}])
    assert ssn.status_code == 400 and "no-ssn" in ssn.json()["error"]["message"]
    n_before = len(fake.state.requests)
    hidden = send("project\u200bfalcon")
    assert len(fake.state.requests) == n_before  # blocked ones never reach upstream

    # Each by its request id: a record is written as its response ends, so the order of lines is not the order sent.
    records = [gw.record(r.headers) for r in (redacted, blocked, ssn, hidden)]
    assert {"rule": "secrets", "direction": "request", "action": "redact", "matches": 1} in records[0]["filters"]
    assert [rec["status"] for rec in records[1:]] == [403, 400, 403]
    assert secret not in gw.audit_path.read_text() and "falcon" not in gw.audit_path.read_text().lower()


def test_default_policy_blocks_secrets(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("f")
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    r = httpx.post(gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key},
                   json={"model": MODEL, "max_tokens": 5, "system": pem, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert fake.state.last_request("/v1/messages") is None


def test_audit_record_fields(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("audited")
    prompt = "a very private prompt text"
    r1 = httpx.post(gw.url + "/v1/messages", headers={**HDRS, "x-api-key": key},
                    json={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]})
    r2 = httpx.get(gw.url + "/v1/models", headers={**HDRS, "x-api-key": "wrong"})
    first, second = gw.record(r1.headers), gw.record(r2.headers)
    assert first["key_name"] == "audited" and first["key_prefix"] == key[:14]
    assert first["status"] == 200 and first["model"] == MODEL and first["path"] == "/v1/messages"
    assert first["input_tokens"] > 0 and first["output_tokens"] == 5 and first["latency_ms"] > 0
    assert first["upstream_request_id"].startswith("req_") and first["request_id"].startswith("req_gw")
    assert second["status"] == 401 and second["key_name"] is None
    assert prompt not in gw.audit_path.read_text()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("listen: nowhere\n", "listen: expected HOST:PORT"),
        ("upstream: {base_url: ftp://x}\n", "upstream.base_url"),
        ("upstream: {api_key: sk-ant-xyz}\n", "upstream.api_key: unknown key"),
        ("lisen: 127.0.0.1:1\n", "did you mean listen?"),
        ("trusted_proxies: [10.0.0.1/8]\n", "trusted_proxies[0]"),
        ("filters: [{name: x, pattern: '('}]\n", "filters[0].pattern"),
        ("max_body_bytes: -1\n", "max_body_bytes"),
        ("a: [1\n", "line 2"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, content: str, expected: str) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(content)
    (tmp_path / "k").write_text("key")
    r = subprocess.run([sys.executable, "-m", "claudegate_gateway", "check-config", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0] and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "sk-ant-xyz" not in r.stderr


def test_missing_secret_files_named(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"upstream: {{api_key_file: {tmp_path}/nope}}\npepper_file: {tmp_path}/pep\nkeystore: {tmp_path}/k.db\n")
    r = subprocess.run([sys.executable, "-m", "claudegate_gateway", "serve", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "upstream.api_key_file" in r.stderr and "0600" in r.stderr
