"""Uploads whose text their bytes do not show: compressed files and PDFs (filecontents.py).

Attack: the secret goes up inside gzip/bzip2/xz (the model's code execution
inflates it) or in a PDF's deflated content stream, cut into a TJ array's
pieces (the model reads the PDF's text). The bytes scan alone sees neither.
Defence: the inside is read (bounded) and filtered; a match blocks; what
cannot be read whole (a bomb, too deep, a password) is refused.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import signal
import time
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from claudegate_gateway.errors import GatewayError
from claudegate_gateway.filecontents import MAX_DEPTH, MAX_EXPANDED_BYTES, contents
from claudegate_gateway.filters import FilterPolicy, FilterResult
from claudegate_gateway.offload import _inside
from claudegate_gateway.uploads import Upload, filter_upload
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway
from tests.support.pdfmake import make_pdf

V = {"anthropic-version": "2023-06-01"}
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}])
BLOCK = FilterPolicy.default()
PACKERS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}


def _filter(data: bytes, policy: FilterPolicy = REDACT) -> tuple[Upload, FilterResult]:
    async def apply(doc: dict[str, Any], size: int) -> FilterResult:
        return policy.apply(doc)

    async def expand(raw: bytes) -> Any:
        return _inside(raw, policy)  # what the worker runs

    upload = Upload("data.bin", "application/octet-stream", data)
    return upload, asyncio.run(filter_upload(apply, upload, expand))


@pytest.mark.parametrize("packer", list(PACKERS))
@pytest.mark.parametrize("secret", [AWS, GITHUB])
def test_a_secret_inside_a_compressed_file_blocks_the_upload(packer: str, secret: str) -> None:
    data = PACKERS[packer](("option = on\n" * 50 + f"key = {secret}\n").encode())
    assert secret.encode() not in data
    for policy in (REDACT, BLOCK):
        upload, result = _filter(data, policy)
        # A compressed file cannot be redacted in place: a redact rule blocks it.
        assert result.blocked is not None and result.blocked.action == "block", (packer, policy)
        assert upload.data == data and not upload.redacted


def test_the_inside_is_read_whatever_the_wrapping() -> None:
    secret = f"token {GITHUB} end".encode()
    wrapped = {
        "gzip of xz of bzip2": gzip.compress(lzma.compress(bz2.compress(secret))),
        "second gzip member": gzip.compress(b"harmless " * 5000) + gzip.compress(secret),
        "truncated gzip (what inflates before the cut)": gzip.compress(secret + b" " * 4000)[:-12],
        "gzip of a PDF": gzip.compress(make_pdf(["page one", f"the key {AWS}"], split=4)),
    }
    for name, data in wrapped.items():
        assert GITHUB.encode() not in data and AWS.encode() not in data, name
        assert _filter(data)[1].blocked is not None, name


def test_a_clean_compressed_file_goes_up_unchanged_with_no_verdict() -> None:
    data = gzip.compress(b"just a csv,with,columns\n" * 1000)
    upload, result = _filter(data)
    assert result.blocked is None and not result.changed and upload.data == data and not result.verdicts


def test_a_zip_bomb_is_refused_without_being_held() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b"\0" * (MAX_EXPANDED_BYTES + 1)) + bomb.flush()
    assert len(data) < MAX_EXPANDED_BYTES // 500
    started = time.monotonic()
    found = contents(data)
    assert found.refused is not None and "expands past" in found.refused
    assert found.texts == []  # nothing of it kept
    assert time.monotonic() - started < 10
    with pytest.raises(GatewayError, match="cannot inspect this gzip file"):
        _filter(data)


def test_compression_nested_too_deep_is_refused() -> None:
    data = b"x"
    for _ in range(MAX_DEPTH + 1):
        data = gzip.compress(data)
    assert contents(data).refused == f"it is compressed more than {MAX_DEPTH} times over"
    inner = b"x"
    for _ in range(MAX_DEPTH):
        inner = gzip.compress(inner)
    assert contents(inner).refused is None


@pytest.mark.parametrize("split", [0, 1, 3, 7])
def test_a_secret_in_a_pdfs_text_blocks_the_upload(split: int) -> None:
    """The content stream is deflated, and (split) the text is cut into TJ pieces with kerning."""
    data = make_pdf(["Quarterly notes", f"access key {AWS} rotate monthly"], split=split)
    assert AWS.encode() not in data and b"AKIA" not in data
    result = _filter(data)[1]
    assert result.blocked is not None and result.blocked.action == "block"
    clean = make_pdf(["Quarterly notes", "nothing to see"], split=split)
    assert _filter(clean)[1].blocked is None


def test_a_pdf_that_cannot_be_read_is_refused_and_a_text_about_pdfs_is_not() -> None:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf([f"key {AWS}"]))))
    writer.encrypt(user_password="s3cret", algorithm="AES-256")
    locked = io.BytesIO()
    writer.write(locked)
    for data, why in ((locked.getvalue(), "encrypted with a password"),
                      (b"%PDF-1.7\n" + b"\x00garbage" * 100, "could not read its text")):  # fmt: skip
        with pytest.raises(GatewayError, match=f"cannot inspect this PDF file: .*{why}"):
            _filter(data)
    # A text file that quotes the header is a text file: its bytes were scanned, nothing refused.
    note = b"A PDF starts with the bytes %PDF-1.7 and ends with %%EOF.\n"
    assert _filter(note)[1].blocked is None


def test_a_pdf_that_holds_the_parser_too_long_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The alarm interrupts the parser inside a page, not only between pages.

    One page of 10 KB: 500 text operators of 1,000 pieces each, inside every
    bound pypdf keeps (its array and token counts), holds it for about 10 s of
    CPU when read whole (a 2-core CI machine). Measured in this process's CPU
    time, not on the wall clock: a loaded machine slows the parse, not what it costs.
    """
    import claudegate_gateway.filecontents as fc

    monkeypatch.setattr(fc, "PDF_MAX_SECONDS", 0.05)
    one_long_page = make_pdf(["ab" * 1_000], split=2, repeat=500)
    assert len(one_long_page) < 16_000
    started = time.process_time()
    assert contents(one_long_page).refused == "reading its text took longer than 0 s"
    assert time.process_time() - started < 1.0


