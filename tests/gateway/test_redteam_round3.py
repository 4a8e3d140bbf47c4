"""Red team, round 3: attacks on what the filters and cursors branches added.

Each test is a hostile client's move. The unit tests drive the policy; the
end-to-end ones run a real gateway process against the recording fake and
check what the fake saw. Every hole found here failed before its fix:

* a UTF-16 byte order mark in front of plain bytes made the upload filter
  read CJK where upstream (and the model) read ASCII: a secret went through;
* a secret cut in three or four pieces with a word character touching both
  ends matched in no join (the pair joins held two pieces only);
* a content block of a type the API does not have, and the ids a client
  chooses (tool_use ``id``, ``tool_use_id``) were not scanned, yet upstream
  reads them (and quotes them in its errors);
* U+FFF9..U+FFFB (interlinear annotation marks, drawn by no font) split a
  key for the regexes and not for a reader; so did combining marks (composed
  by NFKC into accented letters, or left standing on ``Q``, ``_`` or ``-``);
* a secret over three text blocks of a *response* (a short middle block)
  passed: the crossing check saw only the last block's end.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claudegate_gateway.cursors import CursorBox
from claudegate_gateway.filters import FilterPolicy, FilterResult
from claudegate_gateway.uploads import Upload, filter_upload
from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

SECRET = "sk-ant-api03-" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm" * 3
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}])
BLOCK = FilterPolicy.default()
MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}


def message(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": content}], **extra}


def texts(*parts: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": p} for p in parts]


def fake_saw(fake: FakeAnthropic, needle: str) -> bool:
    return any(needle.encode() in r.body or needle in r.raw_query for r in fake.state.requests)


@pytest.fixture
def redact_gw(gateway_factory: GatewayFactory) -> tuple[str, str]:
    gw = gateway_factory({"filters": [{"name": "secrets", "detectors": ["all"], "action": "redact",
                                       "direction": "both"}]})
    return gw.url, gw.create_key("team")


# -- uploads: a byte order mark that lies ---------------------------------------------------

LYING_MARKS = {
    "utf-16-le mark": codecs.BOM_UTF16_LE,
    "utf-16-be mark": codecs.BOM_UTF16_BE,
}


def _upload(data: bytes, policy: FilterPolicy) -> tuple[Upload, FilterResult]:
    async def apply(doc: dict[str, Any], size: int) -> FilterResult:
        return policy.apply(doc)

    upload = Upload("notes.txt", "text/plain", data)
    return upload, asyncio.run(filter_upload(apply, upload))


@pytest.mark.parametrize("mark", list(LYING_MARKS))
@pytest.mark.parametrize("secret", [AWS, GITHUB, SECRET])
def test_a_utf16_mark_in_front_of_plain_bytes_hides_nothing(mark: str, secret: str) -> None:
    """Attack: ``\\xff\\xfe`` + ASCII. Read as UTF-16 it is CJK (nothing matches); upstream
    keeps the bytes and whoever reads them as UTF-8 or Latin-1 reads the key."""
    data = LYING_MARKS[mark] + f"my key: {secret} ok.".encode()
    if len(data) % 2:
        data += b" "
    for policy in (BLOCK, REDACT):
        upload, result = _upload(data, policy)
        assert result.blocked is not None and result.blocked.action == "block", (mark, secret[:6])
        assert not upload.redacted


def test_an_honest_utf16_file_is_still_redacted_in_place() -> None:
    for codec, mark in (("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
        data = mark + f"clé: {AWS} 東京".encode(codec)
        upload, result = _upload(data, REDACT)
        assert result.blocked is None and upload.redacted, codec
        assert upload.data.startswith(mark)
        assert upload.data[len(mark):].decode(codec) == "clé: [REDACTED:secrets] 東京"


def test_end_to_end_a_lying_mark_does_not_reach_upstream(redact_gw: tuple[str, str], fake: FakeAnthropic) -> None:
    url, key = redact_gw
    h = {**V, "x-api-key": key}
    data = codecs.BOM_UTF16_LE + f"key={AWS};".encode()
    r = httpx.post(url + "/v1/files", headers=h, files={"file": ("n.txt", data, "text/plain")})
    assert r.status_code in (400, 403) and r.json()["error"]["type"] in ("invalid_request_error", "permission_error")
    assert not fake_saw(fake, AWS)


# -- secrets cut in three or four pieces --------------------------------------------------


@pytest.mark.parametrize("secret", [AWS, GITHUB, SECRET])
@pytest.mark.parametrize("cuts", [3, 4, 5, 6, 7, 8])
def test_a_secret_in_three_to_eight_pieces_touching_word_characters_is_found(secret: str, cuts: int) -> None:
    """Attack: ``x`` + three to eight pieces + ``x``: the glued join reads ``..EXAMPLEx`` (no
    whole token), the spaced one has spaces in the key, and a pair holds only part of it."""
    step = len(secret) // cuts
    pieces = [secret[i * step:(i + 1) * step] for i in range(cuts - 1)] + [secret[(cuts - 1) * step:]]
    for before, after in (("x", "x"), ("Q", "9"), ("", "x"), ("x", "")):
        parts = [p for p in (before, *pieces, after) if p]
        for body in (
            message(texts(*parts)),
            message([{"type": "tool_use", "id": "t", "name": "n", "input": {str(i): p for i, p in enumerate(parts)}}]),
            message(texts(*parts[2:]), system=texts(*parts[:2])),  # pieces in two fields
        ):
            assert BLOCK.apply(body).blocked is not None, (secret[:6], cuts, before, after)
            out = json.dumps(REDACT.apply(body).body)
            assert not all(p in out for p in pieces), (secret[:6], cuts, before, after)


def test_end_to_end_a_secret_in_three_pieces_does_not_reach_upstream(
    redact_gw: tuple[str, str], fake: FakeAnthropic
) -> None:
    url, key = redact_gw
    body = message(texts("x", AWS[:7], AWS[7:13], AWS[13:], "x"))
    r = httpx.post(url + "/v1/messages", headers={**V, "x-api-key": key}, json=body)
    assert r.status_code == 200, r.text
    sent = fake.state.requests_for("/v1/messages")[-1]
    assert AWS[:7].encode() not in sent.body or AWS[13:].encode() not in sent.body
    assert b"[REDACTED:secrets]" in sent.body


# -- fields the walker skipped -------------------------------------------------------------

UNREAD = {
    "an unknown block type's data": message([{"type": "zzz", "data": SECRET}]),
    "an unknown block type's id": message([{"type": "zzz", "id": SECRET}]),
    "the block type itself": message([{"type": SECRET, "text": "a"}]),
    "a tool_use id": {**message(), "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": GITHUB, "name": "n", "input": {}}]},
    ]},
    "a tool_result tool_use_id": message([{"type": "tool_result", "tool_use_id": GITHUB, "content": "x"}]),
    "a server tool result's tool_use_id": message([{"type": "web_search_tool_result", "tool_use_id": GITHUB,
                                                    "content": []}]),
    "a text block's extra field": message([{"type": "text", "text": "a", "note": SECRET}]),
    "an extra field's name": message([{"type": "text", "text": "a", SECRET: 1}]),
    "a tool_result's extra field": message([{"type": "tool_result", "tool_use_id": "t", "content": "x",
                                             "note": {"deep": [SECRET]}}]),
    "a document's extra field": message([{"type": "document", "note": SECRET,
                                          "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]),
    "a thinking block's extra field": {**message(), "messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s", "x": SECRET}]},
    ]},
}


@pytest.mark.parametrize("where", list(UNREAD))
def test_fields_a_client_chooses_are_scanned_and_block(where: str) -> None:
    body = UNREAD[where]
    assert BLOCK.apply(body).blocked is not None, where
    result = REDACT.apply(body)  # not rewritable: an id must match its pair, a type is the shape
    assert result.blocked is not None and result.blocked.action == "block", where


def test_known_blocks_with_real_ids_pass() -> None:
    body = {**message(), "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "sunny"},
            {"type": "container_upload", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
            {"type": "search_result", "source": "https://x", "title": "t", "content": texts("c"),
             "citations": {"enabled": True}},
        ]},
    ]}
    assert BLOCK.apply(body).verdicts == []


def test_end_to_end_an_unknown_block_type_does_not_carry_a_secret_upstream(
    redact_gw: tuple[str, str], fake: FakeAnthropic
) -> None:
    url, key = redact_gw
    for body in UNREAD.values():
        r = httpx.post(url + "/v1/messages", headers={**V, "x-api-key": key}, json=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text
    assert not fake_saw(fake, SECRET) and not fake_saw(fake, GITHUB)


# -- invisible characters ------------------------------------------------------------------


@pytest.mark.parametrize("pad", ["\ufff9", "\ufffa", "\ufffb", "\u200b\ufff9\x00\x85"])
def test_interlinear_annotation_marks_inside_a_secret_are_removed(pad: str) -> None:
    for secret in (SECRET, AWS, GITHUB):
        body = message(f"my key is {pad.join(secret)} ok")
        assert BLOCK.apply(body).blocked is not None, (pad, secret[:6])
        assert REDACT.apply(body).body["messages"][0]["content"] == "my key is [REDACTED:secrets] ok"


@pytest.mark.parametrize("marks", ["\u0301", "\u0334", "\u0301\u0302", "\u0308\u200b\u0301", "\u20d7"])
def test_combining_marks_on_a_secret_are_no_disguise(marks: str) -> None:
    """Attack: a combining mark after every character of the key. NFKC composes some
    (``A`` + U+0301 is ``Á``), leaves others standing (``Q`` + U+0301, ``_`` + U+0301, a second
    mark); a reader still reads the key. Accents of real text stay as they are."""
    card = "4111 1111 1111 1111"
    for secret in (SECRET, AWS, GITHUB, card):
        body = message(f"café naïve Việt, key {marks.join(secret)}{marks} ok ñ")
        assert BLOCK.apply(body).blocked is not None, (marks, secret[:6])
        out = REDACT.apply(body).body["messages"][0]["content"]
        assert "[REDACTED:secrets]" in out and secret[-4:] not in out
    clean = message("café naïve Việt Q\u0301 résumé")
    assert REDACT.apply(clean).verdicts == [] and BLOCK.apply(clean).blocked is None


def test_json_escapes_and_surrogate_pairs_are_read_like_the_characters(
    redact_gw: tuple[str, str], fake: FakeAnthropic
) -> None:
    """Attack: the secret written with \\u00XX escapes, a surrogate pair (U+E0041, an invisible
    tag character) and escaped NULs inside it; the gateway parses JSON before scanning."""
    url, key = redact_gw
    escaped = "".join(f"\\u{ord(c):04x}" for c in AWS[:8]) + "\\udb40\\udc41" + "\\u0000".join(AWS[8:])
    content = "\\ud83d\\ude00 " + escaped + " x"  # JSON text, written by hand: json.dumps would not escape so
    raw = ('{"model": "' + MODEL + '", "max_tokens": 16, "messages": [{"role": "user", "content": "'
           + content + '"}]}').encode()
    r = httpx.post(url + "/v1/messages", headers={**V, "x-api-key": key, "content-type": "application/json"},
                   content=raw)
    assert r.status_code == 200, r.text
    sent = fake.state.requests_for("/v1/messages")[-1].body.decode()
    assert "[REDACTED:secrets]" in json.loads(sent)["messages"][0]["content"]
    assert AWS[8:] not in sent and "\\u0000".join(AWS[8:12]) not in sent


# -- parser errors -------------------------------------------------------------------------

MARK = "zq7redteamMARK"


@pytest.fixture(scope="module")
def lone_gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("rt3"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


def raw_exchange(gw: GatewayProc, data: bytes, timeout: float = 5.0) -> bytes:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    chunks = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


PARSER_ATTACKS = {
    "HTTP/0.9": f"GET /v1/{MARK}\r\n\r\n".encode(),
    "huge request line": f"GET /v1/{MARK}{'a' * 70000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "huge header name": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-{MARK}{'a' * 20000}: 1\r\n\r\n".encode(),
    "too many headers": ("GET /v1/models HTTP/1.1\r\nHost: x\r\n"
                         + "".join(f"X-{MARK}-{i}: v\r\n" for i in range(500)) + "\r\n").encode(),
    "chunk size overflow": (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            f"ffffffffffffffffffffffff\r\n{MARK}\r\n0\r\n\r\n").encode(),
    "negative content length": f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{MARK}".encode(),
    "length and chunked": (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                           f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{MARK}").encode(),
    "obsolete line folding": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n {MARK}\r\n\r\n".encode(),
    "bare LF in a header": f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: 1\n{MARK}: 2\r\n\r\n".encode(),
}


@pytest.mark.parametrize("name", list(PARSER_ATTACKS))
def test_parser_attacks_leak_nothing(lone_gw: GatewayProc, fake: FakeAnthropic, name: str) -> None:
    fake.state.clear_requests()
    raw = raw_exchange(lone_gw, PARSER_ATTACKS[name])
    lowered = raw.lower()
    for leak in (b"aiohttp", b"python", MARK.lower().encode(), b"traceback"):
        assert leak not in lowered, (name, raw[:300])
    if raw:  # an answer (a parser may also just close): Anthropic's shape, our Server header
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"\r\nserver: claudegate" in head.lower(), (name, head)
        status = int(head.split(b" ")[1])
        assert 400 <= status < 500, (name, head)
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        doc = json.loads(body[:length])
        assert doc["type"] == "error" and set(doc) == {"type", "error", "request_id"}, (name, body[:200])
    assert [r for r in fake.state.requests if MARK in r.path or MARK.encode() in r.body] == []


def test_pipelined_garbage_after_a_good_request(lone_gw: GatewayProc, fake: FakeAnthropic) -> None:
    """A good request, then garbage in the same packet: the parser reads both at once and
    refuses the lot (the good one is lost with it: one 400, in our shape, without echo), and
    nothing of the garbage reaches upstream; the next connection is served."""
    key = lone_gw.create_key("pipe")
    good = f"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n\r\n"
    for garbage in (f"\x16{MARK} GARBAGE\r\n\r\n", f"GET /{MARK} HTTP/1.1\r\nHost: x\r\nBad{MARK}\r\n\r\n"):
        raw = raw_exchange(lone_gw, good.encode() + garbage.encode())
        assert b" 400 " in raw.split(b"\r\n")[0] or raw.startswith(b"HTTP/1.1 200"), raw[:200]
        assert MARK.encode().lower() not in raw.lower() and b"aiohttp" not in raw.lower()
        assert b"\r\nServer: claudegate" in raw
    assert all(MARK not in r.path for r in fake.state.requests)
    r = httpx.get(lone_gw.url + "/v1/models", headers={**V, "x-api-key": key})
    assert r.status_code == 200
    log = lone_gw.log_path.read_text(errors="replace")
    assert MARK not in log and "Traceback" not in log


# -- cursors -------------------------------------------------------------------------------


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _spell(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_cursor_is_library_aead_bound_to_client_list_and_pepper() -> None:
    """The box is AES-256-GCM (cryptography) keyed by HKDF from the pepper: check it against the
    library directly, so a hand-rolled cipher could not pass."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    def mac(label: str) -> bytes:
        return f"pepper:{label}".encode()

    box = CursorBox(mac)
    token = box.seal("position:batch", "alice", b"msgbatch_01Secret")
    raw = _raw(token)
    assert raw[0] == 2 and len(raw) == 1 + 12 + len(b"msgbatch_01Secret") + 16
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"claudegate list cursor v2 aes-256-gcm").derive(mac("list-cursor-key"))
    aad = b"\x02" + len(b"position:batch").to_bytes(4, "big") + b"position:batch" + b"\x00\x00\x00\x05alice"
    assert AESGCM(key).decrypt(raw[1:13], raw[13:], aad) == b"msgbatch_01Secret"
    # Replay: another client, another list, a rotated pepper, a name that shares a prefix.
    assert box.open("position:batch", "alic", token) is None
    assert box.open("position:batch", "alice ", token) is None
    assert box.open("position:file", "alice", token) is None
    assert box.open("page:file", "alice", token) is None
    assert CursorBox(lambda label: f"new pepper:{label}".encode()).open("position:batch", "alice", token) is None
    # The version byte is authenticated and checked: a cursor re-labelled as another format fails.
    assert box.open("position:batch", "alice", _spell(b"\x01" + raw[1:])) is None
    # Truncation at every length, and the nonce alone.
    for n in range(len(raw)):
        assert box.open("position:batch", "alice", _spell(raw[:n])) is None, n
    # An empty payload seals and opens, and is still bound.
    empty = box.seal("position:file", "bob", b"")
    assert box.open("position:file", "bob", empty) == b"" and box.open("position:file", "alice", empty) is None
    # Non-ASCII look-alikes of the alphabet are refused before decoding.
    assert box.open("position:batch", "alice", token[:-1] + "\uff21") is None


