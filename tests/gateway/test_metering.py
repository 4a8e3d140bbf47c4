"""A key is charged what upstream bills, before upstream sees it (issue #17, section 1).

Each test runs the real gateway process against the recording fake and
compares what the gateway charged (the keystore's daily_usage) with what
the fake says it billed (``FakeState.billed``), and checks that a refused
request never reached the fake.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway, raw_headers

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def msg(content: Any, max_tokens: int = 20, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}], **extra}


def doc_ref(file_id: str, text: str = "summarise") -> list[dict[str, Any]]:
    return [{"type": "document", "source": {"type": "file", "file_id": file_id}}, {"type": "text", "text": text}]


def daily_usage(gw: GatewayProc, name: str) -> int:
    with sqlite3.connect(gw.keystore_path) as db:
        row = db.execute("SELECT SUM(tokens) FROM daily_usage WHERE name = ?", (name,)).fetchone()
    return int(row[0] or 0)


def upload(gw: GatewayProc, key: str, data: bytes, name: str = "big.txt", mime: str = "text/plain") -> str:
    r = httpx.post(gw.url + "/v1/files", headers=hdr(key), files={"file": (name, data, mime)})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def billed(fake: FakeAnthropic) -> int:
    return sum(b.tokens for b in fake.state.billed)


def no_traceback(gw: GatewayProc) -> None:
    log = gw.log_path.read_text()
    assert "Traceback" not in log, log


# -- referenced content ---------------------------------------------------------------


def test_six_parallel_requests_on_one_big_file_stay_within_the_budget(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("reader", "--daily-tokens", "20000")
    file_id = upload(gw, key, b"lorem ipsum " * 2_500)  # 30,000 bytes: ~7,500 tokens billed per reference
    fake.state.configure(latency=1.0)  # all six in flight at once
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg(doc_ref(file_id), 50),
                                  timeout=30))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each reservation is ~10,100 tokens (the file at bytes/3, the body, max_tokens): one fits in 20,000.
    assert sorted(r.status_code for r in answers) == [200, 429, 429, 429, 429, 429]
    assert len(fake.state.requests_for("/v1/messages")) == 1
    assert 7_500 < billed(fake) <= 20_000
    assert daily_usage(gw, "reader") >= billed(fake)
    # The body alone (a few hundred bytes) would have let all six through under the old rule.
    admitted = next(r for r in answers if r.status_code == 200)
    assert gw.record(admitted.headers)["reserved_tokens"] > 10_000


def test_count_tokens_reserves_the_file_and_is_settled_to_nothing(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("counter", "--daily-tokens", "9000")
    file_id = upload(gw, key, b"x" * 30_000)
    body = {"model": MODEL, "messages": [{"role": "user", "content": doc_ref(file_id)}]}
    r = httpx.post(gw.url + "/v1/messages/count_tokens", headers=hdr(key), json=body)
    assert r.status_code == 429, r.text  # the file alone is over what the key has for the day
    assert fake.state.requests_for("/v1/messages/count_tokens") == []
    small = upload(gw, key, b"x" * 3_000)
    body = {"model": MODEL, "messages": [{"role": "user", "content": doc_ref(small)}]}
    r = httpx.post(gw.url + "/v1/messages/count_tokens", headers=hdr(key), json=body)
    assert r.status_code == 200 and r.json()["input_tokens"] >= 750  # the fake counts the file's content
    assert daily_usage(gw, "counter") == 0 == billed(fake)


def test_images_and_pdfs_are_reserved_by_what_they_are(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    import struct

    gw = gateway_factory()
    key = gw.create_key("media", "--daily-tokens", "1000000")
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 3000, 2000) + b"\x08\x02\0\0\0"
    from tests.support.pdfmake import make_pdf

    pdf = make_pdf(["one", "two", "three", "four"])  # a PDF pypdf reads: the upload filter reads its text
    image_id = upload(gw, key, png, "photo.png", "image/png")
    pdf_id = upload(gw, key, pdf, "doc.pdf", "application/pdf")
    content = [
        {"type": "image", "source": {"type": "file", "file_id": image_id}},
        {"type": "document", "source": {"type": "file", "file_id": pdf_id}},
        {"type": "text", "text": "describe"},
    ]
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg(content, 10))
    assert r.status_code == 200, r.text
    rec = gw.record(r.headers)
    # 4 pages at 4,600 and one downscaled image at most 1,600, plus the body.
    assert 4 * 4_600 + 1_500 < rec["reserved_tokens"] < 4 * 4_600 + 1_600 + 200
    assert rec["input_tokens"] == fake.state.billed[-1].input_tokens > 4 * 3_000
    assert daily_usage(gw, "media") == billed(fake)  # settled to what upstream reported


def test_url_sources_and_server_tools_are_reserved_at_the_configured_ceiling(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    url_doc = [{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
               {"type": "text", "text": "read"}]  # fmt: skip
    gw = gateway_factory()
    key = gw.create_key("web", "--daily-tokens", "50000")
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg(url_doc))
    assert r.status_code == 429  # the default ceiling, 100,000 tokens, is over the budget
    search = {"type": "web_search_20250305", "name": "web_search"}
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("find it", tools=[search]))
    assert r.status_code == 429  # 10 uses x 25,000 by default
    assert fake.state.requests_for("/v1/messages") == []

    gw2 = gateway_factory({"limits": {"url_source_tokens": 6_000, "server_tool_use_tokens": 4_000}}, name="gw2")
    key2 = gw2.create_key("web2", "--daily-tokens", "50000")
    r = httpx.post(gw2.url + "/v1/messages", headers=hdr(key2), json=msg(url_doc))
    assert r.status_code == 200, r.text
    assert gw2.record(r.headers)["reserved_tokens"] > 6_000
    assert daily_usage(gw2, "web2") == billed(fake) > 5_000  # the fake bills a URL source 5,000
    r = httpx.post(gw2.url + "/v1/messages", headers=hdr(key2), json=msg("find", tools=[{**search, "max_uses": 2}]))
    assert r.status_code == 200 and gw2.record(r.headers)["reserved_tokens"] > 8_000


def test_server_tools_without_bounds_get_the_reserved_ones(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory({"limits": {"server_tool_use_tokens": 1_000, "server_tool_default_uses": 3}})
    key = gw.create_key("fetcher", "--daily-tokens", "100000")
    tools: list[dict[str, Any]] = [{"type": "web_fetch_20250910", "name": "web_fetch"},
             {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]  # fmt: skip
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("fetch it", tools=tools))
    assert r.status_code == 200, r.text
    sent = fake.state.requests_for("/v1/messages")[-1].json
    # Upstream is told the bounds the reservation assumed; a tool's own bounds are kept.
    assert sent["tools"][0] == {**tools[0], "max_uses": 3, "max_content_tokens": 1_000}
    assert sent["tools"][1] == tools[1]
    assert gw.record(r.headers)["reserved_tokens"] > 3 * 1_000 + 2 * 1_000


def test_a_bad_limits_knob_is_a_config_error(gateway_factory: GatewayFactory) -> None:
    with pytest.raises(RuntimeError, match=r"limits\.url_source_tokens"):
        gateway_factory({"limits": {"url_source_tokens": 0}})
    with pytest.raises(RuntimeError, match=r"did you mean limits\.url_source_tokens"):
        gateway_factory({"limits": {"url_source_token": 5}}, name="gw2")


# -- the daily budget is exact across processes -----------------------------------------


def test_two_processes_cannot_both_admit_the_last_of_a_day(tmp_path: Path, fake: FakeAnthropic) -> None:
    blue = make_gateway(tmp_path / "blue", fake.url, fake.api_key)
    green = make_gateway(tmp_path / "green", fake.url, fake.api_key, share_keystore=blue)
    key = blue.create_key("tight", "--daily-tokens", "10000")
    blue.start()
    green.start()
    fake.state.configure(latency=1.0)
    statuses: list[int] = []
    try:
        def send(gw: GatewayProc) -> None:
            r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("hi", 9_000), timeout=30)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=send, args=(g,)) for g in (blue, green, blue, green)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        blue.stop()
        green.stop()
    assert sorted(statuses) == [200, 429, 429, 429]
    assert len(fake.state.requests_for("/v1/messages")) == 1
    assert daily_usage(blue, "tight") == billed(fake) < 10_000


# -- batches ---------------------------------------------------------------------------


def test_a_batch_is_settled_in_the_background_against_the_day_it_was_charged(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory({"batch_poll_seconds": 0.2})
    key = gw.create_key("batcher", "--daily-tokens", "1000000")
    file_id = upload(gw, key, b"words " * 2_000)
    fake.state.configure(batch_processing_seconds=1.0)
    body = {"requests": [{"custom_id": f"r{i}", "params": msg(doc_ref(file_id), 500)} for i in range(3)]}
    r = httpx.post(gw.url + "/v1/messages/batches", headers=hdr(key), json=body)
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    created = gw.record(r.headers)
    assert created["operation"] == "batches.create"
    # Charged the whole reservation at creation: three references to the file and 3 x max_tokens.
    assert daily_usage(gw, "batcher") == created["reserved_tokens"] > 3 * (12_000 // 3) + 1_500
    deadline = time.monotonic() + 15
    settled: list[dict[str, Any]] = []
    while not settled and time.monotonic() < deadline:
        settled = [r for r in gw.audit() if r.get("event") == "batch_settled"]
        time.sleep(0.1)
    assert settled, "the gateway did not settle the batch by itself"
    # The key's list shows the batch ended, from the poll's view: no client get, no upstream list.
    listing = httpx.get(gw.url + "/v1/messages/batches", headers=hdr(key))
    listed = listing.json()["data"]
    assert [(b["id"], b["processing_status"]) for b in listed] == [(batch_id, "ended")]
    assert listed[0]["results_url"] == f"/v1/messages/batches/{batch_id}/results"
    assert not [q for q in fake.state.requests if q.path == "/v1/messages/batches" and q.method == "GET"]
    rec = settled[0]
    assert rec["batch_id"] == batch_id and rec["key_name"] == "batcher"
    assert rec["reserved_tokens"] == created["reserved_tokens"]
    # The client never asked for the results: the gateway read them itself.
    assert fake.state.requests_for(f"/v1/messages/batches/{batch_id}/results")
    batch_billed = sum(b.tokens for b in fake.state.billed if b.path == "/v1/messages/batches")
    assert rec["used_tokens"] == batch_billed > 3 * 3_000
    assert rec["settled_tokens"] == batch_billed - created["reserved_tokens"] < 0
    assert daily_usage(gw, "batcher") == billed(fake) == batch_billed
    assert rec["input_tokens"] + rec["output_tokens"] == batch_billed and rec["output_tokens"] > 0
    # `claudegate usage` counts the settlement as the key's tokens, not as a request.
    from claudegate.usage import summarize

    gw.record(listing.headers)  # the list's line is written as its answer ends: wait for it
    row = next(r for r in summarize(gw.audit_path.read_bytes().splitlines())[0] if r.client == "batcher")
    assert row.requests == 3 and row.input_tokens + row.output_tokens == batch_billed  # upload, batch, list
    time.sleep(0.6)  # later polls do not settle it again
    assert len([r for r in gw.audit() if r.get("event") == "batch_settled"]) == 1
    assert daily_usage(gw, "batcher") == batch_billed


# -- every operation counts against rpm --------------------------------------------------


def test_lists_count_against_rpm_and_never_ask_upstream(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("lister", "--rpm", "4")
    other = gw.create_key("other")
    upload(gw, key, b"mine")  # 1
    for i in range(3):
        upload(gw, other, f"theirs {i}".encode(), f"t{i}.txt")
    fake.state.clear_requests()
    # limit=1 with other clients' files newer than the caller's: answered from the
    # gateway's own index, no upstream page at all (there was a fan-out here once).
    r = httpx.get(gw.url + "/v1/files?limit=1", headers=hdr(key))  # 2
    assert r.status_code == 200 and len(r.json()["data"]) == 1
    assert httpx.get(gw.url + "/v1/messages/batches", headers=hdr(key)).json()["data"] == []  # 3
    assert httpx.get(gw.url + "/v1/files", headers=hdr(key)).status_code == 200  # 4
    assert fake.state.requests == []
    for method, path in (("GET", "/v1/files"), ("GET", "/v1/messages/batches"), ("GET", "/v1/models"),
                         ("POST", "/v1/messages/count_tokens")):  # fmt: skip
        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]} if method == "POST" else None
        r = httpx.request(method, gw.url + path, headers=hdr(key), json=body)
        assert r.status_code == 429, (path, r.text)
        assert r.json()["error"]["type"] == "rate_limit_error"
    assert fake.state.requests == []


def test_refused_requests_count_against_rpm_too(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("refused", "--rpm", "3", "--models", "claude-haiku-*")
    h = {**hdr(key), "content-type": "application/json"}
    assert httpx.post(gw.url + "/v1/messages", headers=h, content=b"{not json").status_code == 400
    assert httpx.post(gw.url + "/v1/messages", headers=h, json=msg("hi")).status_code == 403  # model not allowed
    body = {**msg(doc_ref("file_not_mine")), "model": "claude-haiku-4-5"}
    assert httpx.post(gw.url + "/v1/messages", headers=h, json=body).status_code == 404
    r = httpx.post(gw.url + "/v1/messages", headers=h, json={**msg("hi"), "model": "claude-haiku-4-5"})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert fake.state.requests == []


def test_probing_ids_that_are_not_the_callers_costs_rpm(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("prober", "--rpm", "3")
    for i in range(3):
        r = httpx.get(gw.url + f"/v1/files/file_guess{i}", headers=hdr(key))
        assert r.status_code == 404
    r = httpx.delete(gw.url + "/v1/messages/batches/msgbatch_guess", headers=hdr(key))
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert fake.state.requests == []


# -- streams dropped at any point ---------------------------------------------------------


def _drop(gw: GatewayProc, key: str, body: bytes, after: bytes | None, wait: float = 0.0) -> bytes:
    """Send a request and hang up once `after` was seen (None: after `wait` seconds, before any answer)."""
    seen = b""
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + key.encode()
                  + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        if after is None:
            time.sleep(wait)
        else:
            s.settimeout(10)
            while after not in seen:
                chunk = s.recv(65536)
                if not chunk:
                    break
                seen += chunk
    return seen


@pytest.mark.parametrize(
    ("where", "after"),
    [("before upstream's headers", None), ("after message_start", b"message_start"),
     ("mid-block", b"content_block_delta")],
)  # fmt: skip
def test_a_stream_dropped_at_any_point_keeps_its_reservation(
    gateway_factory: GatewayFactory, fake: FakeAnthropic, where: str, after: bytes | None
) -> None:
    gw = gateway_factory()
    key = gw.create_key("dropper", "--daily-tokens", "1000000")
    if after is None:
        fake.state.configure(latency=0.8)
    else:
        fake.state.configure(event_delay=0.15)
    body = json.dumps(msg("reply with 30 words", 2_000, stream=True)).encode()
    seen = _drop(gw, key, body, after, wait=0.2)
    assert b"message_delta" not in seen, where
    # By its key, the one request it made: dropped before its headers (the first case), it has no request id.
    # Written once upstream answered (so after the fake billed) and the reservation settled.
    rec = gw.record_where(key_name="dropper", operation="messages.create")
    assert rec["status"] == 499 and rec["error_type"] == "client_closed", (where, rec)
    reservation = len(body) // 3 + 1 + 2_000
    assert rec["reserved_tokens"] == reservation
    assert daily_usage(gw, "dropper") == reservation >= billed(fake) > 0
    no_traceback(gw)


def test_a_stream_whose_client_and_upstream_go_at_once_is_a_quiet_disconnect(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    """Both ends of a stream drop together (a host shutting down): the upstream break makes
    the gateway write its error event to a client already gone. That write was an uncaught
    reset: a traceback in the log and a 500 in the audit."""
    from tests.support.tcp_relay import TcpRelay

    port = int(fake.url.rsplit(":", 1)[1])
    with TcpRelay(port) as relay:
        gw = gateway_factory({"upstream": {"base_url": f"http://127.0.0.1:{relay.port}"}})
        key = gw.create_key("both", "--daily-tokens", "1000000")
        fake.state.configure(event_delay=0.3)
        body = json.dumps(msg("reply with 30 words", 2_000, stream=True)).encode()
        seen = _drop(gw, key, body, b"message_start")  # the client hangs up...
        relay.cut()  # ...and upstream goes with it, before the next event
        rec = gw.record(raw_headers(seen))
    assert rec["status"] == 499 and rec["error_type"] == "client_closed", rec
    assert daily_usage(gw, "both") == rec["reserved_tokens"] >= billed(fake)
    no_traceback(gw)


def test_a_whole_answer_the_client_left_before_is_charged_its_usage_quietly(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("quitter", "--daily-tokens", "1000000")
    fake.state.configure(latency=0.8)
    body = json.dumps(msg("reply with 30 words", 2_000)).encode()
    _drop(gw, key, body, None, wait=0.2)
    # By its key, the one request it made: the client left before the headers, so it never saw its request id.
    rec = gw.record_where(key_name="quitter", operation="messages.create")
    # Upstream's final usage arrived (the answer was whole): that is the charge, not the reservation.
    assert rec["operation"] == "messages.create" and rec["status"] in (200, 499)
    assert daily_usage(gw, "quitter") == billed(fake) == rec["input_tokens"] + rec["output_tokens"] > 0
    no_traceback(gw)


def test_a_keystore_locked_elsewhere_fails_closed_without_a_traceback(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("locked", "--daily-tokens", "100000")
    holder = sqlite3.connect(gw.keystore_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    try:
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("hi"), timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error" and r.headers["retry-after"]
    assert fake.state.requests == []
    assert httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("hi")).status_code == 200
    no_traceback(gw)


def test_a_keystore_locked_at_settlement_keeps_the_reservation(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("unsettled", "--daily-tokens", "100000")
    fake.state.configure(latency=1.0)
    got: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: got.append(
        httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=msg("hi", 500), timeout=30)))
    sender.start()
    time.sleep(0.5)  # admitted (the reservation is in the keystore), upstream still thinking
    holder = sqlite3.connect(gw.keystore_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        sender.join(20)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert got and got[0].status_code == 200
    rec = gw.record(got[0].headers)
    assert daily_usage(gw, "unsettled") == rec["reserved_tokens"] > billed(fake)
    assert "settlement skipped" in gw.log_path.read_text()
    no_traceback(gw)
