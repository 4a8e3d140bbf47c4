"""The response filter on streams: every split of the model's output, bytes and deltas.

The client must never receive a secret, and must receive every other
character exactly once, in order -- whatever the split into deltas (one
character per event included), into TCP chunks (inside UTF-8 sequences,
inside CRLF, inside JSON escapes of partial_json).
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from claudegate_gateway.filters import FilterPolicy
from claudegate_gateway.filters.response import ResponseFilter, Tally
from claudegate_gateway.filters.sse import StreamFilter

SECRETS_RULE = {"name": "secrets", "detectors": ["all"], "action": "redact", "direction": "both"}
POLICY = FilterPolicy.from_config([
    SECRETS_RULE,
    {"name": "pii", "detectors": ["email"], "action": "redact", "direction": "response"},
    {"name": "codename", "pattern": r"blue\s{1,3}falcon", "action": "redact", "direction": "response"},
])
RF = ResponseFilter.from_policy(POLICY)
assert RF is not None
MARK = re.compile(r"\[REDACTED:[a-z]+\]")

B62 = string.ascii_letters + string.digits
# Filler the detectors cannot mistake for (part of) a secret: no digits runs, no '@', no 'sk-'.
FILLER = st.text(alphabet=st.sampled_from(list("abcxyz ,.!é中😀\n\"\\/")), max_size=40)


@st.composite
def secrets(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["anthropic", "github", "aws", "card", "email"]))
    if kind == "anthropic":
        body = draw(st.text(alphabet=B62, min_size=40, max_size=95).filter(lambda s: len(set(s)) >= 10))
        return "sk-ant-api03-" + body
    if kind == "github":
        body = draw(st.text(alphabet=B62, min_size=36, max_size=40).filter(lambda s: len(set(s)) >= 10))
        return "ghp_" + body
    if kind == "aws":
        body = draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=16, max_size=16)
                    .filter(lambda s: len(set(s)) >= 8))
        return "AKIA" + body
    if kind == "card":
        return draw(st.sampled_from(["4111111111111111", "5500 0000 0000 0004", "378282246310005"]))
    return draw(st.from_regex(r"[a-z]{3,10}\.[a-z]{2,8}@[a-z]{3,9}\.(com|org|io)", fullmatch=True))


def _splits(draw: st.DrawFn, text: str, one_per_char: bool) -> list[str]:
    if one_per_char:
        return list(text)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    out, last = [], 0
    for c in cuts:
        out.append(text[last:c])
        last = c
    out.append(text[last:])
    return out


def _feed(mode: str, pieces: list[str]) -> tuple[str, Tally]:
    tally = Tally()
    ch = RF.channel(mode, tally)
    return "".join(ch.feed(p) for p in pieces) + ch.flush(), tally


def _expected(parts: list[tuple[str, bool]]) -> str:
    return "".join("\0" if secret else text for text, secret in parts)


def _same_but_marks(got: str, parts: list[tuple[str, bool]]) -> None:
    # Every marker stands for exactly one secret; every other character comes through once, in order.
    assert MARK.sub("\0", got) == _expected(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_text_deltas_never_leak_a_secret(data: st.DataObject) -> None:
    parts: list[tuple[str, bool]] = []
    for _ in range(data.draw(st.integers(1, 3))):
        parts.append((data.draw(FILLER), False))
        parts.append((data.draw(secrets()), True))
    parts.append((data.draw(FILLER), False))
    # Keep filler from gluing onto a secret (a letter after a key is part of the key).
    parts = [(t, s) if s else (" " + t + " ", s) for t, s in parts]
    text = "".join(t for t, _ in parts)
    pieces = _splits(data.draw, text, data.draw(st.booleans()))
    got, tally = _feed("text", pieces)
    for secret, is_secret in parts:
        if is_secret:
            assert secret not in got
    _same_but_marks(got, parts)
    assert sum(tally.counts.values()) == sum(1 for _, s in parts if s)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), ascii_only=st.booleans())
def test_tool_input_json_deltas_never_leak_and_stay_valid_json(data: st.DataObject, ascii_only: bool) -> None:
    secret = data.draw(secrets())
    before, after = data.draw(FILLER), data.draw(FILLER)
    doc: dict[str, Any] = {"cmd": f"{before} {secret} {after}", "n": 7, "list": ["x", {"deep": secret}]}
    # ensure_ascii turns é, 中 and 😀 into \\u escapes (surrogate pairs for 😀): splits land inside them.
    source = json.dumps(doc, ensure_ascii=ascii_only)
    pieces = _splits(data.draw, source, data.draw(st.booleans()))
    got, tally = _feed("json", pieces)
    parsed = json.loads(got)  # valid JSON whatever the split
    flat = json.dumps(parsed, ensure_ascii=False)
    assert secret not in flat
    assert parsed["n"] == 7
    assert MARK.sub("\0", parsed["cmd"]) == f"{before} \0 {after}"
    assert MARK.fullmatch(parsed["list"][1]["deep"])
    assert sum(tally.counts.values()) == 2


def test_escaped_secret_in_partial_json_is_found() -> None:
    key = "sk-ant-api03-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9nP2rS5uX8zA1cD4fG7iL0oR3tU6"
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)  # every character as a \\u escape
    source = '{"k": "' + escaped + '"}'
    got, _ = _feed("json", list(source))
    assert json.loads(got) == {"k": "[REDACTED:secrets]"}


def test_card_number_as_json_number_becomes_a_marker_string() -> None:
    got, _ = _feed("json", list('{"card": 4111111111111111, "qty": 3}'))
    assert json.loads(got) == {"card": "[REDACTED:secrets]", "qty": 3}


def test_private_key_block_is_withheld_to_its_end_line() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEAx4Lq9Zz0123456789abcdefghij\n" * 40 + "-----END RSA PRIVATE KEY-----"
    text = "Here it is:\n" + pem + "\nDone."
    for size in (1, 7, 64, 10_000):
        got, tally = _feed("text", [text[i:i + size] for i in range(0, len(text), size)])
        assert got == "Here it is:\n[REDACTED:secrets]\nDone.", size
        assert tally.counts == {"secrets": 1}


def test_window_releases_text_before_the_window_at_once() -> None:
    tally = Tally()
    ch = RF.channel("text", tally)
    released = ch.feed("a" * 1000)
    # A run of address characters may still become an e-mail address: only its last 224 are held.
    assert released == "a" * (1000 - 224)
    assert ch.feed("b") == "a"
    assert ch.flush() == "a" * 223 + "b"


def test_prose_is_held_back_only_where_a_match_could_be_in_progress() -> None:
    ch = RF.channel("text", Tally())
    prose = "Hello there, nothing to see here. " * 20  # (the word "secret" would hold: it may start an AWS label)
    released = ch.feed(prose)
    assert prose.startswith(released) and len(prose) - len(released) <= 2  # only the trailing ". "
    assert ch.feed("The key is sk") == " The key is "  # (the space held before) 'sk' may start a key: held
    assert ch.feed("-ant-api03-") == ""
    body = "Qm7Xr2Lp9Vt4Hs8Kd3Nw6Jb1Fz5Yc0Ga" * 2
    assert ch.feed(body) == ""
    assert ch.feed(" and then more words.") == ""  # held until the key's window is full
    assert ch.flush() == "[REDACTED:secrets] and then more words."


# ---------------------------------------------------------------- SSE framing


def _sse(name: str, data: dict[str, Any], eol: str) -> bytes:
    return f"event: {name}{eol}data: {json.dumps(data, ensure_ascii=False)}{eol}{eol}".encode()


def _stream(deltas: list[str], eol: str, kind: str = "text") -> bytes:
    delta_type, key = {"text": ("text_delta", "text"), "tool_use": ("input_json_delta", "partial_json")}[kind]
    block: dict[str, Any] = {"type": "text", "text": ""} if kind == "text" else {
        "type": "tool_use", "id": "toolu_01", "name": "t", "input": {}}
    events = [
        _sse("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 1}}}, eol),
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}, eol),
        _sse("ping", {"type": "ping"}, eol),
    ]
    for d in deltas:
        events.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": delta_type, key: d}}, eol))
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}, eol))
    events.append(_sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                         "usage": {"output_tokens": 42}}, eol))
    events.append(_sse("message_stop", {"type": "message_stop"}, eol))
    return b"".join(events)


def _parse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in re.split(rb"\r\n\r\n|\n\n|\r\r", raw):
        if not block.strip():
            continue
        lines = re.split(r"\r\n|\r|\n", block.decode("utf-8"))
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = json.loads("\n".join(line[6:] for line in lines if line.startswith("data: ")))
        out.append((name, data))
    return out


@settings(max_examples=120, deadline=None)
@given(data=st.data(), eol=st.sampled_from(["\n", "\r\n", "\r"]))
def test_sse_byte_splits_anywhere(data: st.DataObject, eol: str) -> None:
    secret = data.draw(secrets())
    text = data.draw(FILLER) + " " + secret + " " + data.draw(FILLER)
    deltas = _splits(data.draw, text, data.draw(st.booleans()))
    raw = _stream(deltas, eol)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(raw)), max_size=40))))
    chunks, last = [], 0
    for c in [*cuts, len(raw)]:
        chunks.append(raw[last:c])
        last = c
    sf = StreamFilter(RF, "req_1")
    out = b"".join(sf.feed(c) for c in chunks) + sf.close()
    events = _parse(out)
    names = [n for n, _ in events]
    # Order of the frame is kept; pass-through events are untouched.
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) <= {"content_block_delta"}
    assert events[-2][1]["usage"] == {"output_tokens": 42}
    got = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert secret.encode() not in out
    assert MARK.sub("\0", got) == text.replace(secret, "\0")


def test_unrelated_events_pass_byte_for_byte() -> None:
    raw = _stream(["hello ", "world"], "\r\n")
    sf = StreamFilter(RF, "req_1")
    out = sf.feed(raw) + sf.close()
    head = raw.split(b"event: content_block_delta")[0]
    assert out.startswith(head)  # message_start, content_block_start, ping: the same bytes
    assert out.endswith(raw[raw.index(b"event: content_block_stop"):])


def test_block_ends_the_stream_with_an_error_event() -> None:
    policy = FilterPolicy.from_config([{**SECRETS_RULE, "action": "block"}])
    rf = ResponseFilter.from_policy(policy)
    assert rf is not None
    key = "sk-ant-api03-" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0" * 2
    sf = StreamFilter(rf, "req_9")
    out = b"".join(sf.feed(bytes([b])) for b in _stream(list("see " + key + " ok"), "\n")) + sf.close()
    events = _parse(out)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "invalid_request_error"
    assert "secrets" in events[-1][1]["error"]["message"]
    assert b"Zx9Zx9" not in out
    assert sf.blocked and [(v.rule, v.action, v.matches, v.direction) for v in sf.verdicts()] == [
        ("secrets", "block", 1, "response")]


def test_log_action_counts_and_changes_nothing() -> None:
    policy = FilterPolicy.from_config([{**SECRETS_RULE, "action": "log"}])
    rf = ResponseFilter.from_policy(policy)
    assert rf is not None
    tally = Tally()
    ch = rf.channel("text", tally)
    text = "card 4111111111111111 here"
    assert ch.feed(text) + ch.flush() == text
    assert tally.counts == {"secrets": 1}


def test_no_response_rule_means_no_filter() -> None:
    assert ResponseFilter.from_policy(FilterPolicy.default()) is None
    request_only = FilterPolicy.from_config([{"name": "x", "pattern": "abc", "action": "redact"}])
    assert ResponseFilter.from_policy(request_only) is None


def test_client_override_turns_a_rule_off_or_changes_its_action() -> None:
    exempt = POLICY.for_client({"pii": "off"})
    assert [r.name for r in exempt.response_rules] == ["secrets", "codename"]
    logged = POLICY.for_client({"secrets": "log"})
    assert [r.action for r in logged.rules] == ["log", "redact", "redact"]


@pytest.mark.parametrize("doc_input", [{"a": "x"}, {}, {"nested": [1, 2, {"k": None, "b": True}]}])
def test_tool_input_without_secrets_is_untouched(doc_input: dict[str, Any]) -> None:
    source = json.dumps(doc_input)
    got, tally = _feed("json", list(source))
    assert got == source and not tally.counts


def test_a_delta_without_its_block_start_is_still_scanned() -> None:
    # Fail closed: a text delta for an index that never started (or of another
    # type than its block) gets its own channel instead of passing unscanned.
    raw = _stream(["card 4111 1111 ", "1111 1111 ok"], "\n").replace(
        b'"content_block_start", "index": 0', b'"content_block_start", "index": 7')
    sf = StreamFilter(RF, "req_1")
    out = sf.feed(raw) + sf.close()
    assert b"4111" not in out and b"[REDACTED:secrets]" in out
