"""File downloads (GET /v1/files/{id}/content) pass through the response rules.

The files the API lets a client download are made upstream by the model
(code execution's outputs), so their bytes never met the request filters.
Each test plays that file: it is uploaded harmless through the gateway (so
the caller owns it) and then rewritten in the fake upstream's store, as code
execution would have written it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

V = {"anthropic-version": "2023-06-01"}
KEY = "sk-ant-api03-" + "Qm7Xr2Lp9Vt4Hs8Kd3Nw6Jb1Fz5Yc0Ga" * 2 + "-AbCd"
AWS = "AKIAIOSFODNN7EXAMPLE"
MAIL = "jane.doe@example.org"
RULES = {
    "filters": [
        {"name": "secrets", "detectors": ["all"], "direction": "response", "action": "redact"},
        {"name": "pii", "detectors": ["email"], "direction": "response", "action": "redact"},
        {"name": "codename", "pattern": r"project\s{1,3}falcon", "direction": "response", "action": "block"},
        {"name": "clef", "pattern": "clé secrète", "direction": "response", "action": "redact"},
    ],
    "client_filters": {"trusted": {"pii": "off"}},
}
HOLD = 1 << 20  # filters/download.py HOLD_BYTES


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("downloads"), fake_anthropic.url, fake_anthropic.api_key,
                        RULES)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(gw: GatewayProc) -> dict[str, str]:
    return {"team": gw.create_key("team"), "trusted": gw.create_key("trusted")}


def model_made(gw: GatewayProc, fake: FakeAnthropic, key: str, data: bytes, mime: str = "text/plain") -> str:
    """A file the caller owns whose upstream bytes are `data` (as code execution would write them)."""
    r = httpx.post(gw.url + "/v1/files", headers={**V, "x-api-key": key},
                   files={"file": ("out.txt", b"placeholder", mime)})  # fmt: skip
    assert r.status_code == 200, r.text
    file_id = str(r.json()["id"])
    fake.state.files[file_id].data = data
    return file_id


def download(gw: GatewayProc, key: str, file_id: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/v1/files/{file_id}/content", headers={**V, "x-api-key": key}, timeout=30)


def test_a_secret_in_a_downloaded_file_is_redacted_and_the_rest_is_byte_for_byte(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    before, after = "résumé,€,\x00\xff".encode("latin-1", "replace") + "naïve".encode(), b"\r\nend\x80\x81"
    file_id = model_made(gw, fake, keys["team"], before + KEY.encode() + b" and " + MAIL.encode() + after)
    r = download(gw, keys["team"], file_id)
    assert r.status_code == 200, r.text
    assert r.content == before + b"[REDACTED:secrets] and [REDACTED:pii]" + after
    record = gw.record(r.headers)  # by request id: the upload's record may land after this one
    assert record["operation"] == "files.content"
    assert {(v["rule"], v["direction"], v["action"]) for v in record["filters"]} == {
        ("secrets", "response", "redact"), ("pii", "response", "redact")}
    # The client's own overrides apply: pii is off for "trusted", secrets are not.
    theirs = model_made(gw, fake, keys["trusted"], KEY.encode() + b" " + MAIL.encode())
    assert download(gw, keys["trusted"], theirs).content == b"[REDACTED:secrets] " + MAIL.encode()


@pytest.mark.parametrize("at", [0, 64 * 1024 - 3, HOLD - 4])
def test_a_utf8_download_is_read_as_its_characters(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic, at: int
) -> None:
    """A rule with non-ASCII characters matches a UTF-8 file (read a byte a character it would
    not), also with the phrase's two-byte characters cut by a chunk boundary."""
    head = b"a" * at
    data = head + "la clé secrète, ".encode() + b"\xff\xfe tail \xc3"  # invalid bytes pass untouched
    file_id = model_made(gw, fake, keys["team"], data)
    r = download(gw, keys["team"], file_id)
    assert r.status_code == 200
    assert r.content == head + b"la [REDACTED:clef], \xff\xfe tail \xc3"


def test_a_blocked_small_download_is_the_gateways_error_not_a_200(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    file_id = model_made(gw, fake, keys["team"], b"notes: Project  Falcon ships in May")
    r = download(gw, keys["team"], file_id)
    assert r.status_code in (400, 403), r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == "error" and "codename" in body["error"]["message"]
    assert b"alcon" not in r.content


@pytest.mark.parametrize("offset", [HOLD - 7, HOLD + 64 * 1024 - 9, 3 * HOLD // 2])
def test_a_large_download_is_filtered_as_it_streams_across_chunks(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic, offset: int
) -> None:
    """Past the held first megabyte the file streams; a secret cut by a chunk boundary is still whole to the window."""
    data = bytearray(b"x " * (offset // 2)) + AWS.encode() + b" " + bytearray(b"y" * HOLD)
    file_id = model_made(gw, fake, keys["team"], bytes(data))
    r = download(gw, keys["team"], file_id)
    assert r.status_code == 200
    assert AWS.encode() not in r.content and b"[REDACTED:secrets]" in r.content
    assert len(r.content) == len(data) - len(AWS) + len("[REDACTED:secrets]")


def test_a_block_past_the_held_part_cuts_the_download(
    gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic
) -> None:
    data = b"z" * (2 * HOLD) + b" project falcon " + b"z" * 1000
    file_id = model_made(gw, fake, keys["team"], data)
    got = b""
    with pytest.raises(httpx.HTTPError), httpx.stream(
        "GET", f"{gw.url}/v1/files/{file_id}/content", headers={**V, "x-api-key": keys["team"]}, timeout=30
    ) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    assert b"falcon" not in got and len(got) < len(data)
    assert gw.record(r.headers)["error_type"] == "response_blocked"
