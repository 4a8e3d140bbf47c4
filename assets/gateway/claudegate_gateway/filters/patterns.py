"""Operator regex rules: gates and context sensitivity."""

from __future__ import annotations

import re
from collections.abc import Iterator

from claudegate_gateway.filters.engine import Pattern
from claudegate_gateway.filters.matchers import _Found, _Matcher, literal_hold

# Patterns containing these may match a piece but not the joined text.
_CONTEXT_SENSITIVE = re.compile(r"[\^$]|\\[bBAZ]|\(\?<?[=!]")
_NON_ASCII_ESCAPE = re.compile(r"\\[uUxN]")


_LEADING_ASSERTS = re.compile(r"(?:\\[bA]|\^)*")
_LITERAL_RUN = re.compile(r"[A-Za-z0-9 _\-:/@#%&=,;<>'\"!~]+")


def _has_top_level_bar(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern.startswith("^", i + 1):
                i += 1
            if pattern.startswith("]", i + 1):
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def _required_literal(pattern: str) -> str | None:
    """A lower-case literal every match must contain (the pattern's plain prefix), if any.

    Conservative: only a run of plain characters at the very start (after
    ``^``/``\\b``/``\\A``) and only when there is no top-level ``|``. Lets a
    case-insensitive operator regex be gated by one fast substring test.
    """
    if not pattern.isascii() or _has_top_level_bar(pattern):
        return None
    start = _LEADING_ASSERTS.match(pattern)
    pos = start.end() if start else 0
    run = _LITERAL_RUN.match(pattern, pos)
    if run is None:
        return None
    literal = run.group()
    if pattern[run.end():run.end() + 1] in ("*", "?", "{"):
        literal = literal[:-1]  # the last character is optional
    return literal.lower() if len(literal) >= 2 else None


def _pattern_matcher(name: str, rx: Pattern, width: int | None = None) -> _Matcher:
    def find(text: str, start: int, end: int) -> Iterator[_Found]:
        for m in rx.finditer(text, start, end):
            a, b = m.span()
            if a != b:
                yield a, b, a, b

    # Look-arounds see a few characters beyond the match: keep some context.
    stream_width = (width or 0) + 16
    folded = rx.pattern.isascii() and _NON_ASCII_ESCAPE.search(rx.pattern) is None
    literal = _required_literal(rx.pattern) if folded else None
    if literal is not None:
        # On the folded view, a case-insensitive match of ASCII text lowers to
        # the literal; containment is monotone even when the regex is not.
        return _Matcher(name=name, gate=lambda t: literal in t.lower, find=find, monotone=True, folded=True,
                        width=stream_width, hold=literal_hold((literal,), stream_width, lower=True))
    return _Matcher(
        name=name,
        gate=lambda t: any(True for _ in find(t.s, 0, len(t.s))),
        find=find,
        monotone=_CONTEXT_SENSITIVE.search(rx.pattern) is None,
        folded=folded,
        width=stream_width,
    )


