"""The built-in secret detectors and the payment card check."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from claudegate_gateway.filters.matchers import (
    _Found,
    _literal_gate,
    _Matcher,
    _regex_find,
    _Text,
    literal_hold,
    run_hold,
)


def _distinct(s: str, n: int) -> bool:
    return len(set(s)) >= n


def _mixed(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)


_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{16,}")


def _openai_ok(m: re.Match[str]) -> bool:
    body = m.group("b")
    return _distinct(body, 10) and _mixed(body) and _ALNUM_RUN.search(body) is not None


def _aws_secret_ok(m: re.Match[str]) -> bool:
    s = m.group("s")
    return _distinct(s, 10) and any(c.isupper() for c in s) and any(c.islower() for c in s) and (
        any(c.isdigit() or c in "/+" for c in s)
    )


# Every detector regex starts with a literal (look-behinds come after it), so
# sre jumps between occurrences instead of trying every position.
_ANTHROPIC_RE = re.compile(r"sk-ant-[a-z]{2,12}\d{2}-(?P<b>[A-Za-z0-9_\-]{32,})")
_OPENAI_RE = re.compile(
    r"sk-(?<![A-Za-z0-9_\-]sk-)(?!ant-)(?:(?:proj|svcacct|admin)-)?(?P<b>[A-Za-z0-9_\-]{20,})"
)
_AWS_ID_RE = re.compile(r"(?:AKIA|ASIA)(?<![A-Za-z0-9](?:AKIA|ASIA))(?P<b>[A-Z0-9]{16})(?![A-Za-z0-9])")
_GITHUB_RE = re.compile(
    r"gh[pousr]_(?<![A-Za-z0-9_]gh[pousr]_)(?P<b>[A-Za-z0-9]{36,251})(?![A-Za-z0-9_])"
    r"|github_pat_(?<![A-Za-z0-9_]github_pat_)(?P<p>[A-Za-z0-9_]{50,240})(?![A-Za-z0-9_])"
)
# The label is case-insensitive, so this one cannot start with a literal:
# it only runs in windows around the word "secret" (see _secret_windows).
_AWS_SECRET_RE = re.compile(
    r"(?i:aws[_\-. ]?secret[_\-. ]?(?:access[_\-. ]?)?key|secret[_\-. ]?access[_\-. ]?key)"
    r"(?:[\"'`]?[ \t]{0,8}(?:=>|:=|[:=])[ \t]{0,8}[\"'`]?|[\"'`]?\s{1,8}[\"'`]?)"
    r"(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_SECRET_WINDOW = (8, 128)  # chars before / after "secret" that hold any match (label + sep + value)

_PEM_HEAD = r"---(?i:-*[ \t]*BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?[ \t]*-{3,})"
_PEM_TAIL = r"(?i:-{3,}[ \t]*END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?[ \t]*-{3,})"
# With an END line: everything up to it. The body may not cross a '---', and
# is atomic, so each header costs at most the distance to the next dash run
# (many headers and no END cannot go quadratic). Atomic groups, not possessive
# quantifiers: Python 3.11.2 (Debian bookworm, the gateway image's Python)
# matches a possessive bounded repeat wrongly, and the END line was missed. Truncated (no END): the
# lines or chunks that look like key material (16+ base64 characters, a
# short '='-padded tail, or a 'Proc-Type: ...' header), so prose after a
# pasted fragment survives.
_PEM_BODY = r"(?>(?:\s+(?:[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9+/]{0,15}={1,2}|[A-Z][A-Za-z-]*:[ \t][^\n]*))*)"
_PRIVATE_KEY_RE = re.compile(rf"{_PEM_HEAD}(?:(?>(?:[^-]|-(?!--)){{0,40000}}){_PEM_TAIL}|{_PEM_BODY})")


def _secret_windows(t: _Text) -> list[tuple[int, int]]:
    """Spans around each "secret" (any case): every labelled AWS secret lies in one."""
    low = t.lower
    if len(low) != len(t.s):  # lower() changed lengths (cannot happen after folding); scan it all
        return [(0, len(t.s))]
    before, after = _SECRET_WINDOW
    out: list[tuple[int, int]] = []
    i = low.find("secret")
    while i >= 0:
        a, b = max(i - before, 0), min(i + after, len(low))
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
        i = low.find("secret", i + 1)
    return out


# ---- payment cards

# A region: 13+ characters of digits, spaces and hyphens, starting with a
# digit. One character class repeated is the fastest thing sre can scan for,
# so regions gate and bound the exact digit-run regex below. finditer finds
# runs from their first digit (an earlier start would have matched), so no
# look-behind is needed.
_CARD_REGION_ASCII = re.compile(r"[0-9][0-9 \-]{12,}")
_CARD_REGION_ANY = re.compile(r"\d[\d \-]{12,}")
_CARD_RUN = re.compile(r"\d(?:[ \-]?\d){12,}")
_DIGIT_GROUP = re.compile(r"\d+")


def _luhn(digits: Sequence[int]) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(digits: list[int]) -> bool:
    n = len(digits)
    if not 13 <= n <= 19 or len(set(digits)) == 1 or not _luhn(digits):
        return False
    lead = digits[0] * 10 + digits[1]
    four = lead * 100 + digits[2] * 10 + digits[3]
    if digits[0] == 4:  # Visa
        return n in (13, 16, 19)
    if 51 <= lead <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if lead in (34, 37):  # Amex
        return n == 15
    if digits[0] == 6:  # Discover, UnionPay, Maestro 6x
        return n >= 16
    if 3528 <= four <= 3589:  # JCB
        return n >= 16
    if lead in (30, 36, 38, 39):  # Diners
        return n >= 14
    if lead in (50, 56, 57, 58):  # Maestro
        return n >= 13
    return False


def _card_regions(t: _Text) -> list[tuple[int, int]]:
    return [m.span() for m in (_CARD_REGION_ASCII if t.ascii else _CARD_REGION_ANY).finditer(t.s)]


def _card_gate(t: _Text) -> bool:
    return (_CARD_REGION_ASCII if t.ascii else _CARD_REGION_ANY).search(t.s) is not None


_MAX_CARD_GROUPS = 32


def _find_cards(text: str, start: int, end: int) -> Iterator[_Found]:
    for run in _CARD_RUN.finditer(text, start, end):
        digits = run.group()
        if digits.count(" ") + digits.count("-") >= _MAX_CARD_GROUPS:
            continue  # a long list of numbers is data, not a card (and would cost a lot)
        base = run.start()
        # Digits as text until a window is tried: a run of thousands of digits
        # (a streamed number) costs one pass, not a list of ints per scan.
        groups = [(base + g.start(), base + g.end(), g.group()) for g in _DIGIT_GROUP.finditer(run.group())]
        total = sum(len(g[2]) for g in groups)
        # A group that is a card on its own is the card, not the run it joins with the
        # numbers beside it ("order 67 4111111111111111": the 18 digits pass Luhn by chance).
        alone = len(groups) > 1 and any(len(g[2]) >= 13 and _card_ok([int(d) for d in g[2]]) for g in groups)
        if total <= 19 and not alone and _card_ok([int(d) for g in groups for d in g[2]]):
            yield run.start(), run.end(), run.start(), run.end()
            continue
        # Card inside a longer run (number + CVV, a list of numbers): try
        # windows of whole groups of 3+ digits, longest first.
        i = 0
        while i < len(groups):
            ends: list[int] = []
            count = 0
            for j in range(i, len(groups)):
                glen = len(groups[j][2])
                if glen < 3:
                    break
                count += glen
                if count > 19:
                    break
                if count >= 13:
                    ends.append(j)
            hit = None
            for j in reversed(ends):
                if _card_ok([int(d) for g in groups[i:j + 1] for d in g[2]]):
                    hit = j
                    break
            if hit is None:
                i += 1
                continue
            a, b = groups[i][0], groups[hit][1]
            yield a, b, a, b
            i = hit + 1


_PEM_HEAD_RE = re.compile(_PEM_HEAD)
_PEM_TAIL_RE = re.compile(_PEM_TAIL)

_DETECTOR_LIST: tuple[_Matcher, ...] = (
    _Matcher("anthropic_key", _literal_gate("sk-ant-"),
             _regex_find(_ANTHROPIC_RE, lambda m: _distinct(m.group("b"), 8)), width=200,
             hold=literal_hold(("sk-ant-",), 200)),
    _Matcher("openai_key", _literal_gate("sk-"), _regex_find(_OPENAI_RE, _openai_ok), width=240,
             hold=literal_hold(("sk-",), 240)),
    _Matcher("aws_access_key", _literal_gate("AKIA|ASIA"),
             _regex_find(_AWS_ID_RE, lambda m: _distinct(m.group("b"), 6)), width=32,
             hold=literal_hold(("AKIA", "ASIA"), 32)),
    _Matcher("aws_secret_key", _literal_gate("secret", lower=True),
             _regex_find(_AWS_SECRET_RE, _aws_secret_ok, group="s"), regions=_secret_windows, width=160,
             hold=literal_hold(("aws", "secret"), 160, lower=True)),
    _Matcher("github_token", _literal_gate("gh[pousr]_|github_pat_"),
             _regex_find(_GITHUB_RE, lambda m: _distinct(m.group("b") or m.group("p"), 8)), width=272,
             hold=literal_hold(("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), 272)),
    # In a stream the header alone is matched (a key block is kilobytes long)
    # and the rest is withheld up to the END line: see _Matcher.until.
    _Matcher("private_key", _literal_gate("private key", lower=True), _regex_find(_PRIVATE_KEY_RE),
             width=96, until=_PEM_TAIL_RE),
    _Matcher("card_number", _card_gate, _find_cards, regions=_card_regions, width=64,
             hold=run_hold(r"\d \-", 64)),
)
_DETECTORS: dict[str, _Matcher] = {d.name: d for d in _DETECTOR_LIST}
DETECTORS: tuple[str, ...] = tuple(_DETECTORS)
"""Names accepted in a rule's ``detectors`` list (plus ``all``)."""

