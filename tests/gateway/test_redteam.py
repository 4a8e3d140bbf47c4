"""Red-team findings against the merged route table and filters, one test each.

Each test is an attack that got through the merged code; it passes only
with the fix committed alongside it. Secret-shaped values are assembled at
run time so this file holds none for secret scanners to trip on.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from claudegate_gateway.filters import FilterPolicy, FilterResult
from claudegate_gateway.filters.batchresults import ResultsFilter
from claudegate_gateway.filters.response import ResponseFilter
from claudegate_gateway.filters.sse import StreamFilter
from claudegate_gateway.uploads import Upload, filter_upload
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

# An Anthropic-shaped key, built here so the source holds none.
SECRET = "sk-ant-api03-" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0" * 3 + "AA"
BLOCK = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "block", "direction": "both"}])
REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}])


def _message(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": content}], **extra}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- request direction --------------------------------------------------------


def test_base64_text_document_secret_after_padding_is_found() -> None:
    """Attack: a text/plain base64 document whose data is b64("hi") + b64(secret).

    Python's lenient decoder stops at the first padding, so the filter saw
    only "hi" and the secret went upstream; a decoder that reads on past the
    padding (many do) hands the model the secret.
    """
    data = _b64(b"hi") + _b64(f"key {SECRET} end".encode())
    assert "=" in data[:4]  # the padding really sits before the secret
    doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
    assert BLOCK.apply(doc).blocked is not None
    redacted = REDACT.apply(doc)
    assert redacted.changed
    out = redacted.body["messages"][0]["content"][0]["source"]["data"]
    assert SECRET.encode() not in base64.b64decode(out)
    assert base64.b64decode(out).startswith(b"hi")


def test_base64_text_document_secret_before_a_stray_character_is_found() -> None:
    """Attack: b64(secret) + "A": one character too many made the whole string undecodable, so unscanned."""
    plain = _b64(f"key {SECRET} ends".encode())
    assert "=" not in plain  # a length without padding: the stray character makes the count 1 mod 4
    for data in (plain + "A", plain + "=A"):
        doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
        assert BLOCK.apply(doc).blocked is not None, data[-6:]


def test_base64_text_document_with_line_breaks_still_scanned() -> None:
    """MIME-style base64 (line breaks every 76 characters) is read whole, as before."""
    raw = _b64(f"{'x' * 100} {SECRET} end".encode())
    data = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))
    doc = _message([{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": data}}])
    assert BLOCK.apply(doc).blocked is not None


def test_mcp_server_url_and_token_are_scanned() -> None:
    """Attack: a secret in mcp_servers[].url or authorization_token.

    Both leave the organisation (Anthropic calls that URL with that token);
    issue #7 lists them as filtered, and the walker never looked at them.
    """
    for server in (
        {"type": "url", "url": f"https://example.invalid/sse?k={SECRET}", "name": "x"},
        {"type": "url", "url": "https://example.invalid/sse", "name": "x", "authorization_token": SECRET},
        {"type": "url", "url": "https://example.invalid/sse", "name": "x",
         "tool_configuration": {"allowed_tools": [SECRET]}},
    ):
        doc = _message("hello", mcp_servers=[server])
        assert BLOCK.apply(doc).blocked is not None, server
        redacted = REDACT.apply(doc)
        assert redacted.changed and SECRET not in json.dumps(redacted.body), server
        assert doc["mcp_servers"][0] == server  # apply never mutates its input


# -- response direction -------------------------------------------------------


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _citation_stream(cited: str) -> bytes:
    citation = {"type": "char_location", "cited_text": cited, "document_index": 0, "document_title": "t",
                "start_char_index": 0, "end_char_index": len(cited)}
    return _sse([
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                              "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": []}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": citation}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "the doc says so"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ])  # fmt: skip


def _events(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in out.decode().split("\n") if line.startswith("data: ")]


def test_streamed_citation_cited_text_is_filtered_like_a_whole_message() -> None:
    """Attack: ask with stream=true to get the cited_text a whole message would redact.

    The non-streamed path filtered citations' cited_text; the stream passed
    citations_delta byte for byte, so the same answer leaked when streamed.
    """
    rf = ResponseFilter.from_policy(REDACT)
    assert rf is not None
    sf = StreamFilter(rf, "req_1")
    out = sf.feed(_citation_stream(f"the key is {SECRET}.")) + sf.close()
    assert SECRET.encode() not in out
    cites = [e for e in _events(out) if e.get("delta", {}).get("type") == "citations_delta"]
    assert len(cites) == 1
    assert cites[0]["delta"]["citation"]["cited_text"] == "the key is [REDACTED:secrets]."
    assert cites[0]["delta"]["citation"]["document_index"] == 0  # the rest of the citation unchanged
    assert [v.rule for v in sf.verdicts()] == ["secrets"]

    rfb = ResponseFilter.from_policy(BLOCK)
    assert rfb is not None
    sfb = StreamFilter(rfb, "req_2")
    outb = sfb.feed(_citation_stream(f"the key is {SECRET}.")) + sfb.close()
    assert SECRET.encode() not in outb and sfb.blocked
    assert _events(outb)[-1]["type"] == "error"


def test_streamed_citation_without_a_match_passes_byte_for_byte() -> None:
    rf = ResponseFilter.from_policy(REDACT)
    assert rf is not None
    raw = _citation_stream("nothing to see")
    sf = StreamFilter(rf, "req_3")
    assert sf.feed(raw) + sf.close() == raw


# -- batch results: the response rules through the batch API ------------------


@pytest.fixture(scope="module")
def filtered_gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    rules = {"filters": [
        {"name": "secrets", "detectors": ["all"], "direction": "response", "action": "redact"},
        {"name": "codename", "pattern": r"project\s{1,3}falcon", "direction": "response", "action": "block"},
    ]}  # fmt: skip
    proc = make_gateway(tmp_path_factory.mktemp("rt-batch"), fake_anthropic.url, fake_anthropic.api_key, rules)
    proc.start()
    yield proc
    proc.stop()


def test_batch_results_pass_the_response_rules(filtered_gw: GatewayProc, fake: FakeAnthropic) -> None:
    """Attack: ask for through a batch what POST /v1/messages would redact or block.

    Batch results were relayed byte for byte, so every response rule was one
    batch away from being bypassed by any key allowed to create batches.
    """
    client = anthropic.Anthropic(api_key=filtered_gw.create_key("batcher"), base_url=filtered_gw.url,
                                 max_retries=0, timeout=20)  # fmt: skip
    fake.state.configure(script=[{"type": "text", "deltas": [f"the key is {SECRET} ok"]}])
    params: Any = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "go"}]}
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params}])
    got = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in got] == ["a"]
    assert got[0].result.type == "succeeded"
    text = got[0].result.message.content[0]
    assert text.type == "text" and text.text == "the key is [REDACTED:secrets] ok"
    raw = httpx.get(f"{filtered_gw.url}/v1/messages/batches/{batch.id}/results",
                    headers={"x-api-key": client.api_key, "anthropic-version": "2023-06-01"}, timeout=20)  # fmt: skip
    assert raw.status_code == 200 and SECRET.encode() not in raw.content
    rec = filtered_gw.record(raw.headers)
    assert rec["operation"] == "batches.results"
    assert {"rule": "secrets", "direction": "response", "action": "redact", "matches": 1} in rec["filters"]

    # A block rule turns that one result into an errored one; the others still arrive.
    fake.state.configure(script=[{"type": "text", "deltas": ["all about project falcon"]}])
    batch = client.messages.batches.create(requests=[{"custom_id": "b", "params": params}])
    got = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in got] == ["b"] and got[0].result.type == "errored"
    assert "codename" in got[0].result.error.error.message
    raw = httpx.get(f"{filtered_gw.url}/v1/messages/batches/{batch.id}/results",
                    headers={"x-api-key": client.api_key, "anthropic-version": "2023-06-01"}, timeout=20)  # fmt: skip
    assert b"falcon" not in raw.content


def test_results_filter_keeps_lines_whole_across_any_chunking() -> None:
    rf = ResponseFilter.from_policy(REDACT)
    assert rf is not None
    lines = [
        {"custom_id": "x", "result": {"type": "succeeded", "message": {"type": "message", "content": [
            {"type": "text", "text": f"a {SECRET} b"}]}}},
        {"custom_id": "y", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "x"}}}},
        {"custom_id": "z", "result": {"type": "succeeded", "message": {"type": "message", "content": [
            {"type": "text", "text": "plain"}]}}},
    ]  # fmt: skip
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    for size in (1, 7, 64, len(body)):
        rfl = ResultsFilter(rf)
        out = b"".join(rfl.feed(body[i : i + size]) for i in range(0, len(body), size)) + rfl.close()
        assert SECRET.encode() not in out
        got = [json.loads(x) for x in out.splitlines()]
        assert [g["custom_id"] for g in got] == ["x", "y", "z"]
        assert got[0]["result"]["message"]["content"][0]["text"] == "a [REDACTED:secrets] b"
        assert got[1:] == lines[1:]


def test_citations_in_request_text_blocks_are_scanned() -> None:
    """Attack: a secret in an earlier assistant turn's citations (cited_text, title, url).

    The API takes citations on text blocks of the conversation and they are
    part of what the model reads; the walker read a text block's ``text`` only.
    """
    for cite in (
        {"type": "char_location", "cited_text": f"k {SECRET}", "document_index": 0, "document_title": "t",
         "start_char_index": 0, "end_char_index": 3},
        {"type": "web_search_result_location", "cited_text": "x", "url": f"https://example.invalid/?k={SECRET}",
         "title": "t", "encrypted_index": "abc"},
    ):  # fmt: skip
        doc = _message("hi")
        doc["messages"] = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "answer", "citations": [cite]}]},
            {"role": "user", "content": "more"},
        ]
        assert BLOCK.apply(doc).blocked is not None, cite
        redacted = REDACT.apply(doc)
        assert redacted.changed and SECRET not in json.dumps(redacted.body), cite
        assert redacted.body["messages"][1]["content"][0]["text"] == "answer"


# -- uploads ------------------------------------------------------------------


def test_a_text_upload_with_a_nul_byte_is_still_scanned() -> None:
    """Attack: upload "key <secret>\\0" as text/plain.

    One NUL made the file count as binary, so unscanned; a NUL is valid
    UTF-8 and upstream reads the file as text, secret included.
    """

    async def apply(doc: dict[str, Any], size: int) -> FilterResult:
        return BLOCK.apply(doc)

    for data in (f"key {SECRET}\x00".encode(), f"\x00\x00{SECRET}".encode()):
        upload = Upload("notes.txt", "text/plain", data)
        result = asyncio.run(filter_upload(apply, upload))
        assert result.blocked is not None and upload.scanned, data[:8]
    # Not UTF-8 either: read with the single-byte fallback, still scanned.
    png = Upload("a.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00" + SECRET.encode())
    assert asyncio.run(filter_upload(apply, png)).blocked is not None and png.scanned


def test_every_field_of_a_tool_definition_but_its_name_and_schema_shape_is_scanned() -> None:
    """Attack: a secret in ``tools[].input_examples`` (or any field the walker did not name).

    The model reads a tool's examples as it reads its description; the
    walker read only ``description`` and the schema's descriptions.
    """
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    for tool in (
        {"name": "t", "description": "d", "input_schema": schema, "input_examples": [{"q": f"use {SECRET}"}]},
        {"name": "t", "input_schema": schema, "some_future_field": {"note": SECRET}},
        {"type": "web_search_20250305", "name": "web_search", "allowed_domains": [f"{SECRET}.example"]},
    ):
        doc = _message("hi", tools=[tool])
        assert BLOCK.apply(doc).blocked is not None, tool
        redacted = REDACT.apply(doc)
        assert redacted.changed and SECRET not in json.dumps(redacted.body), tool
        assert redacted.body["tools"][0]["name"] == tool["name"]


def test_top_level_fields_the_walker_does_not_know_are_scanned() -> None:
    """Attack: a secret in ``output_format`` (structured outputs: its schema is read by the model).

    The walker read system, messages and tools only; every request field it
    does not know is now walked whole (fail closed), the known non-text
    ones (model, metadata, stop_sequences...) stay as documented.
    """
    for extra in (
        {"output_format": {"type": "json_schema", "schema": {"type": "object", "description": f"use {SECRET}"}}},
        {"output_config": {"format": {"type": "json_schema", "schema": {"title": SECRET}}}},
        {"some_future_field": [SECRET]},
    ):
        doc = _message("hi", **extra)
        assert BLOCK.apply(doc).blocked is not None, extra
        redacted = REDACT.apply(doc)
        assert redacted.changed and SECRET not in json.dumps(redacted.body), extra
    # metadata.user_id and stop_sequences are free text: scanned, redacted in place.
    doc = _message("hi", metadata={"user_id": SECRET}, stop_sequences=[SECRET])
    assert BLOCK.apply(doc).blocked is not None
    redacted = REDACT.apply(doc)
    assert redacted.blocked is None and SECRET not in json.dumps(redacted.body)
    assert redacted.body["metadata"]["user_id"] == redacted.body["stop_sequences"][0] == "[REDACTED:secrets]"


def test_results_filter_checks_a_last_line_without_newline() -> None:
    rf = ResponseFilter.from_policy(REDACT)
    assert rf is not None
    line = {"custom_id": "x", "result": {"type": "succeeded", "message": {"type": "message", "content": [
        {"type": "text", "text": f"a {SECRET} b"}]}}}  # fmt: skip
    body = json.dumps(line).encode()
    rfl = ResultsFilter(rf)
    out = b"".join(rfl.feed(body[i : i + 5]) for i in range(0, len(body), 5)) + rfl.close()
    assert SECRET.encode() not in out and json.loads(out)["custom_id"] == "x"


# -- headers on the list operations --------------------------------------------


def test_headers_named_in_connection_are_not_forwarded_by_lists(filtered_gw: GatewayProc, fake: FakeAnthropic) -> None:
    """Attack: ``Connection: x-hop-secret`` on GET /v1/files and /v1/messages/batches.

    The list operations build their upstream requests apart from the rest
    and forgot the headers Connection names (hop-by-hop, RFC 9110 7.6.1),
    which the other operations drop.
    """
    key = filtered_gw.create_key("lister")
    for path in ("/v1/files", "/v1/messages/batches"):
        fake.state.requests.clear()
        r = httpx.get(filtered_gw.url + path, timeout=20, headers={
            "x-api-key": key, "anthropic-version": "2023-06-01", "connection": "keep-alive, x-hop-secret",
            "x-hop-secret": "s3cret", "x-end-to-end": "kept"})  # fmt: skip
        assert r.status_code == 200, r.text
        # Lists are answered from the gateway's own index now: nothing goes up at all.
        sent = [x.headers for x in fake.state.requests]
        assert sent == [], path