def test_an_alarm_the_parser_swallows_is_followed_by_another() -> None:
    """Python drops an exception raised in a weakref callback or ``__del__`` (a page's
    parse frees many objects): one alarm landing there must not leave the page unbounded."""
    import claudegate_gateway.filecontents as fc

    swallowed: list[BaseException] = []

    def parse() -> str:
        started = time.process_time()
        while True:
            try:
                while time.process_time() - started < 10:
                    pass
            except BaseException as exc:  # what Python does to it inside a weakref callback
                if swallowed:
                    raise
                swallowed.append(exc)
            else:
                return "the whole page, unbounded"

    before = signal.getsignal(signal.SIGALRM)
    started = time.process_time()
    with pytest.raises(fc._TimeUp):
        fc._within(0.05, parse)
    assert len(swallowed) == 1 and isinstance(swallowed[0], fc._TimeUp)
    assert time.process_time() - started < 2
    # Nothing left behind: no timer running, the handler as it was.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is before


def test_a_pdf_with_too_many_pages_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import claudegate_gateway.filecontents as fc

    monkeypatch.setattr(fc, "PDF_MAX_PAGES", 3)
    assert contents(make_pdf(["a", "b", "c"])).refused is None
    assert contents(make_pdf(["a", "b", "c", "d"])).refused == "it has more than 3 pages"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_zip_archive_is_opened_member_by_member() -> None:
    hidden = ("option = on\n" * 50 + f"key = {AWS}\n").encode()
    cases = {
        "a member": _zip({"readme.txt": b"hello", "conf/app.ini": hidden}),
        "a member's name": _zip({f"keys/{GITHUB}.txt": b"x"}),
        "a gzip inside": _zip({"logs.gz": gzip.compress(hidden)}),
        "a zip inside": _zip({"inner.zip": _zip({"a.txt": hidden})}),
        "a PDF inside": _zip({"r.pdf": make_pdf([f"key {AWS}"], split=3)}),
    }
    for name, data in cases.items():
        assert AWS.encode() not in data or name == "a member's name", name
        assert _filter(data)[1].blocked is not None, name
    clean = _zip({"a.txt": b"nothing here", "b/c.csv": b"1,2,3"})
    assert _filter(clean)[1].blocked is None


def test_zips_that_cannot_be_read_whole_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import claudegate_gateway.filecontents as fc

    plain = _zip({"secret.txt": f"key {AWS}".encode()})
    # An encrypted member (the flag set in the central directory): its content is unseen, so refused.
    at = plain.index(b"PK\x01\x02") + 8
    locked = plain[:at] + bytes([plain[at] | 1]) + plain[at + 1 :]
    assert contents(locked).refused == "its member 'secret.txt' is encrypted"
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * (MAX_EXPANDED_BYTES + 1))
    assert len(bomb.getvalue()) < MAX_EXPANDED_BYTES // 500
    found = contents(bomb.getvalue())
    assert found.refused is not None and "expands past" in found.refused and found.texts == []
    monkeypatch.setattr(fc, "MAX_ZIP_MEMBERS", 5)
    assert contents(_zip({f"{i}.txt": b"x" for i in range(6)})).refused == "it has more than 5 members"
    assert contents(b"PK\x03\x04 not really a zip").refused == "the gateway could not read it as a zip archive"


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("contents"), fake_anthropic.url, fake_anthropic.api_key, {
        "filters": [{"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}]})
    proc.start()
    yield proc
    proc.stop()


def _post(gw: GatewayProc, key: str, name: str, data: bytes, mime: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/files", headers={**V, "x-api-key": key},
                      files={"file": (name, data, mime)}, timeout=60)  # fmt: skip


def test_end_to_end_compressed_and_pdf_secrets_never_reach_upstream(gw: GatewayProc, fake: FakeAnthropic) -> None:
    key = gw.create_key("uploader")
    filler = " ".join(f"w{i}" for i in range(60_000)).encode()  # past the inline size: the worker reads it
    cases = {
        ("notes.txt.gz", "application/gzip"): gzip.compress(filler + f" {AWS} ".encode()),
        ("report.pdf", "application/pdf"): make_pdf(["summary", f"key {AWS}"], split=5),
        ("big.pdf", "application/pdf"): make_pdf([filler.decode()[:3000]] * 60 + [f"key {AWS}"], split=9),
    }
    for (name, mime), data in cases.items():
        r = _post(gw, key, name, data, mime)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (name, r.text)
    assert fake.state.requests_for("/v1/files") == []
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    r = _post(gw, key, "bomb.gz", bomb.compress(b"\0" * (MAX_EXPANDED_BYTES + 1)) + bomb.flush(), "application/gzip")
    assert r.status_code == 400 and "expands past" in r.json()["error"]["message"]
    assert fake.state.requests_for("/v1/files") == []
    clean = make_pdf(["summary", "nothing secret"], split=5)
    r = _post(gw, key, "ok.pdf", clean, "application/pdf")
    assert r.status_code == 200, r.text
    assert fake.state.files[r.json()["id"]].data == clean  # the bytes inspected are the bytes sent
