"""What the gateway reserves for content a request only points at (pure functions, no process)."""

from __future__ import annotations

import struct
import zlib

import pytest

from claudegate_gateway.filetokens import (
    IMAGE_MAX_TOKENS,
    PDF_MAX_PAGES,
    PDF_PAGE_TOKENS,
    UNKNOWN_FILE_TOKENS,
    file_tokens,
    image_size,
    image_tokens,
    pdf_pages,
)
from claudegate_gateway.reservation import ReservationLimits, references, reservation_tokens


def png(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", w, h) + b"\x08\x02\0\0\0"


def gif(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", w, h) + b"\0\0\0;"


def jpeg(w: int, h: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\0"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def webp(w: int, h: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize("make", [png, gif, jpeg, webp])
def test_image_headers_give_the_dimensions(make: object) -> None:
    assert callable(make)
    assert image_size(make(640, 480)) == (640, 480)


def test_image_formula_follows_anthropics_downscale() -> None:
    assert image_tokens(200, 200) == 200 * 200 // 750 + 1
    # 1000x1000 = 1.0 MP: under both bounds, (w*h)/750.
    assert image_tokens(1000, 1000) == 1000 * 1000 // 750 + 1
    # Huge images are scaled down first: never above the ceiling, however many pixels.
    assert image_tokens(8000, 6000) <= IMAGE_MAX_TOKENS
    assert image_tokens(60000, 20) <= IMAGE_MAX_TOKENS
    assert file_tokens(png(100, 100), "image/png") == 100 * 100 // 750 + 1


def test_pdf_pages_are_counted_in_plain_and_compressed_objects() -> None:
    plain = b"%PDF-1.4\n1 0 obj<</Type /Pages /Count 3>>\n" + b"2 0 obj<</Type /Page>>\n" * 3
    assert pdf_pages(plain) == 3
    assert file_tokens(plain, "application/pdf") == 3 * PDF_PAGE_TOKENS
    # PDF 1.5: the page objects exist only inside a compressed object stream,
    # and a decoy says one page in clear text.
    inner = zlib.compress(b"<</Type/Page>> " * 40)
    packed = b"%PDF-1.5\n<</Type /ObjStm /Filter /FlateDecode>>stream\n" + inner + b"\nendstream\n<</Type /Page>>"
    assert pdf_pages(packed) == 41
    # A large image stream is not inflated to look for pages: only object streams are.
    image = b"5 0 obj<</Type /XObject /Subtype /Image /Filter /FlateDecode>>stream\n" + zlib.compress(b"\0" * (80 << 20))
    assert pdf_pages(packed + image) == 41
    # Pages the gateway cannot count (encrypted) are reserved at the API's page limit.
    assert file_tokens(b"%PDF-1.7\n/Encrypt 5 0 R\n", "application/pdf") == PDF_MAX_PAGES * PDF_PAGE_TOKENS


def test_a_file_that_reads_several_ways_costs_the_most_of_them() -> None:
    # A text file starting with a GIF header is billed as text when referenced as a document.
    disguised = gif(1, 1)[:10] + b"a" * 30_000
    assert file_tokens(disguised, "text/plain") >= 10_000
    assert file_tokens("é".encode() * 9_000, "text/plain") == 18_000 // 3 + 1
    assert file_tokens(bytes(range(256)) * 4, "application/octet-stream") == UNKNOWN_FILE_TOKENS
    assert file_tokens(b"\xff\xd8garbage", "image/jpeg") == IMAGE_MAX_TOKENS


def test_every_reference_anywhere_in_the_body_is_reserved() -> None:
    body = {
        "requests": [
            {"custom_id": "a", "params": {"messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "file", "file_id": "file_a"}},
                {"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "image", "source": {"type": "file", "file_id": "file_a"}}]},
                {"type": "container_upload", "file_id": "file_b"},
                {"type": "document", "source": {"type": "url", "url": "https://example.com/x.pdf"}},
                {"type": "some_future_block", "deep": {"file_id": "file_c"}},
            ]}], "tools": [
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                {"type": "web_fetch_20250910", "name": "web_fetch", "max_content_tokens": 2000},
            ]}},
        ]
    }
    refs = references(body)
    assert refs.files == {"file_a": 2, "file_b": 1, "file_c": 1}
    assert refs.url_sources == 1
    assert sorted(refs.server_tools, key=str) == sorted([(3, None), (None, 2000)], key=str)
    limits = ReservationLimits(url_source_tokens=7_000, server_tool_use_tokens=500, server_tool_default_uses=4)
    known = {"file_a": 100, "file_b": 10}
    expected = 50 + 2 * 100 + 10 + UNKNOWN_FILE_TOKENS + 7_000 + 3 * 500 + 4 * 2000
    assert reservation_tokens(50, refs, known, limits) == expected


def test_counting_pdf_pages_is_bounded_whatever_the_file() -> None:
    import time

    # A Flate bomb: 200 MB of zeros in a few hundred KB. Not inflated to the end: unknown, so the page limit.
    bomb = zlib.compress(b"\0" * (200 << 20), 9)
    started = time.monotonic()
    assert pdf_pages(b"%PDF-1.5\n<</Type /ObjStm>>stream\n" + bomb + b"\nendstream") is None
    # Many stream markers, each followed by a valid stream: a bounded number is tried, not all.
    many = b"%PDF-1.5\n" + (b"1 0 obj<</Type /ObjStm>>stream\n" + zlib.compress(b"<</Type /Page>>")) * 20_000
    assert pdf_pages(many) is None
    # A large file of markers with nothing behind them is read once, not once per marker.
    markers = b"%PDF-1.5\n" + b"1 0 obj<</Type /ObjStm>>stream\nxx" * 9_000
    assert pdf_pages(markers) is None  # nothing found in them: unknown
    assert time.monotonic() - started < 10
    assert file_tokens(b"%PDF-1.5\n<</Type /ObjStm>>stream\n" + bomb, "application/pdf") == PDF_MAX_PAGES * PDF_PAGE_TOKENS
