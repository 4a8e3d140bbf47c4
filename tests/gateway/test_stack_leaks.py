"""Nothing about the stack leaks: parser errors and list cursors.

Against the real gateway process and the recording fake: requests aiohttp's
own HTTP parser refuses are sent as raw bytes over a socket (no client
library would send them), and the answer must be Anthropic's error shape
with no trace of aiohttp, Python or the request's bytes. List cursors the
gateway makes must show nothing of upstream's positions and open only for
the client they were issued to.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic, RecordedRequest
from tests.support.gateway_proc import GatewayProc, make_gateway

V = {"anthropic-version": "2023-06-01"}
MARK = "zq7echoMARKER"  # in every bad request: it must never come back


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("leaks"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(gw: GatewayProc) -> dict[str, str]:
    return {"alice": gw.create_key("alice"), "bob": gw.create_key("bob")}


def raw_exchange(gw: GatewayProc, data: bytes, timeout: float = 5.0) -> bytes:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)  # no half-close: an EOF would cancel the answer; the server closes after it
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


BAD_REQUESTS = {
    "bad request line": f"GET /v1/models{MARK} HTTP/1.1 extra\r\nHost: x\r\n\r\n".encode(),
    "non-ascii method": f"GÉT /v1/{MARK} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "method with a control char": f"G\x01T /v1/{MARK} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "bad version": f"GET /v1/{MARK} HTTP/9.x\r\nHost: x\r\n\r\n".encode(),
    "header without a colon": f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{MARK}\r\n\r\n".encode(),
    "NUL in a header value": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00{MARK}\r\n\r\n".encode(),
    "space before the colon": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-{MARK} : 1\r\n\r\n".encode(),
    "non-ascii header name": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-é{MARK}: 1\r\n\r\n".encode(),
    "oversized header": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {MARK}{'a' * 20000}\r\n\r\n".encode(),
    "bad chunk size": (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz{MARK}\r\n\r\n".encode()
    ),
    "TLS on the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK.encode() + b"\x00" * 40,
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_parser_errors_are_answered_in_anthropics_shape_and_leak_nothing(
    gw: GatewayProc, fake: FakeAnthropic, name: str
) -> None:
    fake.state.clear_requests()
    raw = raw_exchange(gw, BAD_REQUESTS[name])
    status, headers, body = parse_answer(raw)
    assert 400 <= status < 500, raw[:200]
    lowered = raw.lower()
    for leak in (b"aiohttp", b"python", MARK.lower().encode(), b"traceback", b"invalid method", b"bad status"):
        assert leak not in lowered, (name, raw[:300])
    assert headers.get("server") == "claudegate"
    assert headers.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert set(doc) == {"type", "error", "request_id"} and doc["type"] == "error"
    assert doc["error"]["type"] in ("invalid_request_error", "request_too_large")
    assert doc["request_id"].startswith("req_") and headers.get("request-id") == doc["request_id"]
    assert fake.state.requests == []  # refused before anything else happened


def test_the_gateway_still_serves_after_parser_errors(gw: GatewayProc, keys: dict[str, str]) -> None:
    for data in BAD_REQUESTS.values():
        raw_exchange(gw, data)
    r = httpx.get(gw.url + "/v1/models", headers={**V, "x-api-key": keys["alice"]})
    assert r.status_code == 200 and r.headers["server"] == "claudegate"
    log = gw.log_path.read_text(errors="replace")
    assert MARK not in log and "Traceback" not in log  # the request's bytes stay out of the log too


# -- list cursors -------------------------------------------------------------------


def upload(gw: GatewayProc, key: str, name: str) -> str:
    r = httpx.post(gw.url + "/v1/files", headers={**V, "x-api-key": key}, files={"file": (name, b"x", "text/plain")})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def files_page(gw: GatewayProc, key: str, **params: str) -> httpx.Response:
    return httpx.get(gw.url + "/v1/files", headers={**V, "x-api-key": key}, params=params)


def query(r: RecordedRequest) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(r.query_string))


def _b64_variants(token: str) -> list[bytes]:
    out = []
    for drop in range(4):
        text = token[drop:]
        with contextlib.suppress(ValueError):
            out.append(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return out


def test_files_cursor_is_opaque_bound_to_its_client_and_tamper_proof(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    alice = [upload(gw, keys["alice"], f"a{i}.txt") for i in range(6)]
    bob = [upload(gw, keys["bob"], f"b{i}.txt") for i in range(6)]
    first = files_page(gw, keys["alice"], limit="2").json()
    cursor = first["next_page"]
    assert isinstance(cursor, str) and cursor.startswith("page_")
    # Opaque: neither upstream's page token nor any id, in clear or base64.
    fake_tokens = [query(r).get("page") for r in fake.state.requests if r.path == "/v1/files"]
    decoded = b"".join(_b64_variants(cursor.removeprefix("page_")))
    for secret in [*alice, *bob, *[t for t in fake_tokens if t]]:
        assert secret not in cursor and secret.encode() not in decoded
    assert files_page(gw, keys["alice"], limit="2").json()["next_page"] != cursor  # a fresh nonce each time
    # The owner pages on with it.
    second = files_page(gw, keys["alice"], limit="2", page=cursor)
    assert second.status_code == 200 and [f["id"] for f in second.json()["data"]] == alice[-3:-5:-1]
    # Another client, a flipped character, a cut, a made-up one: all refused, upstream not asked.
    fake.state.clear_requests()
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    for who, page in (("bob", cursor), ("alice", flipped), ("alice", cursor[:-4]), ("alice", "page_" + "A" * 60)):
        r = files_page(gw, keys[who], limit="2", page=page)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (who, page)
    assert [r for r in fake.state.requests if r.path == "/v1/files"] == []


def test_lists_show_no_upstream_position_and_keep_objects_current(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    """Lists come from the gateway's index: no page of upstream's is ever read, so
    no cursor can hold an upstream position (an earlier version's sealed scan
    position, cgpos_, is now just an id nobody owns). What the list shows of an
    object is upstream's last answer about it through the gateway."""
    fake.state.configure(batch_processing_seconds=0.5)
    body = {"requests": [{"custom_id": "a", "params": {
        "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}}]}
    made = httpx.post(gw.url + "/v1/messages/batches", headers={**V, "x-api-key": keys["alice"]}, json=body).json()
    fake.state.configure(batch_processing_seconds=0.0)
    fake.state.clear_requests()

    def listed(**params: str) -> dict[str, Any]:
        r = httpx.get(gw.url + "/v1/messages/batches", headers={**V, "x-api-key": keys["alice"]}, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    newest = listed()["data"][0]
    assert (newest["id"], newest["processing_status"]) == (made["id"], "in_progress")
    empty = {"data": [], "has_more": False, "first_id": None, "last_id": None}
    assert listed(after_id="cgpos_" + "A" * 60) == empty
    # A get through the gateway (the batch has ended upstream meanwhile) refreshes the list's view.
    time.sleep(0.6)
    got = httpx.get(f"{gw.url}/v1/messages/batches/{made['id']}", headers={**V, "x-api-key": keys["alice"]}).json()
    assert got["processing_status"] == "ended"
    now = next(b for b in listed()["data"] if b["id"] == made["id"])
    assert now["processing_status"] == "ended" and now["results_url"] == got["results_url"]
    assert [r.path for r in fake.state.requests] == [f"/v1/messages/batches/{made['id']}"]


def test_cursor_box_refuses_every_single_change() -> None:
    """Unit level: every flipped bit, cut, extension and re-spelling of a sealed cursor is refused."""
    from claudegate_gateway.cursors import CursorBox

    box = CursorBox(lambda label: f"pepper:{label}".encode())
    token = box.seal("position:batch", "alice", b"msgbatch_01Secret")
    assert box.open("position:batch", "alice", token) == b"msgbatch_01Secret"
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for i in range(len(raw)):
        for bit in (1, 0x80):
            bad = bytearray(raw)
            bad[i] ^= bit
            forged = base64.urlsafe_b64encode(bytes(bad)).decode().rstrip("=")
            assert box.open("position:batch", "alice", forged) is None, (i, bit)
    for forged in (token[:-1], token + "A", token[:-2], "", "A" * len(token), token.upper()):
        assert box.open("position:batch", "alice", forged) is None, forged
    assert box.open("position:batch", "bob", token) is None  # another client
    assert box.open("position:file", "alice", token) is None  # another list
    assert CursorBox(lambda label: b"other pepper").open("position:batch", "alice", token) is None
    # Opaque: two seals of one payload differ and neither holds it.
    again = box.seal("position:batch", "alice", b"msgbatch_01Secret")
    assert again != token and b"Secret" not in base64.urlsafe_b64decode(again + "=" * (-len(again) % 4))
