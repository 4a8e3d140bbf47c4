"""Red team: content a request points at, reserved for less than upstream bills.

Each attack makes the gateway's estimate of referenced content fall short of
what upstream bills, so a key with a small day could spend a large one
through a few parallel requests. The end-to-end tests run the real gateway
against the recording fake and assert that the request is refused before
the fake sees it (429), where the hole let it through (200) and the fake
billed far past the key's day. Holes found here, each failing before its fix:

* a PDF whose pages are written so the gateway's page scan misses them:
  without ``/Type`` (a reader takes a page-tree leaf for a page anyway) or
  with the name spelled ``/P#61ge``; the scan counted 1 page of 30;
* a web search tool given web fetch's ``max_content_tokens: 1``: the
  reservation took it for the per-search bound, a field upstream's web
  search has no use for.
"""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pypdf
import pytest

from claudegate_gateway.filetokens import PDF_PAGE_TOKENS, file_tokens, pdf_pages
from claudegate_gateway.reservation import ReservationLimits, referenced_tokens, references
from tests.conftest import GatewayFactory
from tests.support.fake_anthropic import FakeAnthropic

MODEL = "claude-sonnet-4-6"
V = {"anthropic-version": "2023-06-01"}
PAGES = 30


def hdr(key: str) -> dict[str, str]:
    return {**V, "x-api-key": key}


def _pdf(pages: int) -> bytes:
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(200, 200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _all_but_first(data: bytes, old: bytes, new: bytes) -> bytes:
    first = data.index(old) + len(old)
    return data[:first] + data[first:].replace(old, new)


def _untyped_pages() -> bytes:
    """30 pages, all but the first without /Type (blanked in place: the cross-reference table stays exact)."""
    return _all_but_first(_pdf(PAGES), b"/Type /Page\n", b" " * 11 + b"\n")


def _escaped_pages() -> bytes:
    """30 pages, all but the first typed /P#61ge (the same name to every PDF reader)."""
    return _all_but_first(_pdf(PAGES), b"/Type /Page\n", b"/Type /P#61ge\n")


HIDDEN_PAGES = {"untyped": _untyped_pages, "escaped": _escaped_pages}


@pytest.mark.parametrize("how", list(HIDDEN_PAGES))
def test_the_hidden_pages_are_pages_to_a_reader(how: str) -> None:
    data = HIDDEN_PAGES[how]()
    assert len(re.findall(rb"/Type\s*/Page(?![A-Za-z0-9])", data)) == 1  # what the old scan saw
    assert len(pypdf.PdfReader(io.BytesIO(data), strict=False).pages) == PAGES


def test_the_page_scan_reads_escaped_names_and_comments() -> None:
    assert pdf_pages(_escaped_pages()) == PAGES
    assert pdf_pages(b"%PDF-1.4\n<</Ty#70e%note\n/P#61#67e>> <</Type /Pages>> <</Type /PAGE>> <</Type/Page#73>>") == 1
    # A page without /Type is found by the parser's count, handed over from the upload's reading.
    assert file_tokens(_untyped_pages(), "application/pdf", PAGES) == PAGES * PDF_PAGE_TOKENS


@pytest.mark.parametrize("how", list(HIDDEN_PAGES))
def test_end_to_end_hidden_pages_are_reserved(gateway_factory: GatewayFactory, fake: FakeAnthropic, how: str) -> None:
    gw = gateway_factory()
    key = gw.create_key("pdf", "--daily-tokens", "60000")
    up = httpx.post(gw.url + "/v1/files", headers=hdr(key), timeout=60,
                    files={"file": ("report.pdf", HIDDEN_PAGES[how](), "application/pdf")})  # fmt: skip
    assert up.status_code == 200, up.text
    body = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": up.json()["id"]}},
        {"type": "text", "text": "summarise"}]}]}  # fmt: skip
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=body, timeout=60)
    # 30 pages are more than the key's day: refused before upstream (the hole: 200, 30 pages billed).
    assert r.status_code == 429, (r.status_code, r.text)
    assert fake.state.requests_for("/v1/messages") == []
    assert fake.state.billed == []


def _search(**extra: Any) -> dict[str, Any]:
    return {"type": "web_search_20250305", "name": "web_search", "max_uses": 2, **extra}


def test_a_web_search_is_reserved_at_the_per_use_ceiling_whatever_fields_it_carries() -> None:
    limits = ReservationLimits(server_tool_use_tokens=25_000)
    plain = referenced_tokens(references({"tools": [_search()]}), {}, limits)
    assert plain == 2 * 25_000
    assert referenced_tokens(references({"tools": [_search(max_content_tokens=1)]}), {}, limits) == plain
    fetch = {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2, "max_content_tokens": 1_000}
    assert referenced_tokens(references({"tools": [fetch]}), {}, limits) == 2 * 1_000  # web fetch's own bound


def test_end_to_end_a_web_search_cannot_borrow_web_fetchs_bound(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw = gateway_factory()
    key = gw.create_key("searcher", "--daily-tokens", "20000")
    body = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "find it"}],
            "tools": [_search(max_content_tokens=1)]}  # fmt: skip
    r = httpx.post(gw.url + "/v1/messages", headers=hdr(key), json=body, timeout=60)
    assert r.status_code == 429, (r.status_code, r.text)  # 2 searches x 25,000 > 20,000
    assert fake.state.requests_for("/v1/messages") == []
