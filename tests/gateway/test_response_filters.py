"""Response rules end to end: the running gateway, the scripted fake upstream, the official SDK.

The fake streams exactly the deltas a test scripts (one character per event,
splits inside escapes of partial_json); the SDK must parse what the gateway
makes of them, and no secret may reach the client in any byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

MODEL = "claude-sonnet-4-6"
HDRS = {"anthropic-version": "2023-06-01"}
KEY = "sk-ant-api03-" + "Qm7Xr2Lp9Vt4Hs8Kd3Nw6Jb1Fz5Yc0Ga" * 2 + "-AbCd"
CARD = "4111 1111 1111 1111"
MAIL = "jane.doe@example.org"
RULES = {
    "filters": [
        {"name": "secrets", "detectors": ["all"], "direction": "both", "action": "redact"},
        {"name": "pii", "detectors": ["email"], "direction": "response", "action": "redact"},
        {"name": "codename", "pattern": r"project\s{1,3}falcon", "direction": "response", "action": "block"},
    ],
    "client_filters": {"trusted": {"pii": "off"}},
}
TOOL = {"name": "run", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    proc = make_gateway(tmp_path_factory.mktemp("rgw"), fake_anthropic.url, fake_anthropic.api_key, RULES)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keys(gw: GatewayProc) -> dict[str, str]:
    return {"team": gw.create_key("team"), "trusted": gw.create_key("trusted")}


def sdk(gw: GatewayProc, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gw.url, max_retries=0, timeout=20)


def script(fake: FakeAnthropic, *blocks: dict[str, Any]) -> None:
    fake.state.configure(script=list(blocks))


def chars(text: str) -> list[str]:
    return list(text)  # one character per delta: the hardest split


def raw_stream(gw: GatewayProc, key: str, body: dict[str, Any]) -> bytes:
    with httpx.stream("POST", gw.url + "/v1/messages", json={**body, "stream": True},
                      headers={**HDRS, "x-api-key": key}, timeout=20) as r:
        assert r.status_code == 200
        return r.read()


BODY = {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": "go"}]}


def test_sdk_parses_a_redacted_text_and_thinking_stream(gw: GatewayProc, keys: dict[str, str],
                                                         fake: FakeAnthropic) -> None:
    text = f"Key {KEY}, card {CARD}, mail {MAIL}. Thanks — 中文 😀 done."
    script(fake, {"type": "thinking", "deltas": chars(f"think {KEY} ok")}, {"type": "text", "deltas": chars(text)})
    with sdk(gw, keys["team"]).messages.stream(**BODY) as stream:
        for _ in stream:
            pass
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[1].type == "text"
    assert final.content[0].thinking == "think [REDACTED:secrets] ok"
    assert final.content[1].text == ("Key [REDACTED:secrets], card [REDACTED:secrets], mail [REDACTED:pii]."
                                     " Thanks — 中文 😀 done.")
    assert final.usage.output_tokens > 1  # message_delta passed untouched
    rec = gw.audit()[-1]
    verdicts = {(v["rule"], v["direction"], v["action"]): v["matches"] for v in rec["filters"]}
    assert verdicts == {("secrets", "response", "redact"): 3, ("pii", "response", "redact"): 1}
    assert KEY not in json.dumps(rec) and MAIL not in json.dumps(rec)


def test_no_secret_in_any_byte_of_the_stream(gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic) -> None:
    script(fake, {"type": "text", "deltas": chars(f"a {KEY} b {CARD} c")})
    raw = raw_stream(gw, keys["team"], BODY)
    assert KEY.encode() not in raw and b"Qm7Xr2Lp9Vt4" not in raw
    assert CARD.encode() not in raw and b"4111" not in raw


def test_sdk_parses_a_redacted_tool_use_input(gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic) -> None:
    source = json.dumps({"cmd": f"export ANTHROPIC_API_KEY={KEY}", "n": 4111111111111111, "note": "é😀"},
                        ensure_ascii=True)
    script(fake, {"type": "tool_use", "name": "run", "deltas": chars(source)})
    body = {**BODY, "tools": [TOOL]}
    with sdk(gw, keys["team"]).messages.stream(**body) as stream:
        for _ in stream:
            pass
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use"
    assert block.input == {"cmd": "export ANTHROPIC_API_KEY=[REDACTED:secrets]", "n": "[REDACTED:secrets]",
                           "note": "é😀"}
    # Not streamed: the same redaction, and a message the SDK's types accept.
    msg = sdk(gw, keys["team"]).messages.create(**body)
    assert msg.content[0].type == "tool_use" and msg.content[0].input == block.input


def test_non_streamed_message_is_redacted(gw: GatewayProc, keys: dict[str, str], fake: FakeAnthropic) -> None:
    script(fake, {"type": "text", "deltas": [f"mail {MAIL} key {KEY}"]})
    msg = sdk(gw, keys["team"]).messages.create(**BODY)
    assert msg.content[0].text == "mail [REDACTED:pii] key [REDACTED:secrets]"


def test_trusted_client_is_exempt_from_the_pii_rule_only(gw: GatewayProc, keys: dict[str, str],
                                                          fake: FakeAnthropic) -> None:
    script(fake, {"type": "text", "deltas": chars(f"mail {MAIL} key {KEY}")})
    msg = sdk(gw, keys["trusted"]).messages.create(**BODY)
    assert msg.content[0].text == f"mail {MAIL} key [REDACTED:secrets]"


def test_block_in_a_stream_is_an_error_the_sdk_raises(gw: GatewayProc, keys: dict[str, str],
                                                      fake: FakeAnthropic) -> None:
    script(fake, {"type": "text", "deltas": chars("the plan for project  falcon is secret " + "x" * 300)})
    before = len(gw.audit(at_least=0, timeout=0))
    with pytest.raises(anthropic.APIStatusError) as info, sdk(gw, keys["team"]).messages.stream(**BODY) as stream:
        for _ in stream:
            pass
    assert "codename" in str(info.value)
    # The record is written when upstream has been read to its end, after the
    # client had its error event: wait for it, not the previous test's.
    rec = gw.audit(at_least=before + 1)[-1]
    assert {"rule": "codename", "direction": "response", "action": "block", "matches": 1} in rec["filters"]
    assert rec["output_tokens"] > 300  # upstream was read to its end: the tokens are paid for


def test_block_of_a_message_is_an_error_and_still_metered(gw: GatewayProc, keys: dict[str, str],
                                                          fake: FakeAnthropic) -> None:
    script(fake, {"type": "text", "deltas": ["all about project falcon"]})
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk(gw, keys["team"]).messages.create(**BODY)
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "falcon" not in json.dumps(info.value.body)
    rec = gw.audit()[-1]
    assert rec["status"] == 400 and rec["output_tokens"] > 0


def test_ping_and_usage_pass_and_deltas_stay_in_order(gw: GatewayProc, keys: dict[str, str],
                                                       fake: FakeAnthropic) -> None:
    text = "plain text with nothing to hide, " * 20
    script(fake, {"type": "text", "deltas": chars(text)})
    raw = raw_stream(gw, keys["team"], BODY).decode()
    events = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    datas = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    got = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert got == text


def test_without_response_rules_the_stream_is_byte_identical(
    tmp_path: Path, fake: FakeAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    proc = make_gateway(tmp_path / "plain", fake_anthropic.url, fake_anthropic.api_key,
                        {"filters": [{"name": "secrets", "detectors": ["all"], "action": "redact"}]})
    proc.start()
    try:
        key = proc.create_key("plain")
        script(fake, {"type": "text", "deltas": chars(f"k {KEY} x")})
        through = raw_stream(proc, key, BODY)
        direct = httpx.post(fake_anthropic.url + "/v1/messages", json={**BODY, "stream": True},
                            headers={**HDRS, "x-api-key": fake_anthropic.api_key}, timeout=20).content
    finally:
        proc.stop()
    # Request-only rules: the response is relayed as is (ids differ per message; compare the events).
    text = "".join(json.loads(line[6:])["delta"]["text"] for line in through.decode().splitlines()
                   if line.startswith("data: ") and '"text_delta"' in line)
    assert KEY in text

    def shape(raw: bytes) -> list[str]:
        return [line for line in raw.decode().splitlines() if '"message_start"' not in line]

    assert shape(through) == shape(direct)
