"""No field the model reads escapes the filters, in either direction.

Each test is an attack: a secret put where the filters did not look (a stop
sequence, a tool name, a schema enum, a batch custom_id, an uploaded UTF-16
file, split across blocks around a word character, padded with control
characters) or that the model hands back where the response filter did not
look (a server tool's result, across two text blocks, an error quoting the
request). The unit tests drive the policy; the end-to-end ones run the real
gateway against the recording fake and check what the fake saw.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from typing import Any

import httpx
import pytest

from claudegate_gateway.config import ConfigError
from claudegate_gateway.filters import FilterPolicy, FilterResult
from claudegate_gateway.filters.response import ResponseFilter
from claudegate_gateway.filters.sse import StreamFilter
from claudegate_gateway.inspection import inspect_body
from claudegate_gateway.keystore import Scopes
from claudegate_gateway.uploads import Upload, decode, filter_upload
from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

SECRET = "sk-ant-api03-" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm" * 3
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
CARD = "4111 1111 1111 1111"
REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}])
BLOCK = FilterPolicy.default()
MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}


def message(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": content}], **extra}


def tool(**over: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string", "description": "a city"}}}
    return {"name": "weather", "description": "the weather", "input_schema": schema, **over}


def texts(*parts: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": p} for p in parts]


# -- request fields ---------------------------------------------------------------------

# (where, body): the secret in a field that may be rewritten (redacted in place) ...
REWRITABLE = {
    "stop_sequences": message(stop_sequences=["END", SECRET]),
    "metadata.user_id": message(metadata={"user_id": SECRET}),
    "schema description": message(tools=[tool(input_schema={"type": "object", "description": SECRET})]),
    "schema title": message(tools=[tool(input_schema={"type": "object", "title": SECRET})]),
    "system as one block": message(system={"type": "text", "text": SECRET}),
    "system blocks": message(system=texts("you are", SECRET)),
    "content as one block": message(content={"type": "text", "text": SECRET}),
}
# ... and in one that cannot be rewritten without breaking the request: blocked even by a redact rule.
FIXED = {
    "tool name": message(tools=[tool(name=SECRET)]),
    "tool type": message(tools=[tool(type=SECRET)]),
    "tool_choice name": message(tools=[tool()], tool_choice={"type": "tool", "name": SECRET}),
    "schema property name": message(tools=[tool(input_schema={"type": "object", "properties": {SECRET: {}}})]),
    "schema enum": message(tools=[tool(input_schema={"type": "string", "enum": ["a", SECRET]})]),
    "schema const": message(tools=[tool(input_schema={"type": "string", "const": SECRET})]),
    "schema required": message(tools=[tool(input_schema={"type": "object", "required": [SECRET]})]),
    "tool_use name": {**message(), "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": SECRET, "input": {}}]},
    ]},
    "model": message() | {"model": "claude-" + SECRET},
    "a message's other field": {**message(), "messages": [{"role": "user", "content": "hi", "name": SECRET}]},
    "an unknown role": {**message(), "messages": [{"role": SECRET, "content": "hi"}]},
    "metadata's other key": message(metadata={SECRET: "x"}),
    "tool_choice as a string": message(tool_choice=SECRET),
}


@pytest.mark.parametrize("where", list(REWRITABLE))
def test_rewritable_fields_are_scanned_and_redacted_in_place(where: str) -> None:
    body = REWRITABLE[where]
    assert BLOCK.apply(body).blocked is not None, where
    result = REDACT.apply(body)
    assert result.blocked is None and result.changed, where
    assert SECRET not in json.dumps(result.body) and "[REDACTED:secrets]" in json.dumps(result.body)


@pytest.mark.parametrize("where", list(FIXED))
def test_fields_that_cannot_be_rewritten_block_even_under_a_redact_rule(where: str) -> None:
    body = FIXED[where]
    assert BLOCK.apply(body).blocked is not None, where
    result = REDACT.apply(body)
    assert result.blocked is not None and result.blocked.action == "block", where
    assert result.verdicts[0].action == "block" and not result.changed


def test_a_redaction_next_to_a_fixed_field_stays_a_redaction() -> None:
    # The glued join runs the text on into the message's role and the model
    # name; a greedy match spilling into them must not turn redact into block.
    body = message("key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB")
    result = REDACT.apply(body)
    assert result.blocked is None and result.changed


def test_batch_custom_id_and_fields_outside_params_are_scanned_and_block() -> None:
    params = message()
    attacks = {
        "custom_id": {"requests": [{"custom_id": SECRET, "params": params}]},
        "another item field": {"requests": [{"custom_id": "a", "params": params, "note": SECRET}]},
        "a top-level field": {"requests": [{"custom_id": "a", "params": params}], "label": SECRET},
        "split custom_ids": {"requests": [{"custom_id": SECRET[:20], "params": params},
                                          {"custom_id": SECRET[20:], "params": params}]},
    }
    for where, doc in attacks.items():
        found = inspect_body("batch", json.dumps(doc).encode(), Scopes(), REDACT)
        assert found.error is not None and found.filter_blocked, where
    clean = inspect_body("batch", json.dumps({"requests": [{"custom_id": "a-1", "params": params}]}).encode(),
                         Scopes(), REDACT)
    assert clean.error is None


@pytest.mark.parametrize("secret", [AWS, GITHUB, CARD, SECRET, "sk-proj-" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9"])
def test_a_secret_split_across_two_pieces_is_found_whatever_surrounds_it(secret: str) -> None:
    """Attack: split the secret over two blocks and let the neighbours touch it.

    Glued to the next block's "x" (or "9"), AKIA... was no whole token any
    more and a card a longer number; the pair joins end the secret where its
    pieces end.
    """
    for k in range(2, len(secret) - 1, 3):
        for before in ("", "x", "9", "_", "-"):
            for after in ("", "x", "9", "_", "-", "Q"):
                parts = [p for p in (before, secret[:k], secret[k:], after) if p]
                for body in (
                    message(texts(*parts)),
                    message([{"type": "tool_use", "id": "t", "name": "n", "input": {str(i): p for i, p in
                                                                                       enumerate(parts)}}]),
                ):
                    assert BLOCK.apply(body).blocked is not None, (secret, k, before, after)
                    out = json.dumps(REDACT.apply(body).body)
                    assert not (secret[:k] in out and secret[k:] in out), (secret, k, before, after)


def test_the_pair_join_separator_creates_no_match() -> None:
    """The stop between pairs is no character and no context: only what a pair alone holds matches.

    Each case is built so that neither the glued nor the spaced join
    matches; before the check, the stop was taken for a character (``\\S``,
    ``[^ ]``) or seen by a positive look-around.
    """
    quiet = [
        (r"project\Sx", ["a", "project", "x b"]),
        (r"project[^ ]x", ["a", "project", "x b"]),
    ]
    for pattern, parts in quiet:
        policy = FilterPolicy.from_config([{"name": "p", "pattern": pattern}])
        assert policy.apply(message(texts(*parts))).blocked is None, (pattern, parts)
    # Look-arounds, which could see the stop as context, are refused outright
    # (the operator regexes run on RE2, filters/engine.py).
    for pattern in (r"(?<=\S)project-?x", r"project-?x(?=\S)"):
        with pytest.raises(ConfigError, match="look-around"):
            FilterPolicy.from_config([{"name": "p", "pattern": pattern}])
    # What a pair alone holds still matches, whatever is around it.
    loud = [
        (r"project\Sx", ["a ", "proj", "ect-x", " b"]),
        (r"project[^ ]x", ["a ", "zproj", "ect-x", " b"]),
    ]
    for pattern, parts in loud:
        policy = FilterPolicy.from_config([{"name": "p", "pattern": pattern}])
        assert policy.apply(message(texts(*parts))).blocked is not None, (pattern, parts)


@pytest.mark.parametrize("pad", ["\x00", "\x1b", "\x07", "\x7f", "\x85", "\x9b", "\x0b", "\x0c", "\x00\x1b\x9b"])
def test_control_characters_inside_a_secret_are_removed_by_normalisation(pad: str) -> None:
    for secret in (SECRET, AWS, GITHUB):
        padded = pad.join(secret)
        body = message(f"my key is {padded} ok")
        assert BLOCK.apply(body).blocked is not None, (pad, secret[:8])
        result = REDACT.apply(body)
        text = result.body["messages"][0]["content"]
        assert text == "my key is [REDACTED:secrets] ok", (pad, text[:40])
    # Layout characters stay: a PEM block and a "label: value" line are still recognised by them.
    assert BLOCK.apply(message("aws_secret_access_key\twJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")).blocked is not None


# -- uploads ------------------------------------------------------------------------------


def _upload(data: bytes, policy: FilterPolicy) -> tuple[Upload, FilterResult]:
    async def apply(doc: dict[str, Any], size: int) -> FilterResult:
        return policy.apply(doc)

    upload = Upload("notes.txt", "text/plain", data)
    return upload, asyncio.run(filter_upload(apply, upload))


ENCODED = {
    "utf-16-le bom": codecs.BOM_UTF16_LE + f"key {SECRET} end".encode("utf-16-le"),
    "utf-16-be bom": codecs.BOM_UTF16_BE + f"key {SECRET} end".encode("utf-16-be"),
    "utf-32-le bom": codecs.BOM_UTF32_LE + f"key {SECRET} end".encode("utf-32-le"),
    "utf-32-be bom": codecs.BOM_UTF32_BE + f"key {SECRET} end".encode("utf-32-be"),
    "utf-8 bom": codecs.BOM_UTF8 + f"key {SECRET} end".encode(),
    "utf-16 without bom": f"key {SECRET} end".encode("utf-16-le"),
    "utf-32 without bom": f"key {SECRET} end".encode("utf-32-le"),
    "latin-1": f"clé {SECRET} été".encode("latin-1"),
    "cp1252 with C1 padding": b"\x93key\x94 " + b"\x81".join(c.encode() for c in SECRET),
}


@pytest.mark.parametrize("name", list(ENCODED))
def test_uploads_in_any_encoding_are_scanned(name: str) -> None:
    data = ENCODED[name]
    upload, result = _upload(data, BLOCK)
    assert result.blocked is not None and upload.scanned, name
    upload, result = _upload(data, REDACT)
    _, how = decode(data)
    if how.codec == "latin-1":
        # Read with the single-byte fallback: rewriting could break the file, so it is blocked.
        assert result.blocked is not None and result.blocked.action == "block" and upload.data == data, name
    else:
        assert result.blocked is None and upload.redacted, name
        if "bom" in name:
            assert upload.data[:2] == data[:2], name  # written back with its byte order mark
        back, how_back = decode(upload.data)
        assert how_back == how and SECRET not in back.replace("\x00", "") and "[REDACTED:secrets]" in back


def test_a_binary_file_is_read_with_the_single_byte_fallback() -> None:
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< >>\nstream\n(" + SECRET.encode() + b")\nendstream\n"
    upload, result = _upload(pdf, BLOCK)
    assert result.blocked is not None and upload.scanned
    upload, result = _upload(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nharmless", REDACT)
    assert result.blocked is None and upload.data.endswith(b"harmless")


# -- response side ------------------------------------------------------------------------

RF = ResponseFilter(REDACT.response_rules)

SERVER_RESULTS: list[dict[str, Any]] = [
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://example.com/a", "title": f"leak {SECRET}",
         "encrypted_content": "EqQBCioIAhgBIiQ", "page_age": "1 day"}]},
    {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {
        "type": "web_fetch_result", "url": "https://example.com/b", "content": {
            "type": "document", "source": {"type": "text", "media_type": "text/plain", "data": f"page {SECRET}"},
            "title": "b"}}},
    {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_3", "content": {
        "type": "code_execution_result", "stdout": f"printed {SECRET}\n", "stderr": "", "return_code": 0,
        "content": []}},
    {"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_4", "content": {
        "type": "bash_code_execution_result", "stdout": "", "stderr": f"env: {AWS}", "return_code": 1,
        "content": []}},
    {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_5", "content": {
        "type": "text_editor_code_execution_view_result", "file_type": "text", "content": f"x = '{GITHUB}'",
        "numLines": 1, "startLine": 1, "totalLines": 1}},
]


def reply(*content: dict[str, Any]) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": list(content),
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}


@pytest.mark.parametrize("block", SERVER_RESULTS, ids=[b["type"] for b in SERVER_RESULTS])
def test_server_tool_results_are_filtered_in_whole_messages(block: dict[str, Any]) -> None:
    result = RF.message(reply(block))
    out = json.dumps(result.doc)
    assert result.changed and SECRET not in out and AWS not in out and GITHUB not in out
    assert "[REDACTED:secrets]" in out
    if block["type"] == "web_search_tool_result":
        assert result.doc["content"][0]["content"][0]["encrypted_content"] == "EqQBCioIAhgBIiQ"  # opaque: kept


def test_a_secret_split_across_two_text_blocks_blocks_the_message() -> None:
    for cut in (5, 13, 40):
        for between in ([], [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]):
            doc = reply({"type": "text", "text": f"here: {SECRET[:cut]}"}, *between,
                        {"type": "text", "text": f"{SECRET[cut:]} done"})
            assert RF.message(doc).tally.blocked is not None, cut
    fine = reply({"type": "text", "text": "sk-ant-"}, {"type": "text", "text": "is a prefix"})
    assert RF.message(fine).tally.blocked is None


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def stream_of(blocks: list[tuple[dict[str, Any], list[str]]]) -> list[bytes]:
    events = [sse("message_start", {"type": "message_start", "message": reply() | {"content": []}})]
    for i, (start, deltas) in enumerate(blocks):
        events.append(sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        for d in deltas:
            events.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                      "delta": {"type": "text_delta", "text": d}}))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def run_stream(events: list[bytes], chunk: int = 7) -> tuple[bytes, StreamFilter]:
    sf = StreamFilter(RF, "req_test")
    raw = b"".join(events)
    out = b"".join(sf.feed(raw[i:i + chunk]) for i in range(0, len(raw), chunk)) + sf.close()
    return out, sf


def streamed_text(out: bytes) -> str:
    text = []
    for block in out.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                if data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
                    text.append(data["delta"]["text"])
    return "".join(text)


def test_a_secret_split_across_two_streamed_text_blocks_is_stopped_before_its_second_part() -> None:
    for cut in (3, 13, 40, len(SECRET) - 2):
        second = SECRET[cut:]
        deltas = [second[i:i + 2] for i in range(0, len(second), 2)] + [" and more text follows here"]
        out, sf = run_stream(stream_of([
            ({"type": "text", "text": ""}, ["here: ", SECRET[:cut]]),
            ({"type": "text", "text": ""}, deltas),
        ]))
        assert sf.blocked and b"event: error" in out, cut
        assert second not in streamed_text(out), cut
    # Two innocent blocks pass whole, in order.
    out, sf = run_stream(stream_of([({"type": "text", "text": ""}, ["hello "]),
                                    ({"type": "text", "text": ""}, ["world"])]))
    assert not sf.blocked and streamed_text(out) == "hello world"


@pytest.mark.parametrize("block", SERVER_RESULTS, ids=[b["type"] for b in SERVER_RESULTS])
def test_server_tool_results_are_filtered_in_streams(block: dict[str, Any]) -> None:
    out, sf = run_stream(stream_of([(block, []), ({"type": "text", "text": ""}, ["ok"])]))
    assert not sf.blocked
    for leak in (SECRET, AWS, GITHUB):
        assert leak.encode() not in out
    assert b"[REDACTED:secrets]" in out and streamed_text(out) == "ok"


# -- end to end: the gateway process and the recording fake ------------------------------------


def _fake_saw(fake: FakeAnthropic, needle: str) -> bool:
    for r in fake.state.requests:
        if needle.encode() in r.body or needle in r.raw_query:
            return True
        for enc in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            if needle.encode(enc) in r.body:
                return True
    return False


@pytest.fixture
def redact_gw(gateway_factory: GatewayFactory) -> tuple[str, str]:
    gw = gateway_factory({"filters": [
        {"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"},
        {"name": "falcon", "pattern": r"project.falcon", "action": "redact", "direction": "response"},
        {"name": "gone", "pattern": r"File not found", "action": "redact", "direction": "response"},
    ]})
    return gw.url, gw.create_key("team")


def test_end_to_end_request_fields_reach_upstream_redacted_or_not_at_all(
    redact_gw: tuple[str, str], fake: FakeAnthropic
) -> None:
    url, key = redact_gw
    h = {**V, "x-api-key": key}
    for where, body in REWRITABLE.items():
        r = httpx.post(url + "/v1/messages", headers=h, json=body | {"model": MODEL})
        # A block where a list belongs is read (fail closed) and upstream refuses the shape.
        assert r.status_code == (400 if "one block" in where else 200), (where, r.text)
    for where, body in FIXED.items():
        r = httpx.post(url + "/v1/messages", headers=h, json=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (where, r.text)
    batch = {"requests": [{"custom_id": GITHUB, "params": message()}]}  # a valid custom_id shape
    assert httpx.post(url + "/v1/messages/batches", headers=h, json=batch).status_code == 400
    split = message(texts("x", AWS[:9], AWS[9:], "x"))
    assert httpx.post(url + "/v1/messages", headers=h, json=split).status_code == 200
    padded = message("\x00".join(GITHUB))
    assert httpx.post(url + "/v1/messages", headers=h, json=padded).status_code == 200
    for enc in ("utf-16-le bom", "utf-32-be bom", "utf-16 without bom"):
        r = httpx.post(url + "/v1/files", headers=h, files={"file": ("n.txt", ENCODED[enc], "text/plain")})
        assert r.status_code == 200, (enc, r.text)
    r = httpx.post(url + "/v1/files", headers=h, files={"file": ("n.txt", ENCODED["latin-1"], "text/plain")})
    assert r.status_code == 400
    assert fake.state.requests, "nothing reached upstream at all"
    for leak in (SECRET, AWS, GITHUB, AWS[:9] + AWS[9:]):
        assert not _fake_saw(fake, leak), leak
    assert not _fake_saw(fake, "\x00".join(GITHUB[:6]))


def test_end_to_end_responses_server_results_split_blocks_and_error_bodies(
    redact_gw: tuple[str, str], fake: FakeAnthropic
) -> None:
    url, key = redact_gw
    h = {**V, "x-api-key": key}
    fake.state.configure(script=[
        {"type": "text", "deltas": ["searching"]},
        *SERVER_RESULTS,
        {"type": "text", "deltas": ["done"]},
    ])
    whole = httpx.post(url + "/v1/messages", headers=h, json=message())
    assert whole.status_code == 200
    streamed = httpx.post(url + "/v1/messages", headers=h, json=message(stream=True))
    assert streamed.status_code == 200 and b"event: error" not in streamed.content
    for out in (whole.content, streamed.content):
        for leak in (SECRET, AWS, GITHUB):
            assert leak.encode() not in out
        assert out.count(b"[REDACTED:secrets]") >= len(SERVER_RESULTS)
    # Split across two text blocks: the second part never reaches the client.
    fake.state.configure(script=[{"type": "text", "deltas": ["key: ", SECRET[:30]]},
                                 {"type": "text", "deltas": [SECRET[30:40], SECRET[40:], " ok"]}])
    whole = httpx.post(url + "/v1/messages", headers=h, json=message())
    assert whole.status_code == 400 and SECRET[30:].encode() not in whole.content
    streamed = httpx.post(url + "/v1/messages", headers=h, json=message(stream=True))
    assert b"event: error" in streamed.content and SECRET[30:40].encode() not in streamed.content
    fake.state.configure(script=None)
    # An upstream error quoting the request: upstream names the unknown model it was sent.
    r = httpx.post(url + "/v1/messages", headers=h, json=message() | {"model": "claude-project-falcon-9"})
    assert r.status_code == 404, r.text
    assert "project-falcon" not in r.text and "[REDACTED:falcon]" in r.json()["error"]["message"]
    assert _fake_saw(fake, "claude-project-falcon-9")  # it did go up: only the response rule knew it
    # A relayed-through operation's error (a download of a file deleted upstream) is checked too.
    r = httpx.post(url + "/v1/files", headers=h, files={"file": ("n.txt", b"hello", "text/plain")})
    file_id = r.json()["id"]
    httpx.delete(f"{fake.url}/v1/files/{file_id}", headers={**V, "x-api-key": fake.api_key})
    r = httpx.get(f"{url}/v1/files/{file_id}/content", headers=h)
    assert r.status_code == 404 and r.json()["error"]["message"].startswith("[REDACTED:gone]"), r.text
