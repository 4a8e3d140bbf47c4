"""Response rules read model output normalised, as request rules read requests.

Found before the fix: a model writing a secret in full-width characters, or
with zero-width or control characters between its characters, got it past
the response redaction (the request side normalises: NFKC, invisible and
control characters removed). Now the response window scans the normalised
view and maps every offset back to the original text, so the whole
disguised secret (its invisible characters included) becomes the marker and
everything around it comes through unchanged, split at any character, in
text deltas, tool input JSON (escapes split anywhere), whole messages,
server tool results, across two text blocks, and through the gateway.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from claudegate_gateway.filters import FilterPolicy
from claudegate_gateway.filters.normalise import _normalise
from claudegate_gateway.filters.response import ResponseFilter, Tally
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway_proc import GatewayProc, make_gateway

POLICY = FilterPolicy.from_config([
    {"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"},
    {"name": "pii", "detectors": ["email"], "action": "redact", "direction": "response"},
])  # fmt: skip
_RF = ResponseFilter.from_policy(POLICY)
assert _RF is not None
RF: ResponseFilter = _RF
MARK = re.compile(r"\[REDACTED:[a-z]+\]")
B62 = string.ascii_letters + string.digits
FILLER = st.text(alphabet=st.sampled_from(list("abcxyz ,.!é中😀\n\"\\/")), max_size=30)
# Characters a reader does not see (zero width, joiners, soft hyphen, word joiner, BOM, NUL, ESC, DEL).
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\x00", "\x1b", "\x7f"]
KEY = "sk-ant-api03-" + "Qm7Xr2Lp9Vt4Hs8Kd3Nw6Jb1Fz5Yc0Ga" * 2 + "-AbCd"


def wide(c: str) -> str:
    """The full-width form of a printable ASCII character (NFKC reads it as the character)."""
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


def disguised(secret: str, how: str) -> str:
    if how == "wide":
        return "".join(wide(c) for c in secret)
    if how == "zero-width":
        return "\u200b".join(secret)
    return secret  # plain


@st.composite
def secrets(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["anthropic", "aws", "card", "email"]))
    if kind == "anthropic":
        return "sk-ant-api03-" + draw(st.text(alphabet=B62, min_size=40, max_size=60).filter(lambda s: len(set(s)) >= 10))
    if kind == "aws":
        body = draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=16, max_size=16)
                    .filter(lambda s: len(set(s)) >= 8))  # fmt: skip
        return "AKIA" + body
    if kind == "card":
        return draw(st.sampled_from(["4111111111111111", "5500 0000 0000 0004", "378282246310005"]))
    return draw(st.from_regex(r"[a-z]{3,10}\.[a-z]{2,8}@[a-z]{3,9}\.(com|org|io)", fullmatch=True))


@st.composite
def disguise(draw: st.DrawFn, secret: str) -> str:
    """Each character as is or full width, any invisible characters between two of them."""
    out = []
    for i, c in enumerate(secret):
        if i:
            out.append("".join(draw(st.lists(st.sampled_from(INVISIBLE), max_size=2))))
        out.append(wide(c) if draw(st.booleans()) else c)
    return "".join(out)


def pieces(draw: st.DrawFn, text: str) -> list[str]:
    if draw(st.booleans()):
        return list(text)  # one character per delta
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def feed(mode: str, parts: list[str]) -> tuple[str, Tally]:
    tally = Tally()
    ch = RF.channel(mode, tally)
    return "".join(ch.feed(p) for p in parts) + ch.flush(), tally


def leaks(secret: str, out: str) -> bool:
    """The secret is readable in ``out`` (as a person, or a regex after normalising, would read it)."""
    return secret in _normalise(out) or secret.replace(" ", "") in _normalise(out).replace(" ", "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_disguised_secret_in_text_deltas_is_redacted_whole(data: st.DataObject) -> None:
    secret = data.draw(secrets())
    hidden = data.draw(disguise(secret))
    before, after = " " + data.draw(FILLER) + " ", " " + data.draw(FILLER) + " "
    got, tally = feed("text", pieces(data.draw, before + hidden + after))
    assert not leaks(secret, got), got
    # The whole disguise (its invisible characters too) is the marker; the rest comes through as it was.
    assert MARK.sub("\0", got) == before + "\0" + after
    assert sum(tally.counts.values()) == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), ascii_only=st.booleans())
def test_a_disguised_secret_in_a_tool_input_is_redacted_and_the_json_stays_valid(
    data: st.DataObject, ascii_only: bool
) -> None:
    secret = data.draw(secrets())
    hidden = data.draw(disguise(secret))
    doc: dict[str, Any] = {"cmd": f"run {hidden} now", "n": 7, "deep": [{"v": hidden}]}
    # ensure_ascii: every full-width and invisible character a \\u escape, split anywhere.
    source = json.dumps(doc, ensure_ascii=ascii_only)
    got, tally = feed("json", pieces(data.draw, source))
    parsed = json.loads(got)
    assert not leaks(secret, json.dumps(parsed, ensure_ascii=False))
    assert MARK.sub("\0", parsed["cmd"]) == "run \0 now" and MARK.fullmatch(parsed["deep"][0]["v"])
    assert parsed["n"] == 7
    assert sum(tally.counts.values()) == 2


@pytest.mark.parametrize("how", ["wide", "zero-width"])
def test_a_whole_message_is_read_normalised_in_every_block(how: str) -> None:
    hidden = disguised(KEY, how)
    doc = {"type": "message", "content": [
        {"type": "text", "text": f"the key is {hidden}.", "citations": [{"type": "char_location", "cited_text": hidden}]},
        {"type": "thinking", "thinking": f"I should not say {hidden}", "signature": "c2ln"},
        {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {"cmd": f"export K={hidden}"}},
        {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1", "content": {
            "type": "code_execution_result", "stdout": f"K={hidden}\n", "stderr": "", "return_code": 0, "content": []}},
    ]}  # fmt: skip
    result = RF.message(doc)
    out = json.dumps(result.doc, ensure_ascii=False)
    assert not leaks(KEY, out) and result.tally.counts == {"secrets": 5}
    assert result.doc["content"][0]["text"] == "the key is [REDACTED:secrets]."
    assert result.doc["content"][3]["content"]["stdout"] == "K=[REDACTED:secrets]\n"


def test_a_disguised_secret_across_two_text_blocks_blocks() -> None:
    hidden = disguised(KEY, "zero-width")
    cut = len(hidden) // 2
    doc = {"type": "message", "content": [{"type": "text", "text": "key: " + hidden[:cut]},
                                          {"type": "text", "text": hidden[cut:] + " ok"}]}  # fmt: skip
    result = RF.message(doc)
    assert result.tally.blocked is not None and result.tally.blocked.name == "secrets"


def test_text_that_only_looks_odd_is_left_as_it_is() -> None:
    """Normalised for reading only: what is released is the model's own text, byte for byte."""
    text = "Ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ １２３, zero\u200bwidth, ﬁ ligature, café, 中文, A\u0301, \x1b[0m done"
    got, tally = feed("text", list(text))
    assert got == text and tally.counts == {}


