"""Attacks on what one client shares with others, and on what it pays.

Each test plays the attacker against the real gateway process, checks the
attack failed, and checks what the recording fake upstream received: a
refused request must not have reached it at all.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway, raw_headers

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
SECRET = "AKIAIOSFODNN7EXAMPLE"


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def msg(text: str, max_tokens: int = 20, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}], **extra}


def upstream_paths(fake: FakeAnthropic, needle: str = "") -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.state.requests if needle in r.path or needle in r.text]


def not_found(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 404, r.text
    body = r.json()
    assert set(body) == {"type", "error", "request_id"} and body["error"]["type"] == "not_found_error"
    return body


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    """One gateway for the ownership tests: clients alice and bob.

    Its batch poll never comes round while they run (it waits an hour first): the
    poll's own calls upstream would land among what a test says reached upstream.
    """
    proc = make_gateway(
        tmp_path_factory.mktemp("objects"), fake_anthropic.url, fake_anthropic.api_key,
        {"max_upload_bytes": 200_000, "batch_poll_seconds": 3600},
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(gw: GatewayProc) -> dict[str, str]:
    return {"alice": gw.create_key("alice"), "bob": gw.create_key("bob")}


def create_batch(gw: GatewayProc, key: str, n: int = 1) -> str:
    body = {"requests": [{"custom_id": f"r{i}", "params": msg("hi", 10)} for i in range(n)]}
    r = httpx.post(gw.url + "/v1/messages/batches", headers=hdr(key), json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def upload(gw: GatewayProc, key: str, data: bytes, name: str = "notes.txt", mime: str = "text/plain",
           **extra: tuple[str | None, bytes, str]) -> httpx.Response:
    files: dict[str, Any] = {"file": (name, data, mime), **extra}
    return httpx.post(gw.url + "/v1/files", headers=hdr(key), files=files)


# -- ownership: batches -------------------------------------------------------------


def test_another_clients_batch_answers_exactly_like_a_missing_one(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    batch = create_batch(gw, keys["alice"])
    fake.state.clear_requests()
    missing = "msgbatch_01NoSuchBatchAtAll0000"
    for method, suffix in (("GET", ""), ("GET", "/results"), ("POST", "/cancel"), ("DELETE", "")):
        theirs = httpx.request(method, f"{gw.url}/v1/messages/batches/{batch}{suffix}", headers=hdr(keys["bob"]))
        nothing = httpx.request(method, f"{gw.url}/v1/messages/batches/{missing}{suffix}", headers=hdr(keys["bob"]))
        a, b = not_found(theirs), not_found(nothing)
        assert a["error"]["message"].replace(batch, "ID") == b["error"]["message"].replace(missing, "ID")
        assert theirs.headers.keys() - {"date"} == nothing.headers.keys() - {"date"}
    assert upstream_paths(fake) == []  # bob's attempts never reached upstream
    # The owner still can: and only the owner's request went upstream.
    r = httpx.get(f"{gw.url}/v1/messages/batches/{batch}", headers=hdr(keys["alice"]))
    assert r.status_code == 200 and r.json()["id"] == batch
    assert upstream_paths(fake) == [f"GET /v1/messages/batches/{batch}"]


def test_owner_reads_results_through_the_gateway_with_the_sdk(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    client = anthropic.Anthropic(api_key=keys["alice"], base_url=gw.url, max_retries=0)
    batch = client.messages.batches.create(
        requests=[{"custom_id": "a", "params": msg("reply with 3 words", 10)}]  # type: ignore[list-item]
    )
    got = client.messages.batches.retrieve(batch.id)
    # results_url points at the gateway, not upstream: the SDK resolves the path against its base URL.
    assert got.results_url == f"/v1/messages/batches/{batch.id}/results"
    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["a"]
    bob = anthropic.Anthropic(api_key=keys["bob"], base_url=gw.url, max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        bob.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        bob.messages.batches.delete(batch.id)
    assert client.messages.batches.delete(batch.id).id == batch.id
    # Deleted: not even the former owner can name it any more, and upstream is not asked.
    fake.state.clear_requests()
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert upstream_paths(fake) == []


def test_batches_made_outside_the_gateway_belong_to_nobody(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    direct = anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)
    outside = direct.messages.batches.create(
        requests=[{"custom_id": "x", "params": msg("hi", 5)}]  # type: ignore[list-item]
    )
    fake.state.clear_requests()
    for key in keys.values():
        not_found(httpx.get(f"{gw.url}/v1/messages/batches/{outside.id}", headers=hdr(key)))
        listed = httpx.get(gw.url + "/v1/messages/batches", headers=hdr(key)).json()
        assert outside.id not in [b["id"] for b in listed["data"]]
    assert all("/v1/messages/batches/" not in p for p in upstream_paths(fake))


def test_batch_lists_hold_only_the_callers_own_with_correct_pagination(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    direct = anthropic.Anthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)
    # Fresh keys: the module's gateway outlives the fake's state of earlier tests.
    keys = {"alice": gw.create_key("pager-a"), "bob": gw.create_key("pager-b")}
    mine: list[str] = []
    for i in range(12):  # interleave alice's, bob's and outside batches
        mine.append(create_batch(gw, keys["alice"]))
        create_batch(gw, keys["bob"])
        if i % 3 == 0:
            direct.messages.batches.create(requests=[{"custom_id": "x", "params": msg("hi", 5)}])  # type: ignore[list-item]
    newest_first = list(reversed(mine))
    # Walk by hand: pages of 5, after_id = last_id.
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "5", **({"after_id": after} if after else {})}
        page = httpx.get(gw.url + "/v1/messages/batches", headers=hdr(keys["alice"]), params=params).json()
        ids = [b["id"] for b in page["data"]]
        assert ids and page["first_id"] == ids[0] and page["last_id"] == ids[-1]
        seen += ids
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == newest_first
    assert len(seen) == 12  # and has_more was false exactly on the last page
    # Backwards from the oldest: before_id pages run towards newer objects.
    back = httpx.get(gw.url + "/v1/messages/batches", headers=hdr(keys["alice"]),
                     params={"limit": "4", "before_id": newest_first[-1]}).json()
    assert [b["id"] for b in back["data"]] == newest_first[-5:-1] and back["has_more"] is True
    # The SDK's auto-pagination sees exactly alice's.
    sdk = anthropic.Anthropic(api_key=keys["alice"], base_url=gw.url, max_retries=0)
    assert [b.id for b in sdk.messages.batches.list(limit=3)] == newest_first
    for b in httpx.get(gw.url + "/v1/messages/batches", headers=hdr(keys["alice"])).json()["data"]:
        assert b["results_url"] in (None, f"/v1/messages/batches/{b['id']}/results")


def test_a_list_cursor_is_no_oracle_for_other_clients_ids(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    theirs = create_batch(gw, keys["alice"])
    create_batch(gw, keys["bob"])
    fake.state.clear_requests()
    answers = []
    for cursor in (theirs, "msgbatch_01NoSuchBatchAtAll0000", "cgpos_0123456789abcdef01234567_" + theirs):
        for name in ("after_id", "before_id"):
            r = httpx.get(gw.url + "/v1/messages/batches", headers=hdr(keys["bob"]), params={name: cursor})
            assert r.status_code == 200, r.text
            answers.append(r.json())
    assert all(a == {"data": [], "has_more": False, "first_id": None, "last_id": None} for a in answers)
    assert upstream_paths(fake) == []  # decided without asking upstream whether the id exists


# -- ownership: files ---------------------------------------------------------------


def test_another_clients_file_answers_exactly_like_a_missing_one(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    r = upload(gw, keys["alice"], b"alice's notes")
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    fake.state.clear_requests()
    missing = "file_011CNoSuchFileAtAll0"
    for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        theirs = httpx.request(method, f"{gw.url}/v1/files/{file_id}{suffix}", headers=hdr(keys["bob"]))
        nothing = httpx.request(method, f"{gw.url}/v1/files/{missing}{suffix}", headers=hdr(keys["bob"]))
        a, b = not_found(theirs), not_found(nothing)
        assert a["error"]["message"].replace(file_id, "ID") == b["error"]["message"].replace(missing, "ID")
    assert upstream_paths(fake) == []
    assert httpx.get(f"{gw.url}/v1/files/{file_id}/content", headers=hdr(keys["alice"])).content == b"alice's notes"


def test_file_lists_hold_only_the_callers_own_and_the_sdk_pages_through(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    # Fresh keys: the module's gateway outlives the fake's state of earlier tests.
    keys = {"alice": gw.create_key("filer-a"), "bob": gw.create_key("filer-b")}
    mine = []
    for i in range(7):
        mine.append(upload(gw, keys["alice"], f"a{i}".encode(), f"a{i}.txt").json()["id"])
        upload(gw, keys["bob"], f"b{i}".encode(), f"b{i}.txt")
    sdk = anthropic.Anthropic(api_key=keys["alice"], base_url=gw.url, max_retries=0)
    listed = [f.id for f in sdk.beta.files.list(limit=3)]
    assert listed == list(reversed(mine))
    first = httpx.get(gw.url + "/v1/files", headers=hdr(keys["alice"]), params={"limit": "7"}).json()
    assert [f["id"] for f in first["data"]] == list(reversed(mine))
    assert first["has_more"] is False and first["next_page"] is None
    forged = httpx.get(gw.url + "/v1/files", headers=hdr(keys["alice"]), params={"page": "page_eyJ4Ijox"})
    assert forged.status_code == 400
    # The id cursors work on files too, and skip bob's in between.
    page = httpx.get(gw.url + "/v1/files", headers=hdr(keys["alice"]),
                     params={"limit": "2", "after_id": mine[-2]}).json()
    assert [f["id"] for f in page["data"]] == [mine[-3], mine[-4]] and page["has_more"] is True
    bob_sees = httpx.get(gw.url + "/v1/files", headers=hdr(keys["bob"]), params={"limit": "1000"}).json()
    assert not set(mine) & {f["id"] for f in bob_sees["data"]}


def test_referencing_another_clients_file_is_refused_everywhere(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    theirs = upload(gw, keys["alice"], b"alice's private document").json()["id"]
    own = upload(gw, keys["bob"], b"bob's document").json()["id"]
    doc = {"type": "document", "source": {"type": "file", "file_id": theirs}}
    bodies = [
        msg_blocks([doc, {"type": "text", "text": "summarise"}]),
        msg_blocks([{"type": "image", "source": {"type": "file", "file_id": theirs}}]),
        {"model": MODEL, "max_tokens": 10, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [doc]}]},
        ]},
    ]
    fake.state.clear_requests()
    for body in bodies:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            not_found(httpx.post(gw.url + path, headers=hdr(keys["bob"]), json=body))
    batch = {"requests": [{"custom_id": "a", "params": bodies[0]}]}
    not_found(httpx.post(gw.url + "/v1/messages/batches", headers=hdr(keys["bob"]), json=batch))
    assert upstream_paths(fake) == []
    # A non-string or odd file_id is refused, not looked up or forwarded.
    odd = msg_blocks([{"type": "document", "source": {"type": "file", "file_id": ["x"]}}])
    assert httpx.post(gw.url + "/v1/messages", headers=hdr(keys["bob"]), json=odd).status_code == 400
    ok = msg_blocks([{"type": "document", "source": {"type": "file", "file_id": own}}, {"type": "text", "text": "hi"}])
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(keys["bob"]), json=ok)
    assert r.status_code != 404, r.text
    assert upstream_paths(fake) == ["POST /v1/messages"]


def msg_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": blocks}]}


# -- uploads ------------------------------------------------------------------------


def test_uploads_are_filtered_whatever_they_claim_to_be(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    fake.state.clear_requests()
    for name, mime, data in (
        ("creds.txt", "text/plain", f"aws key {SECRET}".encode()),
        ("photo.png", "image/png", f"aws key {SECRET}".encode()),  # text dressed as an image
        ("u16.txt", "application/octet-stream", f"aws key {SECRET}".encode("utf-16")),
        (f"name-{SECRET}.txt", "text/plain", b"harmless"),  # the file name is scanned too
    ):
        r = upload(gw, keys["alice"], data, name, mime)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (name, r.text)
    assert upstream_paths(fake) == []
    # A binary file is not scanned (the README says so) and passes.
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    assert upload(gw, keys["alice"], png, "real.png", "image/png").status_code == 200


def test_upload_shape_and_size_attacks(gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic) -> None:
    fake.state.clear_requests()
    r = upload(gw, keys["alice"], b"x" * 300_000)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    # A second, unknown field could carry what upstream reads but the gateway did not scan.
    r = upload(gw, keys["alice"], b"ok", purpose=(None, SECRET.encode(), "text/plain"))
    assert r.status_code == 400 and "purpose" in r.json()["error"]["message"]
    two = httpx.post(gw.url + "/v1/files", headers=hdr(keys["alice"]),
                     files=[("file", ("a.txt", b"a", "text/plain")), ("file", ("b.txt", b"b", "text/plain"))])
    assert two.status_code == 400
    boundary = "XyZ"
    encoded = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
               f"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nQUtJQQ==\r\n--{boundary}--\r\n")
    r = httpx.post(gw.url + "/v1/files", headers={**hdr(keys["alice"]),
                   "content-type": f"multipart/form-data; boundary={boundary}"}, content=encoded.encode())
    assert r.status_code == 400
    r = httpx.post(gw.url + "/v1/files", headers={**hdr(keys["alice"]), "content-type": "application/json"},
                   content=b"{}")
    assert r.status_code == 400
    assert upstream_paths(fake) == []


def test_upload_redaction_reaches_upstream_redacted(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory({"filters": [{"name": "secrets", "detectors": ["all"], "action": "redact"}]})
    key = gw.create_key("r")
    r = upload(gw, key, f"line one\nkey={SECRET}\n".encode(), "conf.txt", "text/plain")
    assert r.status_code == 200, r.text
    sent = fake.state.requests_for("/v1/files", "POST")[-1]
    assert SECRET.encode() not in sent.body and b"[REDACTED:secrets]" in sent.body
    assert b'filename="conf.txt"' in sent.body


def gateway_children(gw: GatewayProc) -> set[int]:
    assert gw.proc is not None
    pids: set[int] = set()
    for task in Path(f"/proc/{gw.proc.pid}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def test_large_text_upload_is_filtered_in_the_worker(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory({"max_upload_bytes": 4_000_000})
    key = gw.create_key("big")
    filler = b"lorem ipsum dolor sit amet\n" * 80_000  # ~2.2 MB: above the inline limit
    assert gateway_children(gw) == set()  # no worker until a large body needs one
    r = upload(gw, key, filler + f"key {SECRET}\n".encode(), "big.txt", "application/octet-stream")
    assert r.status_code == 400, r.text
    assert fake.state.requests_for("/v1/files") == []
    assert gateway_children(gw), "the large file was not filtered in the worker process"
    r = upload(gw, key, filler, "big.txt", "text/plain")
    assert r.status_code == 200, r.text
    sent = fake.state.requests_for("/v1/files", "POST")[-1]
    assert filler in sent.body


# -- metering ---------------------------------------------------------------------


def daily_usage(gw: GatewayProc, name: str) -> int:
    with sqlite3.connect(gw.keystore_path) as db:
        row = db.execute("SELECT SUM(tokens) FROM daily_usage WHERE name = ?", (name,)).fetchone()
    return int(row[0] or 0)


def raw_stream(gw: GatewayProc, key: str, body: bytes, stop_before: bytes) -> bytes:
    """Send a streaming request and hang up as soon as `stop_before` would be next."""
    seen = b""
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + key.encode()
                  + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        while stop_before not in seen:
            chunk = s.recv(65536)
            if not chunk:
                break
            seen += chunk
            if b"content_block_stop" in seen:
                break  # the next event would be message_delta: leave now
    return seen


def test_stream_abandoned_before_message_delta_pays_the_reservation(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("leaver", "--daily-tokens", "1000000")
    fake.state.configure(event_delay=0.2)
    body = json.dumps(msg("reply with 5 words", 3000, stream=True)).encode()
    seen = raw_stream(gw, key, body, b"message_delta")
    assert b"message_delta" not in seen
    rec = gw.record(raw_headers(seen))
    assert rec["error_type"] == "client_closed"
    gw.stop()  # flushes the daily usage
    reservation = len(body) // 3 + 1 + 3000
    assert daily_usage(gw, "leaver") == reservation


def test_upstream_break_pays_the_reservation_not_less_than_upstream_billed(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    # Upstream broke off before its final usage: it generated (and bills) more
    # than message_start reported, so the charge is the reservation.
    gw = gateway_factory()
    key = gw.create_key("victim", "--daily-tokens", "1000000")
    fake.state.disconnect_mid_stream(after=3)
    body = json.dumps(msg("reply with 50 words", 3000, stream=True)).encode()
    with httpx.stream("POST", gw.url + "/v1/messages", headers={**hdr(key), "content-type": "application/json"},
                      content=body) as r:
        text = "".join(r.iter_text())
    assert "event: error" in text
    rec = gw.record(r.headers)
    assert rec["error_type"] == "upstream_stream_broken" and rec["reserved_tokens"] == len(body) // 3 + 1 + 3000
    gw.stop()
    billed = sum(b.tokens for b in fake.state.billed)
    assert daily_usage(gw, "victim") == rec["reserved_tokens"] >= billed > rec["input_tokens"] + rec["output_tokens"]


def test_finished_stream_pays_actual_usage(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("fair", "--daily-tokens", "1000000")
    with httpx.stream("POST", gw.url + "/v1/messages", headers=hdr(key),
                      json=msg("reply with 5 words", 3000, stream=True)) as r:
        r.read()
    rec = gw.record(r.headers)
    gw.stop()
    assert daily_usage(gw, "fair") == rec["input_tokens"] + rec["output_tokens"] < 100


def test_batch_is_charged_its_reservation_and_cannot_outrun_the_budget(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("batcher", "--daily-tokens", "30000", "--tpm", "25000")
    huge = {"requests": [{"custom_id": f"r{i}", "params": msg("hi", 10_000)} for i in range(3)]}
    r = httpx.post(gw.url + "/v1/messages/batches", headers=hdr(key), json=huge)
    assert r.status_code in (400, 429), r.text
    assert fake.state.requests_for("/v1/messages/batches") == []
    small = {"requests": [{"custom_id": f"r{i}", "params": msg("hi", 10_000)} for i in range(2)]}
    raw = json.dumps(small).encode()
    r = httpx.post(gw.url + "/v1/messages/batches", headers={**hdr(key), "content-type": "application/json"},
                   content=raw)
    assert r.status_code == 200, r.text
    # The TPM window now holds the whole reservation: a second one is refused.
    r2 = httpx.post(gw.url + "/v1/messages/batches", headers={**hdr(key), "content-type": "application/json"},
                    content=raw)
    assert r2.status_code == 429
    assert len(fake.state.requests_for("/v1/messages/batches")) == 1
    gw.stop()
    assert daily_usage(gw, "batcher") == len(raw) // 3 + 1 + 20_000


def test_two_gateway_processes_on_one_keystore_add_up(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    blue = make_gateway(tmp_path / "blue", fake.url, fake.api_key)
    green = make_gateway(tmp_path / "green", fake.url, fake.api_key, share_keystore=blue)
    key = blue.create_key("shared", "--daily-tokens", "10000000")
    blue.start()
    green.start()
    try:
        def hammer(gw: GatewayProc) -> None:
            with httpx.Client(headers=hdr(key)) as c:
                for i in range(15):
                    assert c.post(gw.url + "/v1/messages", json=msg(f"reply with {i + 1} words", 50)).status_code == 200

        threads = [threading.Thread(target=hammer, args=(g,)) for g in (blue, green)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        blue.stop()
        green.stop()
    spent = sum(r["input_tokens"] + r["output_tokens"] for g in (blue, green) for r in g.audit(15))
    assert len(blue.audit()) == len(green.audit()) == 15
    assert daily_usage(blue, "shared") == spent


# -- concurrency --------------------------------------------------------------------


def test_in_flight_cap_and_a_slow_key_does_not_starve_another(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory({"max_in_flight_per_key": 2, "upstream": {"max_connections": 4}})
    slow, quick = gw.create_key("slow"), gw.create_key("quick")
    fake.state.hang(seconds=3, count=-1, body_contains="slow-marker")
    results: list[int] = []

    def hold() -> None:
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(slow), json=msg("slow-marker"), timeout=30)
        results.append(r.status_code)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    deadline = time.monotonic() + 5
    while len(fake.state.requests_for("/v1/messages")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    third = httpx.post(gw.url + "/v1/messages", headers=hdr(slow), json=msg("slow-marker"))
    assert third.status_code == 429 and third.json()["error"]["type"] == "rate_limit_error"
    assert third.headers["retry-after"] == "1"
    started = time.monotonic()
    for _ in range(3):
        r = httpx.post(gw.url + "/v1/messages", headers=hdr(quick), json=msg("quick"), timeout=10)
        assert r.status_code == 200
    assert time.monotonic() - started < 1.5
    for t in holders:
        t.join()
    assert results == [200, 200]
    # Exactly the two admitted slow requests reached upstream, not the refused third.
    assert sum("slow-marker" in r.text for r in fake.state.requests_for("/v1/messages")) == 2


def test_in_flight_cap_above_half_the_pool_is_a_config_error(gateway_factory: GatewayFactory) -> None:
    with pytest.raises(RuntimeError, match="max_in_flight_per_key"):
        gateway_factory({"max_in_flight_per_key": 200, "upstream": {"max_connections": 256}})


# -- bounded logs -------------------------------------------------------------------


def test_audit_lines_stay_small_whatever_the_client_sends(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    sent = [
        httpx.post(gw.url + "/v1/messages", headers=hdr(keys["alice"]),
                   json={"model": "m" * 5_000_000, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                   timeout=30),
        httpx.get(gw.url + "/v1/" + "a" * 8000, headers=V),  # no key at all
    ]
    # Their lines by request id (once written), not the file's last two: the gateway is the module's.
    ids = {gw.record(r.headers)["request_id"] for r in sent}
    whole = gw.audit_path.read_bytes().split(b"\n")[:-1]  # another request's line may be half written
    lines = [line for line in whole if json.loads(line).get("request_id") in ids]
    assert len(lines) == 2
    assert all(len(line) < 4096 for line in lines), [len(line) for line in lines]
