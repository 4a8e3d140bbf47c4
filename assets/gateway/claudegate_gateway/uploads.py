"""File uploads (``POST /v1/files``): read bounded, filter text, rebuild the body.

The multipart body is read part by part with aiohttp's reader (bounded part
headers), counting bytes against the upload limit as they arrive, so an
oversized upload is refused without being held in memory. Only one ``file``
part is accepted (a positive model: an unknown form field could be something
upstream reads that the gateway did not inspect), and the body sent upstream
is built anew from what was inspected, never the client's bytes.

What is scanned: the file name and every file's content, whatever content
type the client declared, read as text by :func:`decode` (UTF-32/UTF-16/UTF-8
by byte order mark, else UTF-8, else a single-byte decoding, so no file is
"binary" and unscanned), then what the file holds beyond its bytes: the
inside of a gzip/bzip2/xz file or a zip archive and a PDF's text
(filecontents.py, bounded), where a match blocks. What is not found: an
image's pixels, formats the gateway does not open (7z, rar, zstd).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import BodyPartReader, MultipartWriter, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.filecontents import Contents, inside_kind
from claudegate_gateway.filters import FilterResult

MAX_PARTS = 4
_CHUNK = 1 << 16
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$")
_MAX_FILENAME = 255


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes
    scanned: bool = False  # read as text and filtered
    redacted: bool = False
    pdf_pages: int | None = None  # a PDF's pages as its text was read (filecontents.py), for filetokens.py


def _bad(message: str) -> GatewayError:
    return GatewayError("invalid_request_error", message)


async def read_upload(request: web.Request, max_bytes: int) -> Upload:
    """The one ``file`` part of a multipart upload, at most `max_bytes` of it."""
    if request.content_type != "multipart/form-data":
        raise _bad("Content-Type must be multipart/form-data with a 'file' part")
    if request.content_length is not None and request.content_length > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise _bad("Content-Type must be multipart/form-data with a boundary") from None
    upload: Upload | None = None
    parts = 0
    total = 0
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            parts += 1
            if parts > MAX_PARTS or not isinstance(part, BodyPartReader):
                raise _bad("The upload must be one 'file' part (no nested or extra parts)")
            if part.name != "file":
                raise _bad(f"form field {str(part.name)[:64]!r} is not accepted; send the file as the 'file' part")
            if upload is not None:
                raise _bad("file: only one file per upload")
            if hdrs.CONTENT_TRANSFER_ENCODING in part.headers or hdrs.CONTENT_ENCODING in part.headers:
                # Encoded parts would be scanned encoded and read decoded.
                raise _bad("file: Content-Transfer-Encoding and Content-Encoding are not accepted; send the raw bytes")
            chunks: list[bytes] = []
            while chunk := await part.read_chunk(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
            upload = Upload(_filename(part.filename), _content_type(part.headers.get(hdrs.CONTENT_TYPE)), b"".join(chunks))
    except (ValueError, HttpProcessingError):
        raise _bad("The multipart body is malformed") from None
    if upload is None:
        raise _bad("file: Field required")
    return upload


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError("request_too_large", f"The file exceeds the gateway's upload limit of {max_bytes} bytes")


def _filename(name: str | None) -> str:
    if not name:
        raise _bad("file: the part needs a filename")
    if len(name) > _MAX_FILENAME or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise _bad(f"file: the filename must be 1-{_MAX_FILENAME} characters with no control characters")
    return name


def _content_type(value: str | None) -> str:
    mime = (value or "application/octet-stream").split(";", 1)[0].strip()
    if not _MIME.match(mime):
        raise _bad("file: the part's Content-Type is not a media type like text/plain")
    return mime.lower()


# Byte order marks, longest first: the UTF-32 LE mark starts with UTF-16 LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Every byte is a character, so any file decodes and every byte sequence a
# secret could be written in is there to see; bytes 0x80-0x9F become C1
# controls, which normalisation removes like the invisible ones.
_FALLBACK = "latin-1"


@dataclass(frozen=True)
class Encoding:
    """How a file's bytes were read: the codec and the byte order mark before the text."""

    codec: str
    bom: bytes = b""

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode(self.codec)


def decode(data: bytes) -> tuple[str, Encoding]:
    """The file as text, whatever it is, and how to write it back into the same kind of bytes.

    A byte order mark picks UTF-32/UTF-16/UTF-8 (and its byte order); then
    UTF-8 (NUL characters included: valid UTF-8, and a UTF-16 file without a
    mark reads as its letters with NULs between, which normalisation
    removes); else a single-byte decoding. Nothing is "binary": a secret in
    a PDF's text, a Latin-1 or UTF-16 file, or after a stray invalid byte is
    still seen.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec), Encoding(codec, bom)
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8"), Encoding("utf-8")
    except UnicodeDecodeError:
        return data.decode(_FALLBACK), Encoding(_FALLBACK)


def as_text(data: bytes) -> str | None:
    """The file's text when it is a Unicode text file (a byte order mark, or valid UTF-8), else None."""
    text, how = decode(data)
    return None if how.codec == _FALLBACK else text