def test_a_huge_block_of_special_characters_is_read_in_bounded_looks() -> None:
    """A whole block of 300,000 full-width characters (each needing work) around a secret: still found."""
    hidden = disguised(KEY, "wide")
    text = "Ａ" * 150_000 + " " + hidden + " " + "Ｂ" * 150_000
    result = RF.message({"type": "message", "content": [{"type": "text", "text": text}]})
    assert result.tally.counts == {"secrets": 1}
    assert result.doc["content"][0]["text"] == "Ａ" * 150_000 + " [REDACTED:secrets] " + "Ｂ" * 150_000


# -- through the gateway, streamed and not ---------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_anthropic: FakeAnthropic) -> Iterator[GatewayProc]:
    rules = {"filters": [{"name": "secrets", "detectors": ["all"], "direction": "both", "action": "redact"}]}
    proc = make_gateway(tmp_path_factory.mktemp("norm"), fake_anthropic.url, fake_anthropic.api_key, rules)
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.parametrize("how", ["wide", "zero-width"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_gateway_redacts_a_disguised_secret_in_model_output(
    gw: GatewayProc, fake: FakeAnthropic, how: str, stream: bool
) -> None:
    key = gw.create_key(f"norm-{how}-{stream}")
    hidden = disguised(KEY, how)
    fake.state.configure(script=[
        {"type": "text", "deltas": ["Your key: ", *hidden, " (keep it safe)"]},  # one character per event
        {"type": "tool_use", "name": "run", "deltas": [c for c in json.dumps({"cmd": f"K={hidden}"})]},
    ])
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    headers = {"anthropic-version": "2023-06-01", "x-api-key": key}
    r = httpx.post(gw.url + "/v1/messages", headers=headers, json=body, timeout=30)
    fake.state.configure(script=None)
    assert r.status_code == 200, r.text
    assert not leaks(KEY, r.content.decode())
    if stream:
        events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
        text = "".join(e["delta"].get("text", "") for e in events if e.get("type") == "content_block_delta")
        tool = "".join(e["delta"].get("partial_json", "") for e in events if e.get("type") == "content_block_delta")
    else:
        content = r.json()["content"]
        text, tool = content[0]["text"], json.dumps(content[1]["input"])
    assert text == "Your key: [REDACTED:secrets] (keep it safe)"
    assert json.loads(tool) == {"cmd": "K=[REDACTED:secrets]"}


def test_a_streamed_secret_split_across_blocks_behind_invisible_padding_blocks() -> None:
    """The start of a text block is held until the rules can read a window's worth of it: counted in
    what they read, so invisible characters cannot fill the hold and push the key's rest past it."""
    from claudegate_gateway.filters.sse import StreamFilter

    split = KEY.index("api03-") + 6
    padded = ("\u200b" * 40).join(KEY[split:])
    events = [("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}})]
    for index, text in enumerate(["the key: " + KEY[:split], padded + " ok"]):
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}}))  # fmt: skip
        events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "text_delta", "text": c}}) for c in text]  # fmt: skip
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    raw = b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)
    sf = StreamFilter(RF, "req_1")
    out = sf.feed(raw) + sf.close()
    assert sf.blocked and b"event: error" in out
    assert not leaks(KEY, out.decode())
