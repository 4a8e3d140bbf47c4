"""File uploads (``POST /v1/files``): read bounded, filter text, rebuild the body.

The multipart body is read part by part with aiohttp's reader (bounded part
headers), counting bytes against the upload limit as they arrive, so an
oversized upload is refused without being held in memory. Only one ``file``
part is accepted (a positive model: an unknown form field could be something
upstream reads that the gateway did not inspect), and the body sent upstream
is built anew from what was inspected, never the client's bytes.

What is scanned: any file whose bytes are text (UTF-8, or UTF-16 with a byte
order mark, with no NUL), whatever content type the client declared, so
labelling a text file ``image/png`` does not dodge the filter; and the file
name. What is not: binary files (PDF, images, archives, office documents);
their content reaches upstream unscanned.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartWriter, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from claudegate_gateway.errors import GatewayError
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


def as_text(data: bytes) -> str | None:
    """The file's text, or None when it is binary."""
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


# (document to filter, its size) -> the policy's result; offload.py runs large ones in a worker.
ApplyPolicy = Callable[[dict[str, Any], int], Awaitable[FilterResult]]


async def filter_upload(apply: ApplyPolicy, upload: Upload) -> FilterResult:
    """Filter the file name and, when the file is text, its content (redaction rewrites both)."""
    text = as_text(upload.data)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": upload.filename}]
    if text is not None:
        blocks.append({"type": "text", "text": text})
    result = await apply({"messages": [{"role": "user", "content": blocks}]}, len(upload.data))
    upload.scanned = text is not None
    if result.changed and result.blocked is None:
        new_blocks = result.body["messages"][0]["content"]
        upload.filename = new_blocks[0]["text"]
        if text is not None:
            upload.data = new_blocks[1]["text"].encode()
        upload.redacted = True
    return result


async def upstream_body(upload: Upload) -> tuple[bytes, str]:
    """The multipart body and Content-Type to send upstream, built from the inspected upload."""
    writer = MultipartWriter("form-data")
    part = writer.append(upload.data, {hdrs.CONTENT_TYPE: upload.content_type})
    part.set_content_disposition("form-data", name="file", filename=upload.filename)
    return await writer.as_bytes(), writer.content_type