def test_a_cursor_from_one_list_is_no_cursor_of_another(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    """Replay across lists and clients end to end: a files page cursor sent as a batch
    scan position, and to another client, opens nothing and asks upstream nothing."""
    gw = gateway_factory()
    alice, bob = gw.create_key("alice"), gw.create_key("bob")
    for i in range(4):
        r = httpx.post(gw.url + "/v1/files", headers={**V, "x-api-key": alice},
                       files={"file": (f"a{i}.txt", b"x", "text/plain")})
        assert r.status_code == 200
    page = httpx.get(gw.url + "/v1/files", headers={**V, "x-api-key": alice}, params={"limit": "1"}).json()
    cursor = page["next_page"]
    assert cursor.startswith("page_")
    fake.state.clear_requests()
    as_position = "cgpos_" + cursor.removeprefix("page_")
    r = httpx.get(gw.url + "/v1/messages/batches", headers={**V, "x-api-key": alice},
                  params={"after_id": as_position})
    assert r.status_code == 200 and r.json()["data"] == []
    r = httpx.get(gw.url + "/v1/files", headers={**V, "x-api-key": bob}, params={"limit": "1", "page": cursor})
    assert r.status_code == 400
    assert [q for q in fake.state.requests if q.path in ("/v1/files", "/v1/messages/batches")] == []


# -- response side: a secret over three text blocks ---------------------------------------


@pytest.mark.parametrize("secret", [AWS, GITHUB])
def test_a_secret_over_three_text_blocks_of_a_response_is_stopped(secret: str) -> None:
    """Attack (the model's side): the secret cut over three text blocks, the middle one short.
    The crossing check saw only the last block's end, which held no more than a piece."""
    from tests.gateway.test_filters_every_field import RF, reply, run_stream, stream_of, streamed_text

    a, b = len(secret) // 3, 2 * len(secret) // 3
    parts = [f"here: {secret[:a]}", secret[a:b], f"{secret[b:]} done"]
    assert RF.message(reply(*({"type": "text", "text": p} for p in parts))).tally.blocked is not None
    with_tool: list[dict[str, Any]] = [{"type": "text", "text": parts[0]}, {"type": "tool_use", "id": "t", "name": "n", "input": {}},
                 {"type": "text", "text": parts[1]}, {"type": "text", "text": parts[2]}]
    assert RF.message(reply(*with_tool)).tally.blocked is not None
    out, sf = run_stream(stream_of([({"type": "text", "text": ""}, [p[i:i + 3] for i in range(0, len(p), 3)])
                                    for p in parts]))
    assert sf.blocked and b"event: error" in out
    assert secret[b:] not in streamed_text(out)
    # Three innocent blocks pass whole.
    out, sf = run_stream(stream_of([({"type": "text", "text": ""}, [w]) for w in ("one ", "two ", "three")]))
    assert not sf.blocked and streamed_text(out) == "one two three"
