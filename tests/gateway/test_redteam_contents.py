"""Red team: uploads whose inside the gateway's reader and the model's tools read differently.

Each attack puts a secret where a common tool upstream (``unzip``,
``xz -d``, Python's ``zipfile``) finds it, and checks through the real
gateway that the secret never reaches the recording upstream. The last
one is a denial of service: an upload that held an inspection worker for
minutes.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator

import httpx
import pytest

from claudegate_gateway.filecontents import contents
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

V = {"anthropic-version": "2023-06-01"}
AWS = "AKIAIOSFODNN7EXAMPLE"
HIDDEN = ("option = on\n" * 20 + f"key = {AWS}\n").encode()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _read_zip(data: bytes) -> dict[str, bytes]:
    """What Python's zipfile (as ``unzip``: the central directory, a prefix allowed) reads."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _hidden_local_entry() -> bytes:
    """A zip whose central directory lists only a harmless member; a second local entry before it
    holds the secret (a streaming reader, libarchive's ``bsdtar -xf`` or Java's ZipInputStream, reads it)."""
    secret = _zip({"conf.ini": HIDDEN})
    local = secret[: secret.index(b"PK\x01\x02")]  # its local entry alone, no directory
    harmless = _zip({"readme.txt": b"hello"})
    # The harmless archive after the hidden entry: its offsets are shifted by the prefix, as for any prefix.
    return local + harmless


def _stored_in_directory_deflated_locally() -> bytes:
    """The central directory says stored (zipfile returns the raw, deflated bytes: no secret in sight);
    the local header says deflated (a streaming reader inflates it: the secret)."""
    data = bytearray(_zip({"conf.ini": HIDDEN}))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, central + 10, zipfile.ZIP_STORED)
    # Stored: the sizes and the CRC must be the raw bytes' for zipfile to read it whole.
    csize = struct.unpack_from("<I", data, central + 20)[0]
    struct.pack_into("<I", data, central + 24, csize)
    local_name = struct.unpack_from("<HH", data, 26)
    start = 30 + sum(local_name)
    struct.pack_into("<I", data, central + 16, zlib.crc32(data[start : start + csize]))
    return bytes(data)


def _empty_in_the_directory() -> bytes:
    """A stored member ``a.gz`` the central directory calls empty (zipfile reads no bytes); its local
    entry keeps the real length, so a streaming reader extracts the gzip of the secret, for gunzip."""
    data = bytearray(_zip({"a.gz": gzip.compress(HIDDEN)}, zipfile.ZIP_STORED))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<III", data, central + 16, 0, 0, 0)  # crc, compressed size, size
    return bytes(data)


ATTACKS = {
    # unzip and zipfile skip a prefix ("extra bytes at beginning"): a zip after any bytes is a zip.
    "zip after a prefix": (b"#!/bin/sh\nexit 0\n" + _zip({"conf.ini": HIDDEN}), "tools.sh"),
    # A gzip member, then a zip: gunzip gives the harmless part, unzip the secret.
    "gzip then zip": (gzip.compress(b"harmless\n") + _zip({"conf.ini": HIDDEN}), "data.gz"),
    # xz -d reads every stream, over the stream padding (NULs, a multiple of 4) between them.
    "xz streams with padding": (lzma.compress(b"harmless\n") + b"\0" * 4 + lzma.compress(HIDDEN), "logs.xz"),
    "a local entry the directory does not list": (_hidden_local_entry(), "bundle.zip"),
    "stored in the directory, deflated locally": (_stored_in_directory_deflated_locally(), "bundle.zip"),
    "empty in the directory, a gzip locally": (_empty_in_the_directory(), "bundle.zip"),
}


