"""Red team: downloads (files the model made) whose text the response rules did not see.

Holes found here, each failing before its fix: a file written in UTF-16 or
UTF-32 (NULs between the letters) and a compressed file, a zip archive
(every Office document) or a PDF went to the client byte for byte with an
AWS key in it, where the same key in a plain text file is redacted. Now a
NUL-spread match blocks (the file cannot be rewritten in place), and a file
with an inside is held whole (at most 64 MiB), opened as an upload is
(filecontents.py), and blocked when the rules match inside or when it
cannot be read whole. Each file is played by the fake's store, as code
execution would have written it (tests/gateway/test_download_filters.py).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zipfile
from collections.abc import Callable

import httpx
import pypdf
import pytest
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.conftest import GatewayFactory
from tests.gateway.test_download_filters import AWS, HOLD, V, download, gw, keys, model_made
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc

__all__ = ["gw", "keys"]  # test_download_filters' gateway (its response rules) and keys

SECRET = f"aws_access_key_id = {AWS}\n"
TEXT = "report\n" * 50 + SECRET  # long enough that xz compresses it (a short input is stored as it is)


def _zip(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", data)
    return out.getvalue()


def _pdf(text: str) -> bytes:
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


HIDING: dict[str, Callable[[str], bytes]] = {
    "utf-16-le, no mark": lambda t: t.encode("utf-16-le"),
    "utf-16 with its mark": lambda t: t.encode("utf-16"),
    "utf-16-be": lambda t: t.encode("utf-16-be"),
    "utf-32": lambda t: t.encode("utf-32"),
    "gzip": lambda t: gzip.compress(t.encode()),
    "bzip2": lambda t: bz2.compress(t.encode()),
    "xz": lambda t: lzma.compress(t.encode()),
    "zip (an Office document)": lambda t: _zip(t.encode()),
    "a PDF's text": lambda t: _pdf(t.strip()),
}


def test_the_files_hide_the_key_from_their_bytes() -> None:
    for name, hide in HIDING.items():
        assert AWS.encode() not in hide(TEXT), name
    assert AWS in pypdf.PdfReader(io.BytesIO(_pdf(SECRET.strip()))).pages[0].extract_text()


@pytest.mark.parametrize("name", list(HIDING))
def test_a_key_hidden_in_a_download_blocks_it(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic, name: str
) -> None:
    data = HIDING[name](TEXT)
    file_id = model_made(gw, fake, keys["team"], data)
    r = download(gw, keys["team"], file_id)
    assert r.status_code == 400, (name, r.status_code, r.content[:200])
    assert r.json()["type"] == "error" and "'secrets'" in r.json()["error"]["message"]
    assert data not in r.content
    record = gw.record(r.headers)
    assert ("secrets", "block") in {(v["rule"], v["action"]) for v in record["filters"]}


@pytest.mark.parametrize("name", list(HIDING))
def test_a_clean_download_of_each_kind_is_byte_for_byte(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic, name: str
) -> None:
    data = HIDING[name]("quarterly report\n" * 200)
    r = download(gw, keys["team"], model_made(gw, fake, keys["team"], data))
    assert r.status_code == 200, r.text
    assert r.content == data


def test_a_large_gzip_is_read_whole_before_anything_is_sent(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    """Past the held first megabyte a plain file streams; a compressed one is held: a cut gzip
    still gives its beginning, so the key at its end must stop it before the status line."""
    noise = os.urandom(3 * HOLD).hex().encode()  # incompressible: the gzip stays over 2 MiB
    data = gzip.compress(noise + b"\n" + SECRET.encode(), compresslevel=1)
    assert len(data) > 2 * HOLD
    r = download(gw, keys["team"], model_made(gw, fake, keys["team"], data))
    assert r.status_code == 400, r.content[:200]
    assert len(r.content) < 1000


def test_a_compressed_download_that_cannot_be_read_whole_is_refused(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    bomb = gzip.compress(b"\0" * (80 << 20))  # expands past the 64 MiB the gateway will inflate
    r = download(gw, keys["team"], model_made(gw, fake, keys["team"], bomb))
    assert r.status_code == 400 and "cannot inspect" in r.json()["error"]["message"], r.text


def test_a_utf16_key_past_the_held_part_cuts_the_download(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    data = ("z" * HOLD + " " + SECRET + "z" * 1000).encode("utf-16-le")
    file_id = model_made(gw, fake, keys["team"], data)
    got = b""
    with pytest.raises(httpx.HTTPError), httpx.stream(
        "GET", f"{gw.url}/v1/files/{file_id}/content", headers={**V, "x-api-key": keys["team"]}, timeout=30
    ) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    assert AWS.encode("utf-16-le") not in got and len(got) < len(data)


@pytest.mark.parametrize("mime", ["text/event-stream", "text/event-stream; charset=utf-8"])
def test_a_download_served_as_an_event_stream_is_still_a_file_to_the_filters(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic, mime: str
) -> None:
    """Upstream serves a file with the type it was stored with; as an event stream it went through the
    SSE filter, which reads events only: text outside them (the whole file) passed unseen."""
    for data in (f"creds {AWS}\n".encode(), f"data: creds {AWS}\n\n".encode()):
        r = download(gw, keys["team"], model_made(gw, fake, keys["team"], data, mime=mime))
        assert r.status_code == 200, r.text
        assert AWS.encode() not in r.content and b"[REDACTED:secrets]" in r.content, r.content


def test_the_name_the_model_gave_a_file_goes_through_the_response_rules(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    """The model names its output files; the name reached the client unfiltered in a get, in the
    gateway's list and in the download's Content-Disposition header."""
    key = keys["team"]
    redacted = model_made(gw, fake, key, b"hello")
    fake.state.files[redacted].filename = f"creds-{AWS}.txt"
    withheld = model_made(gw, fake, key, b"hello")
    fake.state.files[withheld].filename = "project falcon plan.txt"
    r = download(gw, key, redacted)
    assert r.status_code == 200 and r.content == b"hello"
    assert AWS not in str(r.headers) and "content-disposition" not in r.headers
    r = httpx.get(f"{gw.url}/v1/files/{redacted}", headers={**V, "x-api-key": key})
    assert r.status_code == 200 and r.json()["filename"] == "creds-[REDACTED:secrets].txt", r.text
    r = httpx.get(f"{gw.url}/v1/files/{withheld}", headers={**V, "x-api-key": key})
    assert r.status_code in (400, 403) and "codename" in r.json()["error"]["message"] and "falcon" not in r.text
    r = httpx.get(f"{gw.url}/v1/files", headers={**V, "x-api-key": key}, params={"limit": 1000})
    names = {item["id"]: item["filename"] for item in r.json()["data"]}
    assert names[redacted] == "creds-[REDACTED:secrets].txt"
    assert AWS not in r.text and "falcon" not in r.text.lower()
    # A name no rule matches is left as it is, header and all.
    plain = model_made(gw, fake, key, b"hello")
    fake.state.files[plain].filename = "report.txt"
    assert 'filename="report.txt"' in download(gw, key, plain).headers["content-disposition"]


def test_a_log_rule_seen_through_the_nuls_is_counted_not_blocking() -> None:
    from claudegate_gateway.filters import FilterPolicy
    from claudegate_gateway.filters.download import DownloadFilter
    from claudegate_gateway.filters.response import ResponseFilter

    policy = FilterPolicy.from_config(
        [{"name": "watch", "pattern": "falcon", "direction": "response", "action": "log"},
         {"name": "codename", "pattern": "eagle", "direction": "response", "action": "redact"}], "test")  # fmt: skip
    rf = ResponseFilter.from_policy(policy)
    assert rf is not None
    logged = DownloadFilter(rf)
    data = "the falcon report".encode("utf-16-le")
    assert logged.feed(data) + logged.close() == data and not logged.blocked
    assert [(v.rule, v.action) for v in logged.verdicts()] == [("watch", "log")]
    redacted = DownloadFilter(rf)
    redacted.feed("the eagle report".encode("utf-16-le"))
    redacted.close()
    assert redacted.blocked and [(v.rule, v.action) for v in redacted.verdicts()] == [("codename", "block")]


def test_a_log_rule_inside_a_compressed_download_does_not_block_it(
    gateway_factory: GatewayFactory, fake: FakeAnthropic
) -> None:
    gw2 = gateway_factory({"filters": [{"name": "watch", "pattern": "falcon", "direction": "response",
                                        "action": "log"}]}, name="logging")  # fmt: skip
    key = gw2.create_key("team")
    data = gzip.compress(b"the falcon report\n" * 20)
    r = download(gw2, key, model_made(gw2, fake, key, data))
    assert r.status_code == 200 and r.content == data, r.text
    assert ("watch", "log") in {(v["rule"], v["action"]) for v in gw2.record(r.headers)["filters"]}
