"""What an uploaded file will cost, in input tokens, each time a request references it.

Upstream bills a file's content as input tokens whenever a request points at
it by ``file_id``, although the request body itself is a few bytes. The
gateway works the number out once, at upload, and keeps it beside the
owner in the ownership table (ownership.py); every later reference reserves
it (reservation.py).

Each estimate is an upper bound, never a guess that could fall short:

* text (strict UTF-8, or UTF-16/32 with a byte order mark): the body estimate,
  bytes / 3 + 1 (as inspection.py), which is above one token per 4 characters;
* PDF: pages x :data:`PDF_PAGE_TOKENS`. Anthropic bills a page's text plus
  an image of the page (1,500-3,000 tokens of text per dense page, plus at
  most :data:`IMAGE_MAX_TOKENS` for its image). Pages are counted as page
  objects in the file and in its compressed object streams (bounded
  decompression; a name may be spelled with #xx escapes), and by pypdf when
  the upload was read (a page needs no /Type for a reader: the larger count
  wins); a PDF whose pages cannot be counted (encrypted, or too much to
  decompress) is reserved at :data:`PDF_MAX_PAGES` pages, the API's own
  page limit per request;
* images (PNG, JPEG, GIF, WebP, read from their headers): Anthropic's
  published formula, (width x height) / 750, after the documented downscale
  (long edge at most 1568 px, area at most about 1.15 megapixels), so never
  above :data:`IMAGE_MAX_TOKENS`;
* anything else: :data:`UNKNOWN_FILE_TOKENS`, or the text estimate when
  that is larger;
* a file that reads several ways (a text file starting with an image's
  magic bytes): the largest of the readings.
"""

from __future__ import annotations

import codecs
import re
import struct
import zlib

IMAGE_LONG_EDGE = 1568
IMAGE_MAX_PIXELS = 1_200_000  # "about 1.15 megapixels", rounded up
IMAGE_MAX_TOKENS = IMAGE_MAX_PIXELS // 750  # 1,600
PDF_PAGE_TOKENS = 3_000 + IMAGE_MAX_TOKENS
PDF_MAX_PAGES = 100
# Binary content of a kind the gateway cannot read: the most a 100-page PDF could be.
UNKNOWN_FILE_TOKENS = PDF_MAX_PAGES * PDF_PAGE_TOKENS
# At most this much is inflated from a PDF's streams to count its pages.
_PDF_INFLATE_BUDGET = 64 << 20
_PDF_MAX_STREAMS = 10_000
_PDF_MAX_MARKERS = 200_000
_PDF_PIECE = 1 << 16



def estimate_tokens(size: int) -> int:
    # The same estimate inspection.py makes of a body (not imported: inspection imports this side).
    return size // 3 + 1


def _name_pattern(word: str) -> bytes:
    """A regex for the PDF name /word, any of its characters written as #xx (/P#61ge is /Page to every reader)."""
    letters = "".join(f"(?:{c}|#(?i:{ord(c):02x}))" for c in word)
    return b"/" + letters.encode()


# White space between the tokens may include comments (% to the end of the line).
_GAP = rb"\s*(?:%[^\r\n]*[\r\n]\s*)*"
_PAGE = re.compile(_name_pattern("Type") + _GAP + _name_pattern("Page") + rb"(?![A-Za-z0-9#])")
_FLATE_STREAM = re.compile(rb"stream\r?\n")


def image_tokens(width: int, height: int) -> int:
    """Anthropic's formula for an image of width x height pixels, after its downscale."""
    if width <= 0 or height <= 0:
        return IMAGE_MAX_TOKENS
    scale = min(1.0, IMAGE_LONG_EDGE / max(width, height))
    w, h = width * scale, height * scale
    if w * h > IMAGE_MAX_PIXELS:
        shrink = (IMAGE_MAX_PIXELS / (w * h)) ** 0.5
        w, h = w * shrink, h * shrink
    return min(IMAGE_MAX_TOKENS, int(w * h / 750) + 1)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, JPEG or WebP header; None when it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the segments to the first start-of-frame marker (SOF0-SOF15 but
    # DHT C4, JPG C8, DAC CC), which carries the height and width.
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        if length < 2:
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w & 0x3FFF), int(h & 0x3FFF)
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    return None


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


def _strict_text(data: bytes) -> bool:
    # Strict on purpose (not uploads.as_text, which may fall back to a
    # single-byte reading): an image must not be costed as 1 token per 3 bytes.
    # A binary file no reading covers is costed at the unknown ceiling anyway.
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def pdf_pages(data: bytes) -> int | None:
    """Page objects in a PDF, counted in the file and in its Flate streams; None when unknown.

    Only object streams are inflated (page contents and images are not).
    Bounded, whatever the file: at most :data:`_PDF_INFLATE_BUDGET` bytes are
    inflated in all and :data:`_PDF_MAX_STREAMS` streams tried, each fed in
    pieces without copying the file; past either bound the count is unknown
    (and the file is reserved at the page limit).
    """
    if b"/Encrypt" in data:
        return None  # the page tree may be inside encrypted streams
    pages = len(_PAGE.findall(data))
    if b"/ObjStm" not in data:
        return pages or None
    # PDF 1.5 object streams: page objects may live only inside compressed streams.
    view = memoryview(data)
    budget = _PDF_INFLATE_BUDGET
    tried = 0
    for seen, match in enumerate(_FLATE_STREAM.finditer(data)):
        if seen >= _PDF_MAX_MARKERS:
            return None  # a file of stream markers: not worth reading each one's dictionary
        # Only object streams (their dictionary says /Type /ObjStm) can hold
        # page objects; images and page contents, however large, are skipped.
        head = data[max(0, match.start() - 1024) : match.start()]
        if b"/ObjStm" not in head[head.rfind(b"obj") + 1 :]:
            continue
        tried += 1
        if tried > _PDF_MAX_STREAMS:
            return None
        inflater = zlib.decompressobj()
        pos = match.end()
        out = bytearray()
        try:
            while not inflater.eof and pos < len(data):
                piece = view[pos : pos + _PDF_PIECE]
                pos += len(piece)
                out += inflater.decompress(piece, budget - len(out) + 1)
                if len(out) > budget or inflater.unconsumed_tail:
                    return None  # more than the gateway will inflate: not counted, so unknown
        except zlib.error:
            pass  # not a Flate stream (or not from here on): what was inflated still counts
        budget -= len(out)
        pages += len(_PAGE.findall(out))
    return pages or None


def file_tokens(data: bytes, content_type: str, parsed_pages: int | None = None) -> int:
    """The input tokens upstream may bill each time a request references this file (an upper bound).

    The largest of every reading that applies: a text file that starts with
    an image's magic bytes is still billed as text when referenced as a
    document. ``parsed_pages``: the pages a PDF parser found when the upload
    was read (filecontents.py); a page tree can hold pages this module's
    scan does not see (no /Type, a name spelled another way), so the larger
    count is reserved.
    """
    found: list[int] = []
    size = image_size(data)
    if size is not None:
        found.append(image_tokens(*size))
    elif content_type.startswith("image/"):
        found.append(IMAGE_MAX_TOKENS)
    if data.startswith(b"%PDF-") or b"%PDF-" in data[:1024] or content_type == "application/pdf":
        pages = pdf_pages(data)
        pages = max(PDF_MAX_PAGES if pages is None else pages, parsed_pages or 0)
        found.append(pages * PDF_PAGE_TOKENS)
    if _strict_text(data):
        found.append(estimate_tokens(len(data)))
    if not found:
        found.append(max(UNKNOWN_FILE_TOKENS, estimate_tokens(len(data))))
    return max(found)