def test_the_attacks_hide_the_secret_from_the_bytes_and_the_tools_find_it() -> None:
    for name, (data, _) in ATTACKS.items():
        assert AWS.encode() not in data, name
    assert AWS.encode() in _read_zip(ATTACKS["zip after a prefix"][0])["conf.ini"]
    assert AWS.encode() in _read_zip(ATTACKS["gzip then zip"][0])["conf.ini"]
    padded = ATTACKS["xz streams with padding"][0]
    # The xz format (what xz -d reads): stream padding between streams is allowed (xz file format 1.0.4, 2.2).
    second = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    second.decompress(padded)
    assert AWS.encode() in lzma.decompress(second.unused_data.lstrip(b"\0"))
    assert _read_zip(ATTACKS["a local entry the directory does not list"][0]) == {"readme.txt": b"hello"}
    lied = ATTACKS["stored in the directory, deflated locally"][0]
    raw = _read_zip(lied)["conf.ini"]
    assert AWS.encode() not in raw and AWS.encode() in zlib.decompress(raw, -15)
    empty = ATTACKS["empty in the directory, a gzip locally"][0]
    assert _read_zip(empty) == {"a.gz": b""}
    size, name_len = struct.unpack_from("<I", empty, 18)[0], struct.unpack_from("<H", empty, 26)[0]
    assert AWS.encode() in gzip.decompress(empty[30 + name_len : 30 + name_len + size])


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("redteam-contents"), fake_anthropic.url, fake_anthropic.api_key)
    proc.start()
    yield proc
    proc.stop()


