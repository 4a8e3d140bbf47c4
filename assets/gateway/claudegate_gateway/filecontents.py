"""The text inside an uploaded file that its bytes do not show: compressed files and PDFs.

The upload filter reads every file's bytes as text (uploads.py), which finds
a secret written plainly but not one inside gzip, bzip2 or xz compression,
nor a PDF's text (kept in deflated content streams, cut into pieces by the
text operators). Upstream, the model reads both: the PDF's text directly,
a compressed file through code execution. This module gives the request
filters that text, bounded whatever the file:

* compressed (gzip, also several members; bzip2; xz; a zip archive's
  members and their names, at most :data:`MAX_ZIP_MEMBERS`), recognised by
  their magic bytes whatever the declared type: inflated with a bound on
  the output (:data:`MAX_EXPANDED_BYTES` in all), nested at most
  :data:`MAX_DEPTH` deep (a zip of gzips, a gzip of a PDF...); an encrypted
  zip member is refused; a file that expands further, or nests deeper, is
  refused (a zip bomb is never held, and what cannot be read whole is not
  waved through). A truncated or corrupt stream gives what inflated before
  the damage (what a program upstream would read too). A file is read every
  way a common tool would read it: a zip behind a prefix (``unzip`` finds
  it by its end record), a zip behind a gzip member, xz streams after
  stream padding; a zip whose local entries say other than its central
  directory (what a streaming reader would extract) is refused;
* PDF: the text of each page with ``pypdf`` and its annotations' text,
  then form fields and metadata (a well-kept, pure-Python
  reader; its own per-stream output bounds are lowered to
  :data:`PDF_MAX_STREAM_BYTES`), at most :data:`PDF_MAX_PAGES` pages and
  :data:`MAX_EXPANDED_BYTES` of text, within :data:`PDF_MAX_SECONDS`. A PDF
  that cannot be read (a password, a parser error, past a bound) is refused:
  its text cannot be inspected.

Pure functions of the bytes, run in the inspection worker for all but small
files (offload.py): parsing a PDF holds the GIL for its whole length.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import re
import signal
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Contents", "contents"]

_T = TypeVar("_T")

MAX_EXPANDED_BYTES = 64 << 20
MAX_DEPTH = 3
PDF_MAX_PAGES = 2_000
PDF_MAX_SECONDS = 30.0
_ALARM_REPEAT_SECONDS = 0.1  # after the first, until the parser stops (_within)
PDF_MAX_STREAM_BYTES = 16 << 20
_PIECE = 1 << 16
_NULS = re.compile(rb"\0*")

_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_ZIP = b"PK\x03\x04"
MAX_ZIP_MEMBERS = 10_000
# Compressed members (gzip/bzip2/xz streams) and zip entries in all, nested ones included: each costs
# a decompressor or a header parse whatever its size (300 zipped gzips of 10,000 empty members each,
# a 180 KB upload, held a worker for 10 s), so their number is bounded, not only the bytes they expand to.
MAX_MEMBERS = 20_000


@dataclass
class Contents:
    """What a file holds beyond its bytes: ``texts`` to filter, or why it cannot be inspected (``refused``)."""

    texts: list[str] = field(default_factory=list)
    refused: str | None = None
    kinds: list[str] = field(default_factory=list)  # what was opened (gzip, pdf...), for the audit
    # The file's pages as pypdf counts them (a PDF): filetokens.py reserves at least that many.
    pages: int | None = None


class _Refused(Exception):
    pass


def _decompressor(data: bytes) -> tuple[str, Any] | None:
    if data.startswith(_GZIP):
        return "gzip", zlib.decompressobj(wbits=31)
    if data.startswith(_BZIP2) and len(data) > 3 and data[3:4].isdigit():
        return "bzip2", bz2.BZ2Decompressor()
    if data.startswith(_XZ):
        return "xz", lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    return None


def _inflate(data: bytes, budgets: list[int]) -> tuple[str, bytes] | None:
    """(kind, expanded bytes) of a compressed file; None when it is not one.

    ``budgets``: [bytes, members] the whole upload has left: at most that
    many bytes come out, and the members are counted down here.
    """
    budget = budgets[0]
    found = _decompressor(data)
    if found is None:
        return None
    kind = found[0]
    out = bytearray()
    view = memoryview(data)
    start = 0  # where the current member begins (never a copy of the rest: that was quadratic in members)
    # One member after another (gzip files may be concatenated; so may bzip2 and xz streams).
    while start < len(data) and (found := _decompressor(data[start : start + 6])) is not None:
        budgets[1] -= 1
        if budgets[1] < 0:
            raise _Refused(f"it has more than {MAX_MEMBERS} compressed members and archive entries in all")
        dec = found[1]
        zlib_kind = found[0] == "gzip"
        pos = start
        try:
            while pos < len(data) and not dec.eof:
                piece: bytes | memoryview = view[pos : pos + _PIECE]
                pos += len(piece)
                while True:
                    # Never more out than the budget left (+1, to know it was passed).
                    out += dec.decompress(piece, budget - len(out) + 1)
                    if len(out) > budget:
                        raise _Refused(f"it expands past the gateway's limit of {MAX_EXPANDED_BYTES} bytes")
                    # Output held back by that bound is drained before more input goes in.
                    if zlib_kind:
                        piece = dec.unconsumed_tail
                        if not piece:
                            break
                    else:
                        piece = b""
                        if dec.eof or dec.needs_input:
                            break
        except (zlib.error, OSError, EOFError, lzma.LZMAError):
            break  # damaged from here on: what inflated so far is what any reader gets
        if not dec.eof:
            break
        start = pos - len(dec.unused_data)  # the next member, if any
        if found[0] == "xz":
            # Stream padding (NULs) may separate xz streams; xz -d reads the stream after it.
            padding = _NULS.match(data, start)
            start = padding.end() if padding else start
    return kind, bytes(out)


def _pdf_text(data: bytes, budget: int, until: float) -> tuple[str, int]:
    """(the PDF's text, its pages)."""
    try:
        import pypdf
        from pypdf.errors import PyPdfError
    except ImportError:  # an image built from a lock without it: PDFs are refused, never waved through
        raise _Refused("this gateway cannot read PDF text (its pypdf package is missing)") from None

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd files are no news here
    left = until - time.monotonic()
    if left <= 0:
        raise _Refused(f"reading its text took longer than {PDF_MAX_SECONDS:.0f} s")
    limits = {name: PDF_MAX_STREAM_BYTES for name in (
        "maximum_declared_stream_length", "array_based_stream_maximum_output_length", "zlib_maximum_output_length",
        "lzw_maximum_output_length", "run_length_maximum_output_length", "jbig2_maximum_output_length",
        "brotli_maximum_output_length")}  # fmt: skip
    try:
        with pypdf.apply_configuration(None, **limits):
            return _within(left, lambda: _pdf_pages_text(pypdf, PyPdfError, data, budget, until))
    except _TimeUp:  # outside the with: an alarm late in its exit is caught too
        raise _Refused(f"reading its text took longer than {PDF_MAX_SECONDS:.0f} s") from None


class _TimeUp(BaseException):
    """Raised by the alarm: a BaseException, so the parser's own ``except Exception`` cannot swallow it."""


def _within(seconds: float, work: Callable[[], _T]) -> _T:
    """``work()``, interrupted by :class:`_TimeUp` once `seconds` have passed, where a
    signal can (a worker process's main thread).

    One page of a hostile PDF can hold the parser for long; the check between
    pages would come too late. Elsewhere (the thread fallback) only that check applies.
    The alarm repeats until `work` ends: Python drops an exception raised in a
    weakref callback or a ``__del__`` ("Exception ignored in ..."), so a single
    alarm that lands in one while the parser frees objects would leave the page unbounded.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    working = True

    def time_up(_signum: int, _frame: Any) -> None:
        if working:  # an alarm handled once `work` has ended is no one's to stop
            raise _TimeUp

    previous = signal.signal(signal.SIGALRM, time_up)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds, _ALARM_REPEAT_SECONDS)
        return work()
    finally:
        working = False  # first, before any call (where a pending alarm's handler could run)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _pdf_pages_text(
    pypdf: Any, pdf_error: type[Exception], data: bytes, budget: int, until: float
) -> tuple[str, int]:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Refused("it is encrypted with a password")
        if len(reader.pages) > PDF_MAX_PAGES:
            raise _Refused(f"it has more than {PDF_MAX_PAGES} pages")
        texts: list[str] = []
        size = 0
        for page in reader.pages:
            # The page's text, then its annotations' (a comment, a text box): drawn on the page
            # the model sees, and kept outside the content stream, so extract_text leaves them out.
            text = "\n".join([page.extract_text() or "", *_annotation_texts(page)])
            texts.append(text)
            size += len(text)
            if size > budget:
                raise _Refused(f"its text is longer than the gateway's limit of {MAX_EXPANDED_BYTES} characters")
            if time.monotonic() > until:
                raise _Refused(f"reading its text took longer than {PDF_MAX_SECONDS:.0f} s")
        pages = len(texts)
        # Form fields' names and values (drawn in their widgets) and the document's metadata.
        fields = reader.get_form_text_fields() or {}
        texts.append("\n".join(f"{name}: {value}" for name, value in fields.items()))
        texts.append("\n".join(str(v) for v in (reader.metadata or {}).values() if isinstance(v, str)))
        if size + len(texts[-1]) + len(texts[-2]) > budget:
            raise _Refused(f"its text is longer than the gateway's limit of {MAX_EXPANDED_BYTES} characters")
    except _Refused:
        raise
    except (pdf_error, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            NotImplementedError, AssertionError, zlib.error, OSError):  # fmt: skip
        raise _Refused("the gateway could not read its text") from None
    # Pages apart: a secret is not glued across a page break it does not cross.
    return "\n\f\n".join(texts), pages


_ANNOTATION_TEXT = ("/Contents", "/T", "/Subj", "/RC")


def _annotation_texts(page: Any) -> list[str]:
    """The text an annotation of the page carries (its contents, title, subject, rich text)."""
    annots = page.get("/Annots")
    annots = annots.get_object() if annots is not None else []
    found: list[str] = []
    for annot in annots if isinstance(annots, list) else []:
        obj = annot.get_object()
        if isinstance(obj, dict):
            found += [str(obj[key]) for key in _ANNOTATION_TEXT if isinstance(obj.get(key), str)]
    return found


def _is_pdf(data: bytes) -> bool:
    # Readers accept the header anywhere in the first KiB (as filetokens.py counts pages).
    return b"%PDF-" in data[:1024]


def inside_kind(data: bytes) -> str:
    """What :func:`contents` takes `data` for (for messages): pdf, gzip, bzip2, xz or file."""
    if _is_pdf(data):
        return "PDF"
    found = _decompressor(data)
    if found is not None:
        return found[0]
    return "zip" if data.startswith(_ZIP) else "file"


def _is_zip(data: bytes) -> bool:
    # unzip and zipfile find an archive by its end record, after any prefix (a script, a gzip
    # member, an image): an archive that does not start the file is an archive to them too.
    if data.startswith(_ZIP):
        return True
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    # The end record's 4 magic bytes turn up by chance in about one binary file in 65,000;
    # only an end record that leads to a directory of members makes the file an archive.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return bool(archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return False


def looks_opened(data: bytes) -> bool:
    """True when :func:`contents` would open `data` (a PDF, a compressed file, a zip): work for the worker."""
    return _is_pdf(data) or _decompressor(data) is not None or _is_zip(data)


def contents(data: bytes, seconds: float | None = None) -> Contents:
    """The texts inside `data` the upload filter must also see (none for a plain file).

    ``seconds``: for all the PDFs in it together (a zip of a hundred slow PDFs
    must not take a hundred times the bound); :data:`PDF_MAX_SECONDS` by default.
    """
    until = time.monotonic() + (PDF_MAX_SECONDS if seconds is None else seconds)
    found = Contents()
    try:
        _open(data, 0, found, [MAX_EXPANDED_BYTES, MAX_MEMBERS], until, top=True)
    except _Refused as why:
        found.refused = str(why)
        found.texts = []
    return found


def _open(
    data: bytes, depth: int, found: Contents, budget: list[int], until: float, *, top: bool = False
) -> None:
    """Add the texts inside `data` (opened `depth` levels deep already) to `found`;
    ``budget``: [bytes left, members left] for the whole upload; ``until``: when its PDFs' time is up."""
    from claudegate_gateway.uploads import decode  # uploads imports this module

    # Every reading that applies, not the first: a file can be a gzip and a zip at once
    # (gunzip reads the front, unzip the archive behind it), or a PDF with an archive appended.
    opened: list[tuple[str, list[bytes]]] = []
    if _is_pdf(data):
        try:
            text, pages = _pdf_text(data, budget[0], until)
        except _Refused:
            if data.startswith(b"%PDF-") or not top:
                raise
            text = None  # "%PDF-" inside a text file's first KiB, no PDF: its bytes were scanned
        if text is not None:
            if top:
                found.pages = pages
            budget[0] -= len(text)
            found.kinds.append("pdf")
            found.texts.append(text)
    inflated = _inflate(data, budget)
    if inflated is not None:
        opened.append((inflated[0], [inflated[1]]))
        budget[0] -= len(inflated[1])
    if _is_zip(data):
        names, members = _unzip(data, budget[0], budget)
        found.texts.append("\n".join(names))  # member names are text the model sees too
        opened.append(("zip", members))
        budget[0] -= sum(map(len, members))
    if not opened:
        return
    if depth == MAX_DEPTH:
        raise _Refused(f"it is compressed more than {MAX_DEPTH} times over")
    for kind, inners in opened:
        found.kinds.append(kind)
        for inner in inners:
            # The expanded bytes are read like an uploaded file's; what is inside is opened in turn.
            found.texts.append(decode(inner)[0])
            if looks_opened(inner):
                _open(inner, depth + 1, found, budget, until)


def _unzip(data: bytes, budget: int, budgets: list[int]) -> tuple[list[str], list[bytes]]:
    """(member names, member contents) of a zip archive, at most ``budget`` bytes of contents in all;
    its entries are counted down in ``budgets[1]`` (the members the whole upload has left)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise _Refused("the gateway could not read it as a zip archive") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise _Refused(f"it has more than {MAX_ZIP_MEMBERS} members")
    budgets[1] -= len(infos)
    if budgets[1] < 0:
        raise _Refused(f"it has more than {MAX_MEMBERS} compressed members and archive entries in all")
    _check_entries(data, infos, archive.start_dir)
    names: list[str] = []
    members: list[bytes] = []
    total = 0
    for info in infos:
        names.append(info.filename)
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise _Refused(f"its member {info.filename[:80]!r} is encrypted")
        try:
            with archive.open(info) as member:
                # Never more out than the budget left (+1, to know it was passed), whatever the header claims.
                content = member.read(budget - total + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
            raise _Refused(f"its member {info.filename[:80]!r} could not be read") from None
        total += len(content)
        if total > budget:
            raise _Refused(f"it expands past the gateway's limit of {MAX_EXPANDED_BYTES} bytes")
        members.append(content)
    return names, members


def _check_entries(data: bytes, infos: list[zipfile.ZipInfo], directory: int) -> None:
    """Refuse a zip whose local entries say other than its central directory.

    zipfile (and unzip) read members through the central directory; a
    streaming reader (libarchive's bsdtar, Java's ZipInputStream) walks the
    local entries instead. A local entry the directory does not list, or one
    whose compression or encryption differs from its directory record, is
    content only the other kind of reader sees.
    """
    spans: list[tuple[int, int]] = []
    for info in infos:
        at = info.header_offset
        if data[at : at + 4] != _ZIP or len(data) < at + 30:
            raise _Refused(f"its directory points its member {info.filename[:80]!r} at no entry")
        flags, method = struct.unpack_from("<HH", data, at + 6)
        crc, csize, usize = struct.unpack_from("<III", data, at + 14)
        # (Encrypted in the directory is refused by the caller, with its own reason.)
        differs = method != info.compress_type or flags & ~info.flag_bits & 0x1
        # Sizes in the entry (no data descriptor after it, no zip64 marker): a streaming reader
        # takes a stored member's length from there, so a longer one reads bytes zipfile skips.
        if not flags & 0x8 and csize != 0xFFFFFFFF and usize != 0xFFFFFFFF:
            differs = differs or (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size)
        if differs:
            raise _Refused(f"its member {info.filename[:80]!r} is described two ways (entry and directory)")
        name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
        spans.append((at, at + 30 + name_len + extra_len + info.compress_size))
    seen = 0
    for start, end in [*sorted(spans), (directory, directory)]:
        # Between the listed entries (data descriptors, a prefix) there is no other entry.
        if data.find(_ZIP, seen, start) != -1:
            raise _Refused("it holds an entry its central directory does not list")
        seen = max(seen, end)