#: Stream form of the private key detector: the header only (see ``until``).
STREAM_FORMS: dict[str, _Matcher] = {
    "private_key": _Matcher("private_key", _literal_gate("private key", lower=True),
                            _regex_find(_PEM_HEAD_RE), width=96, until=_PEM_TAIL_RE,
                            hold=literal_hold(("---",), 96)),
}

# ---- personal data (opt-in: not part of "all")

# Bounded on both sides so the stream window stays small; a local part of
# 64 and a domain of 5 labels cover real addresses.
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.){1,5}[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
# A phone number: an optional + or 00, then 8-15 digits with single spaces,
# dots, hyphens or parentheses between them, as a whole token.
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+|\(\+?)?\d(?:[ .\-]?\(?\d\)?){6,18}(?![\w])")


def _phone_ok(m: re.Match[str]) -> bool:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    return 8 <= digits <= 15 and _DATE_RE.fullmatch(text) is None


_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


PII_LIST: tuple[_Matcher, ...] = (
    _Matcher("email", _literal_gate("@"), _regex_find(_EMAIL_RE), width=224,
             hold=run_hold(r"A-Za-z0-9._%+\-@", 224)),
    _Matcher("phone", _literal_gate(r"\d"), _regex_find(_PHONE_RE, _phone_ok), width=48,
             hold=run_hold(r"\d ().\-+", 48)),
)
PII_DETECTORS: tuple[str, ...] = tuple(m.name for m in PII_LIST)
"""Opt-in personal-data detectors: named explicitly, never included in ``all``."""
_ALL_DETECTORS: dict[str, _Matcher] = {**_DETECTORS, **{m.name: m for m in PII_LIST}}