def _post(gw: GatewayProc, key: str, name: str, data: bytes, timeout: float = 120) -> httpx.Response:
    return httpx.post(gw.url + "/v1/files", headers={**V, "x-api-key": key},
                      files={"file": (name, data, "application/octet-stream")}, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_secret_the_tools_find_never_reaches_upstream(gw: GatewayProc, fake: FakeAnthropic, attack: str) -> None:
    data, name = ATTACKS[attack]
    r = _post(gw, gw.create_key(f"rt-{list(ATTACKS).index(attack)}"), name, data)
    assert r.status_code == 400, (attack, r.status_code, r.text)
    assert fake.state.requests_for("/v1/files") == [], attack


def test_a_clean_zip_with_a_prefix_still_goes_up(gw: GatewayProc, fake: FakeAnthropic) -> None:
    data = b"#!/bin/sh\nexit 0\n" + _zip({"a.txt": b"nothing secret", "b.csv": b"1,2"})
    r = _post(gw, gw.create_key("rt-clean"), "tools.sh", data)
    assert r.status_code == 200, r.text
    assert fake.state.files[r.json()["id"]].data == data


def test_many_tiny_compressed_members_do_not_hold_a_worker() -> None:
    """8 MB of empty gzip members (400 000 of them): the reader copied the rest of the file after
    each member, quadratic (measured: 3.2 MB took 9 s, 32 MB would take a quarter of an hour)."""
    data = gzip.compress(b"", mtime=0) * 400_000
    started = time.monotonic()
    found = contents(data)
    took = time.monotonic() - started
    assert took < 20, took
    assert found.refused is None or "members" in found.refused


def test_end_to_end_a_many_member_upload_is_answered_promptly(gw: GatewayProc, fake: FakeAnthropic) -> None:
    data = gzip.compress(b"", mtime=0) * 400_000 + gzip.compress(HIDDEN)
    started = time.monotonic()
    r = _post(gw, gw.create_key("rt-members"), "many.gz", data, timeout=300)
    took = time.monotonic() - started
    assert r.status_code == 400, r.text
    assert took < 30, took
    assert fake.state.requests_for("/v1/files") == []


def test_a_stray_end_record_signature_in_a_binary_file_is_no_archive() -> None:
    """The 4 magic bytes of a zip's end record turn up by chance in binary files; with no directory of
    members behind them the file is read as its bytes, not refused as an unreadable archive."""
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40 + b"PK\x05\x06" + b"\x01" * 18 + b"IEND"
    assert zipfile.is_zipfile(io.BytesIO(image))  # what a bare end-record test would take for a zip
    found = contents(image)
    assert found.refused is None and found.kinds == []


def _zipped_gzips(files: int = 300, members: int = 9_999) -> bytes:
    """A 180 KB zip of 300 gzip files of 10,000 empty members each: 3 million decompressors, no output."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(files):
            archive.writestr(f"{i}.gz", gzip.compress(b"", mtime=0) * members)
    return out.getvalue()


def test_members_are_counted_over_the_whole_upload_not_per_file() -> None:
    """Each file stayed under the per-file bound and expanded to nothing: the worker was held for 10 s
    (measured) by a 180 KB upload. The bound is on members and entries in all, nested ones included."""
    data = _zipped_gzips()
    assert len(data) < 256 * 1024
    started = time.monotonic()
    found = contents(data)
    assert found.refused is not None and "members" in found.refused, found.refused
    assert time.monotonic() - started < 8
    # An ordinary archive of archives is far from the bound.
    inner = _zip({f"sheet{i}.xml": b"<row/>" for i in range(20)})
    assert contents(_zip({f"book{i}.xlsx": inner for i in range(200)}, zipfile.ZIP_STORED)).refused is None


def test_end_to_end_zipped_gzips_are_refused_promptly(gw: GatewayProc, fake: FakeAnthropic) -> None:
    started = time.monotonic()
    r = _post(gw, gw.create_key("rt-zipped-gzips"), "logs.zip", _zipped_gzips())
    assert r.status_code == 400 and "members" in r.text, r.text
    assert time.monotonic() - started < 15
    assert fake.state.requests_for("/v1/files") == []


def _pdf_with(where: str) -> bytes:
    """A blank page whose only text is the key in an annotation (a text box) or the document's title,
    written as a hex string: not in the file's bytes, and not in the page's extracted text."""
    import pypdf
    from pypdf.annotations import FreeText

    writer = pypdf.PdfWriter()
    writer.add_blank_page(600, 800)
    text = f"creds {AWS}"
    if where == "annotation":
        writer.add_annotation(page_number=0, annotation=FreeText(text=text, rect=(50, 550, 400, 650)))
    else:
        writer.add_metadata({"/Title": text})
    out = io.BytesIO()
    writer.write(out)
    literal = b"(" + text.encode() + b")"
    assert literal in out.getvalue()
    return out.getvalue().replace(literal, b"<" + text.encode().hex().encode() + b">")


@pytest.mark.parametrize("where", ["annotation", "title"])
def test_a_pdfs_annotations_and_metadata_are_read_too(gw: GatewayProc, fake: FakeAnthropic, where: str) -> None:
    import pypdf

    data = _pdf_with(where)
    assert AWS.encode() not in data
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    assert AWS not in (reader.pages[0].extract_text() or "")  # what the gateway read before
    assert any(AWS in t for t in contents(data).texts)
    r = _post(gw, gw.create_key(f"rt-pdf-{where}"), "report.pdf", data)
    assert r.status_code == 400, r.text
    assert fake.state.requests_for("/v1/files") == []


def test_the_pdf_time_bound_is_for_the_whole_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each PDF had its own 30 s: a zip of a hundred slow PDFs could hold a worker for 50 minutes.
    The bound (here three times one PDF's reading) is for all the PDFs of one upload together."""
    import claudegate_gateway.filecontents as fc
    from tests.support.pdfmake import make_pdf

    slow = make_pdf([" ".join(f"w{i}" for i in range(300))] * 2, split=2)
    assert contents(slow).refused is None  # (warm: imports and caches out of the measurement)
    one = time.monotonic()
    assert contents(slow).refused is None
    took = time.monotonic() - one  # one of them, on this host
    monkeypatch.setattr(fc, "PDF_MAX_SECONDS", 3 * took)
    assert contents(slow).refused is None  # one fits in the bound
    archive = _zip({f"part{i}.pdf": slow for i in range(30)}, zipfile.ZIP_STORED)
    found = contents(archive)  # thirty do not: each within it, all together past it
    assert found.refused is not None and "longer than" in found.refused, found.refused
