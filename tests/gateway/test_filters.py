"""Request content filters: detectors, actions, locations, bypasses, config errors.

Secret-looking values are generated at run time (seeded), so the test source
holds no key-shaped strings for secret scanners to trip on.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string
from collections.abc import Callable
from typing import Any

import pytest

from claudegate_gateway.config import ConfigError
from claudegate_gateway.filters import DETECTORS, FilterPolicy, FilterResult, Verdict

RNG = random.Random(20240611)
B62 = string.ascii_letters + string.digits
B64URL = B62 + "-_"


def rand(n: int, alphabet: str = B62) -> str:
    while True:
        s = "".join(RNG.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s):
            return s


def luhn_complete(prefix: str, length: int) -> str:
    """Digits starting with `prefix`, padded with random digits, Luhn check digit last."""
    body = prefix + "".join(RNG.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


ANTHROPIC = "sk-ant-api03-" + rand(93, B64URL) + "AA"
ANTHROPIC_ADMIN = "sk-ant-admin01-" + rand(93, B64URL) + "AA"
OPENAI_LEGACY = "sk-" + rand(48)
OPENAI_PROJECT = "sk-proj-" + rand(156, B64URL)
OPENAI_SVCACCT = "sk-svcacct-" + rand(120, B64URL)
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documentation example
AWS_STS_ID = "ASIA" + "".join(RNG.choice(string.ascii_uppercase + "234567") for _ in range(16))
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"  # AWS's documentation example
GITHUB = {p: f"{p}_{rand(36)}" for p in ("ghp", "gho", "ghu", "ghs", "ghr")}
GITHUB_PAT = "github_pat_" + rand(22) + "_" + rand(59)
PEM_BODY = "\n".join(rand(64, B62 + "+/") for _ in range(6))


def pem(kind: str = "RSA PRIVATE KEY", end: bool = True) -> str:
    tail = f"\n-----END {kind}-----" if end else ""
    return f"-----BEGIN {kind}-----\n{PEM_BODY}{tail}"


VISA = "4111111111111111"
CARDS = {
    "visa": VISA,
    "visa spaced": "4111 1111 1111 1111",
    "visa dashed": "4111-1111-1111-1111",
    "visa 13": "4222222222222",
    "mastercard": "5555555555554444",
    "mastercard 2-series": "2223003122003222",
    "amex": "378282246310005",
    "amex grouped": "3782 822463 10005",
    "discover": "6011111111111117",
    "jcb": "3530111333300000",
    "diners 14": "30569309025904",
    "visa random": luhn_complete("4", 16),
}

# detector name -> examples it must catch, each embedded in ordinary text
POSITIVES: dict[str, list[str]] = {
    "anthropic_key": [ANTHROPIC, ANTHROPIC_ADMIN],
    "openai_key": [OPENAI_LEGACY, OPENAI_PROJECT, OPENAI_SVCACCT],
    "aws_access_key": [AWS_ID, AWS_STS_ID],
    "aws_secret_key": [
        f"aws_secret_access_key = {AWS_SECRET}",
        f"export AWS_SECRET_ACCESS_KEY='{AWS_SECRET}'",
        f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
        f"aws_secret_key: {AWS_SECRET}",
    ],
    "github_token": [*GITHUB.values(), GITHUB_PAT],
    "private_key": [
        pem(), pem("OPENSSH PRIVATE KEY"), pem("EC PRIVATE KEY"), pem("PRIVATE KEY"),
        pem("ENCRYPTED PRIVATE KEY"), pem("PGP PRIVATE KEY BLOCK"), pem(end=False),
    ],
    "card_number": list(CARDS.values()),
}

NEAR_MISSES = [
    "sk-ant-api03-tooShort123",
    "sk-ant-api03-" + "x" * 90,  # placeholder, not a key
    "use a task-management-system-for-enterprise-teams-2024 please",  # 'sk-' inside a word
    "risk-assessment-framework-version-two-thousand",
    "sk-" + "abcdefghijklmnopqrstuvwxyzabcdef",  # no digits, no capitals
    "AKIA" + "IOSFODNN7EXAMPL",  # 15 characters after the prefix
    "AKIA" + "IOSFODNN7EXAMPLE" + "X",  # too long
    "XAKIA" + "IOSFODNN7EXAMPLE",  # inside a longer token
    "AKIA" + "A" * 16,
    AWS_SECRET,  # a 40-character string with no label
    "ghp_" + rand(20),  # too short
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
    "the private key of the story is patience",
    "4111111111111112",  # Luhn-invalid
    "4111 1111 1111 1112",
    "0000 0000 0000 0000",  # Luhn-valid but not a card
    luhn_complete("9", 16),  # Luhn-valid, no such card brand
    luhn_complete("1", 16),
    "ISBN 978-3-16-148410-0",
    "timestamp 1714060800000 ms",
    "call +1 555-123-4567 or 555 123 4567",
    "years 2019 2020 2021 2022 2023",
    "id 12345678901234567890123456",  # a long number, not a card
    "pi is 3.14159265358979323846",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
]


# --------------------------------------------------------------------------
# helpers


def user(content: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": content}]}


def blocks(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": t} for t in texts]


REDACT = FilterPolicy.from_config([{"name": "secrets", "detectors": ["all"], "action": "redact"}])
DEFAULT = FilterPolicy.default()


def deny(pattern: str, action: str = "block", **extra: Any) -> FilterPolicy:
    return FilterPolicy.from_config([{"name": "deny", "pattern": pattern, "action": action, **extra}])


def apply(policy: FilterPolicy, body: dict[str, Any]) -> FilterResult:
    """apply() plus the invariants every call must keep."""
    before = copy.deepcopy(body)
    result = policy.apply(body)
    assert body == before, "apply() mutated its input"
    json.dumps(result.body)  # still JSON
    assert result.changed == (result.body is not body)
    if result.blocked is not None:
        assert result.status in (400, 403)
        assert result.blocked in result.verdicts
        assert not result.changed
    return result


def leaks(result: FilterResult, secret: str) -> list[str]:
    """Places where (a chunk of) the secret survives in what the gateway keeps or logs."""
    chunks = {secret[i:i + 12] for i in range(0, max(len(secret) - 12, 0) + 1, 6)} or {secret}
    places = {
        "verdicts": repr(result.verdicts),
        "blocked": repr(result.blocked),
        "repr": repr(result),
        "message": result.message,
    }
    return [name for name, text in places.items() if any(c in text for c in chunks)]


def redacted_text(result: FilterResult) -> str:
    return json.dumps(result.body, ensure_ascii=False)


# --------------------------------------------------------------------------
# detectors


@pytest.mark.parametrize(
    ("detector", "sample"),
    [(d, s) for d, samples in POSITIVES.items() for s in samples],
    ids=[f"{d}-{i}" for d, samples in POSITIVES.items() for i in range(len(samples))],
)
def test_detector_catches(detector: str, sample: str) -> None:
    body = user(f"Here is my config:\n{sample}\nwhat is wrong with it?")
    result = apply(DEFAULT, body)
    assert result.blocked is not None
    assert result.blocked.rule == "secrets"
    assert result.blocked.detectors == (detector,)
    assert result.status == 400
    assert result.error_type == "invalid_request_error"
    assert leaks(result, AWS_SECRET if detector == "aws_secret_key" else sample) == []


@pytest.mark.parametrize(
    ("detector", "sample"),
    [(d, s) for d, samples in POSITIVES.items() for s in samples],
    ids=[f"{d}-{i}" for d, samples in POSITIVES.items() for i in range(len(samples))],
)
def test_detector_redacts(detector: str, sample: str) -> None:
    result = apply(REDACT, user(f"Here is my config:\n{sample}\nwhat is wrong with it?"))
    assert result.changed and result.blocked is None
    assert result.verdicts == [Verdict("secrets", "redact", 1)]
    assert result.verdicts[0].detectors == (detector,)
    text = result.body["messages"][0]["content"]
    assert text.startswith("Here is my config:\n") and text.endswith("\nwhat is wrong with it?")
    assert "[REDACTED:secrets]" in text
    secret = AWS_SECRET if detector == "aws_secret_key" else sample
    assert secret.replace(" ", "").replace("-", "")[:24] not in text.replace(" ", "").replace("-", "")
    assert leaks(result, secret) == []


def test_aws_secret_redaction_keeps_the_label() -> None:
    result = apply(REDACT, user(f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} # prod"))
    assert result.body["messages"][0]["content"] == "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets] # prod"


def test_anthropic_key_is_not_also_an_openai_key() -> None:
    result = apply(DEFAULT, user(ANTHROPIC))
    assert result.blocked is not None and result.blocked.detectors == ("anthropic_key",)


def test_truncated_pem_redacts_the_body() -> None:
    result = apply(REDACT, user("key:\n" + pem(end=False)))
    assert PEM_BODY.splitlines()[-1] not in redacted_text(result)


@pytest.mark.parametrize("sample", NEAR_MISSES)
def test_near_misses_pass(sample: str) -> None:
    body = user(f"note: {sample} end")
    result = apply(DEFAULT, body)
    assert result.verdicts == [] and result.blocked is None
    assert result.body is body and not result.changed


def test_card_followed_by_cvv_and_in_a_list() -> None:
    result = apply(REDACT, user("card 4111 1111 1111 1111 123, then 5555 5555 5555 4444 12/27"))
    assert result.body["messages"][0]["content"] == "card [REDACTED:secrets] 123, then [REDACTED:secrets] 12/27"
    assert result.verdicts[0].matches == 2


def test_card_as_json_integer_in_tool_input() -> None:
    body = user([{"type": "tool_use", "id": "toolu_1", "name": "pay", "input": {"card": int(VISA), "amount": 1200}}])
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    assert result.body["messages"][0]["content"][0]["input"] == {"card": "[REDACTED:secrets]", "amount": 1200}


def test_detector_names_are_public() -> None:
    assert set(DETECTORS) == set(POSITIVES)


@pytest.mark.parametrize("detector", sorted(POSITIVES))
def test_single_detector_rule_only_fires_for_itself(detector: str) -> None:
    policy = FilterPolicy.from_config([{"name": "one", "detectors": [detector]}])
    for other, samples in POSITIVES.items():
        for sample in samples:
            fired = apply(policy, user(sample)).blocked is not None
            assert fired == (other == detector), (detector, other, sample[:20])


# --------------------------------------------------------------------------
# actions


def test_block_defaults_to_400() -> None:
    result = apply(deny(r"project\s*x"), user("tell me about project x"))
    assert result.blocked == Verdict("deny", "block", 1)
    assert (result.status, result.error_type) == (400, "invalid_request_error")
    assert "deny" in result.message


def test_block_403_is_permission_error() -> None:
    result = apply(deny(r"project\s*x", status=403), user("tell me about project x"))
    assert (result.status, result.error_type) == (403, "permission_error")


def test_redact_replaces_and_copies() -> None:
    body = user(blocks("a project x b", "unrelated"))
    result = apply(deny(r"project\s*x", "redact"), body)
    assert result.changed and result.blocked is None and result.status == 200
    assert result.body["messages"][0]["content"][0]["text"] == "a [REDACTED:deny] b"
    assert result.body["messages"][0]["content"][1] is body["messages"][0]["content"][1]  # shared, untouched
    assert body["messages"][0]["content"][0]["text"] == "a project x b"


def test_first_blocking_rule_wins_and_all_hits_are_audited() -> None:
    policy = FilterPolicy.from_config([
        {"name": "tidy", "pattern": "hello", "action": "redact"},
        {"name": "first", "pattern": "alpha", "status": 403},
        {"name": "second", "pattern": "beta"},
        {"name": "unused", "pattern": "gamma"},
    ])
    result = apply(policy, user("hello alpha beta beta"))
    assert result.blocked == Verdict("first", "block", 1)
    assert result.status == 403
    assert result.verdicts == [Verdict("tidy", "redact", 1), Verdict("first", "block", 1), Verdict("second", "block", 2)]
    assert not result.changed  # a blocked request is not redacted


def test_several_redact_rules_label_their_own_spans() -> None:
    policy = FilterPolicy.from_config([
        {"name": "secrets", "detectors": ["all"], "action": "redact"},
        {"name": "codename", "pattern": r"blue\s+falcon", "action": "redact"},
    ])
    result = apply(policy, user(f"Blue Falcon uses {ANTHROPIC}."))
    assert result.body["messages"][0]["content"] == "[REDACTED:codename] uses [REDACTED:secrets]."


def test_empty_config_means_no_rules_and_default_means_secrets() -> None:
    empty = FilterPolicy.from_config([])
    body = user(ANTHROPIC)
    result = apply(empty, body)
    assert (result.blocked, result.verdicts, result.body) == (None, [], body)
    assert len(empty) == 0
    assert DEFAULT.rule_names == ("secrets",)
    assert apply(DEFAULT, body).blocked is not None


def test_detectors_all_as_a_plain_string() -> None:
    policy = FilterPolicy.from_config([{"name": "s", "detectors": "all"}])
    assert apply(policy, user(GITHUB["ghp"])).blocked is not None


def test_bodies_without_text_short_circuit() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    bodies: list[dict[str, Any]] = [{}, {"messages": []}, user([]), user([image]), {"model": "x", "max_tokens": 5}]
    for body in bodies:
        result = apply(DEFAULT, body)
        assert result.body is body and result.verdicts == []


# --------------------------------------------------------------------------
# locations


def tool_use(value: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_01", "name": "run", "input": value}


def tool_result(content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": "toolu_01", "content": content}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


LOCATIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "system string": lambda s: {**user("hi"), "system": f"ctx {s} ctx"},
    "system blocks": lambda s: {**user("hi"), "system": blocks("intro", f"ctx {s}")},
    "content string": lambda s: user(f"x {s} y"),
    "text block": lambda s: user(blocks("first", f"x {s} y")),
    "assistant turn": lambda s: {"messages": [{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": blocks(f"a {s}")}]},
    "tool_use input": lambda s: user([tool_use({"cmd": f"deploy --key {s}"})]),
    "tool_use nested": lambda s: user([tool_use({"a": [{"b": {"c": [1, None, {"d": [f"x {s}"]}]}}]})]),
    "tool_use key": lambda s: user([tool_use({"env": {s: "value"}})]),
    "tool_result string": lambda s: user([tool_result(f"output: {s}")]),
    "tool_result blocks": lambda s: user([tool_result(blocks("ok", f"output: {s}"))]),
    "tool_result nested": lambda s: user([tool_result([{"type": "document", "source": {
        "type": "content", "content": blocks(f"x {s}")}}])]),
    "document text": lambda s: user([{"type": "document", "source": {
        "type": "text", "media_type": "text/plain", "data": f"doc {s} doc"}}]),
    "document base64 text/plain": lambda s: user([{"type": "document", "source": {
        "type": "base64", "media_type": "text/plain", "data": b64(f"doc {s} doc")}}]),
    "document title": lambda s: user([{"type": "document", "title": f"t {s}", "source": {
        "type": "url", "url": "https://example.com/a.pdf"}}]),
    "image url": lambda s: user([{"type": "image", "source": {"type": "url", "url": f"https://x.test/?t={s}"}}]),
    "unknown block type": lambda s: user([{"type": "search_result", "source": "kb", "title": "t",
                                           "content": blocks(f"x {s}")}]),
    "tool description": lambda s: {**user("hi"), "tools": [{"name": "t", "description": f"uses {s}",
                                                            "input_schema": {"type": "object"}}]},
    "tool schema description": lambda s: {**user("hi"), "tools": [{"name": "t", "input_schema": {
        "type": "object", "properties": {"k": {"type": "string", "description": f"like {s}"}}}}]},
}


@pytest.mark.parametrize("where", LOCATIONS)
@pytest.mark.parametrize("secret", [ANTHROPIC, GITHUB["ghp"], VISA], ids=["anthropic", "github", "card"])
def test_every_location_is_scanned(where: str, secret: str) -> None:
    body = LOCATIONS[where](secret)
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    assert result.changed
    text = redacted_text(result)
    assert secret not in text
    if where != "document base64 text/plain":
        assert "[REDACTED:secrets]" in text
    else:
        data = result.body["messages"][0]["content"][0]["source"]["data"]
        assert base64.b64decode(data).decode() == "doc [REDACTED:secrets] doc"


@pytest.mark.parametrize("where", ["image base64", "pdf base64", "thinking", "redacted_thinking"])
def test_opaque_content_is_not_scanned(where: str) -> None:
    block = {
        "image base64": {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ANTHROPIC}},
        "pdf base64": {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                      "data": b64(ANTHROPIC)}},
        "thinking": {"type": "thinking", "thinking": ANTHROPIC, "signature": "sig"},
        "redacted_thinking": {"type": "redacted_thinking", "data": ANTHROPIC},
    }[where]
    assert apply(DEFAULT, user([block])).verdicts == []


def test_tool_ids_are_fixed_fields() -> None:
    """A client picks tool_use ids (upstream checks only [A-Za-z0-9_-], which a token fits) and
    upstream quotes them in errors: scanned, and a match blocks (an id cannot be rewritten alone).
    (Red team round 3; they were left alone before.)"""
    body = user([tool_use({"q": "fine"}) | {"id": VISA}, tool_result("ok") | {"tool_use_id": VISA}])
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    assert result.blocked is not None and result.blocked.action == "block"
    real = user([tool_use({"q": "fine"}) | {"id": "toolu_01A09q90qw90lq917835lq9"},
                 tool_result("ok") | {"tool_use_id": "toolu_01A09q90qw90lq917835lq9"}])
    assert apply(DEFAULT, real).verdicts == []


def test_redacted_key_is_renamed_and_clashes_are_numbered() -> None:
    other = GITHUB["gho"]
    body = user([tool_use({"env": {GITHUB["ghp"]: 1, other: 2, "[REDACTED:secrets]": 3, "keep": 4}})])
    result = apply(REDACT, body)
    env = result.body["messages"][0]["content"][0]["input"]["env"]
    assert env == {"[REDACTED:secrets]#2": 1, "[REDACTED:secrets]#3": 2, "[REDACTED:secrets]": 3, "keep": 4}
    assert list(body["messages"][0]["content"][0]["input"]["env"]) == [GITHUB["ghp"], other, "[REDACTED:secrets]", "keep"]


def test_key_and_value_under_it_both_redacted() -> None:
    body = user([tool_use({GITHUB["ghp"]: {"token": GITHUB["ghs"]}})])
    result = apply(REDACT, body)
    assert result.body["messages"][0]["content"][0]["input"] == {"[REDACTED:secrets]": {"token": "[REDACTED:secrets]"}}


# --------------------------------------------------------------------------
# bypass attempts

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


@pytest.mark.parametrize("text", ["PROJECT X", "project x", "Project X", "pRoJeCt\t\nx", "projectx"])
def test_regex_rules_ignore_case(text: str) -> None:
    assert apply(deny(r"project\s*x"), user(f"about {text}!")).blocked is not None


@pytest.mark.parametrize("zw", ZERO_WIDTH, ids=[f"U+{ord(z):04X}" for z in ZERO_WIDTH])
def test_zero_width_inside_a_secret(zw: str) -> None:
    padded = zw.join([ANTHROPIC[:5], ANTHROPIC[5:9], ANTHROPIC[9:40], ANTHROPIC[40:]])
    assert apply(DEFAULT, user(f"key {padded} end")).blocked is not None
    result = apply(REDACT, user(f"key {padded} end"))
    assert result.body["messages"][0]["content"] == "key [REDACTED:secrets] end"  # padding removed too


@pytest.mark.parametrize("zw", ZERO_WIDTH, ids=[f"U+{ord(z):04X}" for z in ZERO_WIDTH])
def test_zero_width_inside_a_denied_word(zw: str) -> None:
    word = zw.join("project") + " " + zw + "x"
    assert apply(deny(r"project\s*x"), user(f"about {word}")).blocked is not None
    result = apply(deny(r"project\s*x", "redact"), user(f"about {word}."))
    assert result.body["messages"][0]["content"] == "about [REDACTED:deny]."


def test_other_invisible_and_bidi_characters() -> None:
    for junk in ("\u202e", "\u2066", "\u200e", "\ufe0f", "\U000e0041", "\u034f"):
        assert apply(deny("project x"), user(f"pro{junk}ject{junk} x")).blocked is not None, hex(ord(junk))
        assert apply(DEFAULT, user(ANTHROPIC[:20] + junk + ANTHROPIC[20:])).blocked is not None


@pytest.mark.parametrize("text", [
    "ＰＲＯＪＥＣＴ Ｘ",  # fullwidth
    "𝐩𝐫𝐨𝐣𝐞𝐜𝐭 𝐱",  # mathematical bold
    "ⓟⓡⓞⓙⓔⓒⓣ ⓧ",  # circled
    "project\u00a0x",  # no-break space
    "project\u3000x",  # ideographic space
    "Рrојесt Х",  # Cyrillic look-alikes
    "ΡROJΕCΤ Χ",  # Greek look-alikes
])
def test_unicode_look_alikes_of_a_denied_phrase(text: str) -> None:
    assert apply(deny(r"project\s*x"), user(text)).blocked is not None
    result = apply(deny(r"project\s*x", "redact"), user(f"<{text}>"))
    assert result.body["messages"][0]["content"] == "<[REDACTED:deny]>"


def test_fullwidth_and_look_alike_secrets() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in ANTHROPIC)
    cyrillic_s = "\u0455" + ANTHROPIC[1:]  # Cyrillic dze for 's'
    en_dash = ANTHROPIC.replace("-", "\u2013", 3)
    for variant in (fullwidth, cyrillic_s, en_dash):
        assert apply(DEFAULT, user(variant)).blocked is not None
        assert apply(REDACT, user(f"[{variant}]")).body["messages"][0]["content"] == "[[REDACTED:secrets]]"
    fullwidth_card = "".join(chr(ord(c) + 0xFEE0) for c in VISA)
    assert apply(DEFAULT, user(fullwidth_card)).blocked is not None


def test_expanding_normalisation_keeps_offsets_right() -> None:
    # "ﬁ" (1 char) becomes "fi" (2): offsets after it must still map back exactly.
    text = "ﬁle ﬁle \u2460 " + ANTHROPIC[:30] + "\u200b" + ANTHROPIC[30:] + " ﬁn"
    result = apply(REDACT, user(text))
    assert result.body["messages"][0]["content"] == "ﬁle ﬁle \u2460 [REDACTED:secrets] ﬁn"


def test_non_ascii_pattern_is_not_folded() -> None:
    policy = deny("секрет")  # Cyrillic word: must not be folded to Latin before matching
    assert apply(policy, user("это СЕКРЕТ")).blocked is not None
    assert apply(policy, user("this is cekpet")).blocked is None


def test_json_escapes_are_decoded_before_scanning() -> None:
    raw = '{"messages": [{"role": "user", "content": "key \\u0073k-ant-api03-' + ANTHROPIC[13:20] \
        + '\\u200b' + ANTHROPIC[20:] + ' and pro\\u006aect \\u0058"}]}'
    body = json.loads(raw)
    assert apply(DEFAULT, body).blocked is not None
    assert apply(deny(r"project\s*x"), body).blocked is not None


@pytest.mark.parametrize("cut", [5, 13, 40, len(ANTHROPIC) - 3])
def test_secret_split_across_text_blocks(cut: str | int) -> None:
    assert isinstance(cut, int)
    body = user(blocks("my key is " + ANTHROPIC[:cut], ANTHROPIC[cut:] + " thanks"))
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    first, second = (b["text"] for b in result.body["messages"][0]["content"])
    assert first == "my key is [REDACTED:secrets]"
    assert second.startswith("[REDACTED:secrets]")


def test_secret_split_across_messages() -> None:
    body = {"messages": [{"role": "user", "content": "key part one " + ANTHROPIC[:50]},
                         {"role": "user", "content": ANTHROPIC[50:]}]}
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    assert all(ANTHROPIC[50:][:10] not in m["content"] for m in result.body["messages"])
    assert ANTHROPIC[20:40] not in redacted_text(result)


def test_secret_split_between_system_and_first_message() -> None:
    body = {"system": "token: " + GITHUB["ghp"][:20], "messages": [{"role": "user", "content": GITHUB["ghp"][20:]}]}
    assert apply(DEFAULT, body).blocked is not None


def test_card_split_across_blocks() -> None:
    assert apply(DEFAULT, user(blocks("4111 1111", "1111 1111"))).blocked is not None
    assert apply(DEFAULT, user(blocks("4111-1111-1111-", "1111"))).blocked is not None
    assert apply(DEFAULT, user(blocks("41111111", "11111111"))).blocked is not None


def test_pem_split_across_blocks_is_fully_redacted() -> None:
    key = pem()
    cut = len(key) // 2
    result = apply(REDACT, user(blocks("here:\n" + key[:cut], key[cut:] + "\nbye")))
    text = redacted_text(result)
    for line in PEM_BODY.splitlines():
        assert line[:16] not in text
    assert result.body["messages"][0]["content"][1]["text"].endswith("\nbye")


@pytest.mark.parametrize("parts", [("project", " x"), ("proj", "ect x"), ("project", "x"), ("Pro", "JECT", "X")])
def test_denied_phrase_split_across_blocks(parts: tuple[str, ...]) -> None:
    assert apply(deny(r"project\s*x"), user(blocks(*parts))).blocked is not None


def test_phrase_with_a_space_split_at_the_space() -> None:
    # 'project x' needs the space the bare join does not have: the spaced join has it.
    assert apply(deny("project x"), user(blocks("about project", "x now"))).blocked is not None
    messages = {"messages": [{"role": "user", "content": "project"}, {"role": "user", "content": "x"}]}
    assert apply(deny("project x"), messages).blocked is not None


def test_split_phrase_redacts_every_part() -> None:
    result = apply(deny(r"project\s*x", "redact"), user(blocks("we did proj", "ect x today")))
    assert [b["text"] for b in result.body["messages"][0]["content"]] == [
        "we did [REDACTED:deny]", "[REDACTED:deny] today"]


def test_labelled_aws_secret_split_into_key_and_value() -> None:
    body = user([tool_use({"credentials": {"aws_secret_access_key": AWS_SECRET, "region": "eu-west-1"}})])
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    creds = result.body["messages"][0]["content"][0]["input"]["credentials"]
    assert creds == {"aws_secret_access_key": "[REDACTED:secrets]", "region": "eu-west-1"}


def test_deeply_nested_tool_input() -> None:
    value: Any = f"x {GITHUB['ghu']}"
    for i in range(300):
        value = {f"k{i}": [value]} if i % 2 else [value]
    body = user([tool_use(value)])
    assert apply(DEFAULT, body).blocked is not None
    assert GITHUB["ghu"] not in redacted_text(apply(REDACT, body))


def test_deeply_nested_tool_results() -> None:
    content: Any = blocks(f"leak {OPENAI_PROJECT}")
    for _ in range(200):
        content = [tool_result(content)]
    body = user(content)
    assert apply(DEFAULT, body).blocked is not None
    assert OPENAI_PROJECT not in redacted_text(apply(REDACT, body))


# --------------------------------------------------------------------------
# results never carry the secret


@pytest.mark.parametrize("secret", [s for d, samples in POSITIVES.items() if d != "aws_secret_key" for s in samples])
def test_results_hold_no_matched_text(secret: str) -> None:
    for policy in (DEFAULT, REDACT):
        result = apply(policy, user(blocks("a", f"b {secret} c")))
        assert result.verdicts
        assert leaks(result, secret) == []
        for verdict in result.verdicts:
            assert set(vars(verdict)) == {"rule", "action", "matches", "detectors", "direction"}


# --------------------------------------------------------------------------
# config errors


CONFIG_ERRORS: list[tuple[Any, str, str]] = [
    ("nope", "gw.yaml: filters: must be a list", "write each rule"),
    ({"name": "a"}, "gw.yaml: filters: must be a list", "write each rule"),
    ([1], "gw.yaml: filters[0]: must be a mapping", "give it a name"),
    ([{"name": "a", "patern": "x"}], "gw.yaml: filters[0].patern: unknown key", "did you mean filters[0].pattern?"),
    ([{"name": "a", "pattern": "x", "stauts": 403}], "filters[0].stauts: unknown key", "did you mean filters[0].status?"),
    ([{"name": "a", "pattern": "x", "zzz": 1}], "filters[0].zzz: unknown key", "known keys: name, detectors"),
    ([{"pattern": "x"}], "filters[0].name: missing", "e.g. name: no-project-x"),
    ([{"name": "two words", "pattern": "x"}], "filters[0].name: 'two words' is not a valid rule name", "letters, digits"),
    ([{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}], "filters[1].name: duplicate rule name", "its own name"),
    ([{"name": "a", "pattern": "x", "detectors": ["all"]}], "filters[0]: has both detectors and pattern", "exactly one"),
    ([{"name": "a"}], "filters[0]: has neither detectors nor pattern", "exactly one"),
    ([{"name": "a", "pattern": "(unclosed"}], "filters[0].pattern: not a valid regular expression", "fix the regex"),
    ([{"name": "a", "pattern": "[z-a]"}], "filters[0].pattern: not a valid regular expression", "fix the regex"),
    ([{"name": "a", "pattern": "x*"}], "filters[0].pattern: can match the empty string", "use + instead of *"),
    ([{"name": "a", "pattern": "foo|"}], "filters[0].pattern: can match the empty string", "at least one character"),
    ([{"name": "a", "pattern": ""}], "filters[0].pattern: must be a non-empty string", "quote the regex"),
    ([{"name": "a", "pattern": 12}], "filters[0].pattern: must be a non-empty string", "quote the regex"),
    ([{"name": "a", "pattern": "ｐｒｏｊｅｃｔ"}], "filters[0].pattern: contains characters", "plain form instead: 'project'"),
    ([{"name": "a", "pattern": "pro\u200bject"}], "filters[0].pattern: contains characters", "plain form"),
    ([{"name": "a", "detectors": ["github"]}], "filters[0].detectors[0]: unknown detector 'github'", "did you mean github_token?"),
    ([{"name": "a", "detectors": ["all", "nope"]}], "", ""),  # 'all' first wins: valid
    ([{"name": "a", "detectors": ["openai_key", "anthropic"]}], "filters[0].detectors[1]: unknown detector", "did you mean anthropic_key?"),
    ([{"name": "a", "detectors": ["qqq"]}], "filters[0].detectors[0]: unknown detector 'qqq'", "known detectors: anthropic_key"),
    ([{"name": "a", "detectors": []}], "filters[0].detectors: must be a non-empty list", "detectors: [all]"),
    ([{"name": "a", "detectors": {"all": True}}], "filters[0].detectors: must be a non-empty list", "detectors: [all]"),
    ([{"name": "a", "pattern": "x", "action": "redcat"}], "filters[0].action: 'redcat' is not an action", "did you mean redact?"),
    ([{"name": "a", "pattern": "x", "action": "drop"}], "filters[0].action: 'drop' is not an action", "block, redact or log"),
    ([{"name": "a", "pattern": "x", "status": 401}], "filters[0].status: 401 is not an allowed status", "use 400"),
    ([{"name": "a", "pattern": "x", "status": "403"}], "filters[0].status: '403' is not an allowed status", "or 403"),
    ([{"name": "a", "pattern": "x", "status": True}], "filters[0].status: True is not an allowed status", "use 400"),
    ([{"name": "a", "pattern": "x", "status": [403]}], "filters[0].status: [403] is not an allowed status", "use 400"),
    ([{"name": "a", "pattern": "x", "action": ["block"]}], "filters[0].action: ['block'] is not an action", "block, redact"),
    ([{"name": ["a"], "pattern": "x"}], "filters[0].name: ['a'] is not a valid rule name", "letters"),
    ([{"name": "a", "detectors": [{"all": 1}]}], "filters[0].detectors[0]: unknown detector", "known detectors"),
    ([{"name": "a", "pattern": "x", "action": "redact", "status": 403}], "filters[0].status: status only applies",
     "set action: block"),
]


@pytest.mark.parametrize(("rules", "where", "fix"), CONFIG_ERRORS)
def test_config_errors_name_the_key_and_the_fix(rules: Any, where: str, fix: str) -> None:
    if not where:
        FilterPolicy.from_config(rules, source="gw.yaml")
        return
    with pytest.raises(ConfigError) as info:
        FilterPolicy.from_config(rules, source="gw.yaml")
    message = str(info.value)
    assert message.startswith("gw.yaml: filters")
    problem, _, remedy = message.partition("; ")
    assert where in problem, message
    assert remedy and fix in remedy, message


def test_config_error_index_points_at_the_bad_rule() -> None:
    rules: list[dict[str, Any]] = [{"name": "a", "pattern": "x"}, {"name": "b", "detectors": ["all"]}, {"name": "c", "pattern": "(("}]
    with pytest.raises(ConfigError, match=r"^<config>: filters\[2\]\.pattern: "):
        FilterPolicy.from_config(rules)


def test_valid_config_round_trip() -> None:
    policy = FilterPolicy.from_config([
        {"name": "secrets", "detectors": ["anthropic_key", "private_key", "anthropic_key"], "action": "redact"},
        {"name": "no-project-x", "pattern": r"project\s*x", "action": "block", "status": 403},
        {"name": "codename", "pattern": "falcon"},
    ])
    assert policy.rule_names == ("secrets", "no-project-x", "codename")
    assert "no-project-x:block" in repr(policy)


def test_patterns_with_anchors_and_lookarounds_still_match_each_piece() -> None:
    for pattern, text in [(r"^ignore previous", "Ignore previous instructions"), (r"\bfalcon\b", "the falcon."),
                          (r"(?:^|[^e] )falcon", "a falcon"), (r"secret$", "top secret"), (r"(?s)a.b", "a\nb")]:
        policy = deny(pattern)
        assert apply(policy, user(blocks("first block", text))).blocked is not None, pattern
        assert apply(policy, {"system": "s", "messages": [{"role": "user", "content": text}]}).blocked is not None


def test_apply_tolerates_odd_shapes() -> None:
    odd: list[Any] = [
        {"messages": "nope"}, {"messages": [None, 1, "x", {"role": "user"}]}, {"system": 5},
        {"messages": [{"role": "user", "content": [None, 3, [ANTHROPIC], {"type": None, "text": 1}]}]},
        {"messages": [{"role": "user", "content": [{"type": "tool_use", "input": {1: ANTHROPIC, None: [True, 2.5]}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64",
                      "media_type": "text/plain", "data": "%%%not base64"}}]}]},
        {"tools": [None, {"description": 3, "input_schema": [1, {"description": ANTHROPIC}]}]},
        {"messages": [{"role": "user", "content": "\ud800 lone surrogate " + ANTHROPIC}]},
    ]
    for body in odd:
        apply(DEFAULT, body)
        apply(REDACT, body)
    assert apply(DEFAULT, odd[3]).blocked is not None
    assert apply(DEFAULT, odd[4]).blocked is not None
    assert apply(DEFAULT, odd[6]).blocked is not None
    assert apply(REDACT, odd[7]).body["messages"][0]["content"] == "\ud800 lone surrogate [REDACTED:secrets]"
    not_a_dict: Any = ["not", "a", "dict"]
    assert DEFAULT.apply(not_a_dict).body is not_a_dict


def test_large_body_smoke() -> None:
    filler = " ".join(["lorem ipsum dolor sit amet 2024 order 5521"] * 50)
    body: dict[str, Any] = {
        "system": filler, "messages": [{"role": "user", "content": blocks(filler, filler)} for _ in range(40)]}
    assert apply(DEFAULT, body).verdicts == []
    body["messages"][-1]["content"][1]["text"] += " " + ANTHROPIC
    result = apply(REDACT, body)
    assert result.verdicts == [Verdict("secrets", "redact", 1)]
    assert result.verdicts[0].detectors == ("anthropic_key",)
    assert result.body["messages"][0] is body["messages"][0]


# --------------------------------------------------------------------------
# joins, fallbacks and heavy inputs


def test_secret_split_across_tool_input_values_with_keys_between() -> None:
    body = user([tool_use({"args": [{"v": "key " + ANTHROPIC[:40]}, {"v": ANTHROPIC[40:]}]})])
    assert apply(DEFAULT, body).blocked is not None
    result = apply(REDACT, body)
    assert [a["v"] for a in result.body["messages"][0]["content"][0]["input"]["args"]] == [
        "key [REDACTED:secrets]", "[REDACTED:secrets]"]


def test_pattern_found_in_a_key_only() -> None:
    assert apply(deny("falcon"), user([tool_use({"Falcon": 1})])).blocked is not None


def test_non_ascii_pattern_split_across_blocks() -> None:
    assert apply(deny("секрет"), user(blocks("это сек", "рет"))).blocked is not None


def test_config_from_a_tuple_like_the_gateway_config() -> None:
    policy = FilterPolicy.from_config(({"name": "secrets", "detectors": ["all"]},), source="gw.yaml")
    assert apply(policy, user(VISA)).blocked is not None


def test_unmappable_string_is_redacted_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import claudegate_gateway.filters.normalise as normalise

    monkeypatch.setattr(normalise, "_MAX_MAP_UNITS", 0)
    result = apply(REDACT, user(blocks("kept", f"ｗｉｄｅ {ANTHROPIC} text")))
    assert [b["text"] for b in result.body["messages"][0]["content"]] == ["kept", "[REDACTED:secrets]"]


def test_japanese_text_around_a_secret_is_kept_exactly() -> None:
    text = "ｶﾞｲﾄﾞ（テスト）：キーは" + GITHUB["ghp"] + "です。ﾃﾞｰﾀ\u3000終わり"
    result = apply(REDACT, user(text))
    assert result.body["messages"][0]["content"] == "ｶﾞｲﾄﾞ（テスト）：キーは[REDACTED:secrets]です。ﾃﾞｰﾀ\u3000終わり"


def test_aws_secret_among_many_secret_words_and_split_label() -> None:
    chatter = "keep it secret, keep it safe. " * 200
    assert apply(DEFAULT, user(chatter)).verdicts == []
    assert apply(DEFAULT, user(chatter + f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}")).blocked is not None
    body = user(blocks("aws_secret_access_key =", AWS_SECRET))
    result = apply(REDACT, body)
    assert [b["text"] for b in result.body["messages"][0]["content"]] == [
        "aws_secret_access_key =", "[REDACTED:secrets]"]


def test_pem_edge_cases() -> None:
    many_headers = "-----BEGIN RSA PRIVATE KEY-----\n" * 2000
    assert apply(DEFAULT, user(many_headers)).blocked is not None
    legacy = ("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C\n\n"
              f"{PEM_BODY}\n-----END RSA PRIVATE KEY-----")
    result = apply(REDACT, user(f"before\n{legacy}\nafter"))
    assert result.body["messages"][0]["content"] == "before\n[REDACTED:secrets]\nafter"
    one_line = pem().replace("\n", " ")
    assert apply(REDACT, user(f"a {one_line} b")).body["messages"][0]["content"] == "a [REDACTED:secrets] b"
    lower = pem().lower()
    assert apply(DEFAULT, user(lower)).blocked is not None


def test_long_number_lists_are_data() -> None:
    years = " ".join(str(y) for y in range(1980, 2030))
    matrix = " ".join(list("1001534678922413") * 20)
    dashes = "-".join(["0000"] * 30)
    for text in (years, matrix, dashes):
        assert apply(DEFAULT, user(text)).verdicts == []


def test_verdict_lists_detectors_but_compares_as_a_triple() -> None:
    body = user(f"id {AWS_ID} secret_access_key: {AWS_SECRET} card {VISA}")
    verdict = apply(DEFAULT, body).blocked
    assert verdict == Verdict("secrets", "block", 3)
    assert verdict is not None and verdict.detectors == ("aws_access_key", "aws_secret_key", "card_number")
    assert apply(deny("card"), body).blocked == Verdict("deny", "block", 1, ())
    assert hash(Verdict("a", "block", 1, ("x",))) == hash(Verdict("a", "block", 1))