# (document to filter, its size) -> the policy's result; offload.py runs large ones in a worker.
ApplyPolicy = Callable[[dict[str, Any], int], Awaitable[FilterResult]]


# (file bytes) -> what is inside it (filecontents.py) and the policy's result on that text
# (None: no text inside); offload.py runs both in one worker call, the text never copied back.
Expand = Callable[[bytes], Awaitable[tuple[Contents, FilterResult | None]]]


def inside_document(texts: list[str]) -> dict[str, Any]:
    """The texts inside a file as the document the request policy filters."""
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}]}


async def filter_upload(apply: ApplyPolicy, upload: Upload, expand: Expand | None = None) -> FilterResult:
    """Filter the file name and the file's content, read as text (redaction rewrites both).

    A Unicode text file is redacted in place and written back in its own
    encoding (byte order mark kept). A file read with the single-byte
    fallback (a PDF, an image, a legacy code page) cannot be rewritten
    without breaking it (offsets, lengths, checksums), so a match that a
    rule would redact blocks the upload instead.
    """
    text, how = decode(upload.data)
    rewritable = how.codec != _FALLBACK
    blocks: list[dict[str, Any]] = [{"type": "text", "text": upload.filename}, {"type": "text", "text": text}]
    result = await apply({"messages": [{"role": "user", "content": blocks}]}, len(upload.data))
    upload.scanned = True
    if result.changed and result.blocked is None:
        new_blocks = result.body["messages"][0]["content"]
        if not rewritable and new_blocks[1]["text"] != text:
            redacted = [v for v in result.verdicts if v.action == "redact"]
            rule = redacted[0] if redacted else result.verdicts[0]
            blocked = replace(rule, action="block")
            verdicts = [blocked if v is rule else v for v in result.verdicts]
            return replace(result, body=result.body, changed=False, blocked=blocked, status=400, verdicts=verdicts)
        upload.filename = new_blocks[0]["text"]
        upload.data = how.encode(new_blocks[1]["text"])
        upload.redacted = True
    if how.bom and how.codec != "utf-8" and result.blocked is None:
        # A UTF-16/32 mark decides how *we* read the file, not how upstream
        # or the model will: "\xff\xfe" + ASCII reads as CJK here and as the
        # ASCII (after two junk bytes) there. The bytes that would go upstream
        # are read once more, a byte a character; a match left there blocks.
        shadow = await apply({"messages": [{"role": "user", "content": [
            {"type": "text", "text": upload.data.decode(_FALLBACK)}]}]}, len(upload.data))
        if shadow.blocked is not None or shadow.changed:
            rule = shadow.blocked or shadow.verdicts[0]
            blocked = replace(rule, action="block")
            status = shadow.status if shadow.blocked is not None else 400
            return replace(result, changed=False, blocked=blocked, status=status, verdicts=[blocked, *result.verdicts])
    if expand is not None and result.blocked is None:
        return await _filter_inside(upload, expand, result)
    return result


async def _filter_inside(upload: Upload, expand: Expand, result: FilterResult) -> FilterResult:
    """The text inside a compressed file or a PDF, filtered too: a match blocks (the file cannot be
    rewritten in place), and a file whose inside cannot be read whole is refused."""
    inside, found = await expand(upload.data)
    upload.pdf_pages = inside.pages
    if inside.refused is not None:
        raise _bad(f"file: the gateway cannot inspect this {'/'.join(inside.kinds) or inside_kind(upload.data)} "
                   f"file: {inside.refused}; upload its content uncompressed or as text")  # fmt: skip
    if found is None:
        return result
    if found.blocked is None and not found.changed:
        return replace(result, verdicts=[*result.verdicts, *found.verdicts])
    rule = found.blocked or found.verdicts[0]
    blocked = replace(rule, action="block")
    status = found.status if found.blocked is not None else 400
    return replace(result, changed=False, blocked=blocked, status=status, verdicts=[blocked, *result.verdicts])


async def upstream_body(upload: Upload) -> tuple[bytes, str]:
    """The multipart body and Content-Type to send upstream, built from the inspected upload."""
    writer = MultipartWriter("form-data")
    part = writer.append(upload.data, {hdrs.CONTENT_TYPE: upload.content_type})
    part.set_content_disposition("form-data", name="file", filename=upload.filename)
    return await writer.as_bytes(), writer.content_type
