"""Red team: a PDF sent inline (a base64 document) instead of uploaded.

An uploaded PDF's text goes through the request filters (filecontents.py);
the same PDF sent inline in a message went upstream unread (found here: it
failed before the fix). Now an inline PDF is read like an upload: a match
blocks, a PDF that cannot be read is refused, and the parse never runs on
the event loop (the body goes to the inspection worker whatever its size).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
from typing import Any

import httpx
import pypdf
import pytest
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
AWS = "AKIAIOSFODNN7EXAMPLE"


def pdf(text: str) -> bytes:
    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(600, 800)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})  # fmt: skip
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 50 700 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream.flate_encode())
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def document(data: bytes) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": base64.b64encode(data).decode()}}  # fmt: skip


def body(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 20,
            "messages": [{"role": "user", "content": [*blocks, {"type": "text", "text": "summarise"}]}]}  # fmt: skip


WHERE = {
    "a message": lambda d: body(d),
    "a tool result": lambda d: {**body(), "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [d]}]}],
        "tools": [{"name": "read", "input_schema": {"type": "object"}}]},
}


@pytest.mark.parametrize("where", list(WHERE))
def test_a_secret_in_an_inline_pdf_never_reaches_upstream(
    gateway_factory: GatewayFactory, fake: FakeAnthropic, where: str
) -> None:
    gw = gateway_factory()
    key = gw.create_key("inline")
    data = pdf(f"aws_access_key_id = {AWS}")
    assert AWS.encode() not in data and AWS in pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    doc = WHERE[where](document(data))
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = httpx.post(gw.url + path, headers={**V, "x-api-key": key}, json=doc, timeout=60)
        assert r.status_code == 400 and "filter rule" in r.text, (path, r.text)
    batch = {"requests": [{"custom_id": "a", "params": doc}]}
    r = httpx.post(gw.url + "/v1/messages/batches", headers={**V, "x-api-key": key}, json=batch, timeout=60)
    assert r.status_code == 400, r.text
    assert fake.state.requests == []
    # The same PDF without the secret goes up as it was sent.
    clean = WHERE[where](document(pdf("quarterly figures")))
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": key}, json=clean, timeout=60)
    assert r.status_code == 200, r.text
    assert fake.state.requests_for("/v1/messages")[-1].json == clean


def test_an_inline_pdf_that_cannot_be_read_is_refused(gateway_factory: GatewayFactory, fake: FakeAnthropic) -> None:
    gw = gateway_factory()
    key = gw.create_key("inline-bad")
    r = httpx.post(gw.url + "/v1/messages", headers={**V, "x-api-key": key},
                   json=body(document(b"%PDF-1.7\n" + b"\x00garbage" * 100)), timeout=60)  # fmt: skip
    assert r.status_code == 400 and "cannot inspect" in r.text, r.text
    assert fake.state.requests == []


@pytest.mark.parametrize("spelling", ["application/PDF", "application/pdf; charset=binary"])
def test_an_inline_pdf_is_read_in_the_worker_whatever_the_body_spells(spelling: str) -> None:
    """JSON escapes or another spelling of the media type: the body's bytes do not say "application/pdf",
    yet the PDF is parsed, and only in the worker (never inline on the event loop)."""
    from claudegate_gateway.filters import FilterPolicy
    from claudegate_gateway.inspection import inspect_body
    from claudegate_gateway.keystore import Scopes

    block = document(pdf(f"aws_access_key_id = {AWS}"))
    block["source"]["media_type"] = spelling
    raw = json.dumps(body(block)).replace("pdf", "\\u0070df").encode()
    assert b'"application/pdf"' not in raw  # what a check of the bytes would look for
    policy, scopes = FilterPolicy.default(), Scopes()
    inline = inspect_body("message", raw, scopes, policy, parse_pdfs=False)
    assert inline.needs_worker and inline.error is None
    worker = inspect_body("message", raw, scopes, policy)
    assert worker.error is not None and "filter rule" in worker.error[1]


def test_the_pdf_time_bound_is_for_the_whole_body_batches_included(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch request's PDFs had their own 30 s: a batch of thousands could hold a worker for hours.
    The time a PDF is given is what the body's PDFs have left together."""
    import claudegate_gateway.inspection as insp
    from claudegate_gateway.filecontents import Contents
    from claudegate_gateway.filters import FilterPolicy
    from claudegate_gateway.inspection import inspect_body
    from claudegate_gateway.keystore import Scopes

    given: list[float | None] = []

    def slow_reading(data: bytes, seconds: float | None = None) -> Contents:
        given.append(seconds)
        time.sleep(0.05)  # a PDF that takes its time
        return Contents()

    monkeypatch.setattr(insp, "contents", slow_reading)
    pdf_block = document(pdf("quarterly figures"))
    batch = {"requests": [{"custom_id": f"r{i}", "params": body(pdf_block)} for i in range(4)]}
    assert inspect_body("batch", json.dumps(batch).encode(), Scopes(), FilterPolicy.default()).error is None
    assert len(given) == 4 and all(isinstance(s, float) for s in given)
    left = [s for s in given if s is not None]
    # Each PDF gets what is left of one bound: at least the 0.05 s the ones before it took, less.
    assert all(b <= a - 0.04 for a, b in itertools.pairwise(left)), left
    assert left[0] <= insp.PDF_MAX_SECONDS
