"""The matcher interface shared by detectors and operator patterns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# (full_start, full_end, redact_start, redact_end) in the scanned text
_Found = tuple[int, int, int, int]


class _Text:
    """A joined text with a lazily computed lower-case copy for gates."""

    __slots__ = ("_lower", "ascii", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.ascii = s.isascii()
        self._lower: str | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.s.lower()
        return self._lower


@dataclass(frozen=True, eq=False)
class _Matcher:
    """One detector, or one operator pattern.

    ``gate`` must be a necessary condition that is monotone in its text: if
    ``find`` would match inside any piece or inside the joined text, ``gate``
    is true for the joined text. ``monotone=False`` (patterns with anchors or
    look-arounds) means pieces are always scanned whatever the gate says.
    """

    name: str
    gate: Callable[[_Text], bool]
    find: Callable[[str, int, int], Iterator[_Found]]  # (text, start, end)
    monotone: bool = True
    folded: bool = True
    # Instead of the gate: spans of a joined text (computed for each join)
    # such that every match inside a piece, or across pieces in that join,
    # lies within one span. Scanning is then limited to those spans.
    regions: Callable[[_Text], list[tuple[int, int]]] | None = None
    # Streams: the longest match (plus look-around context) this matcher must
    # see whole; the response window holds back this many characters.
    width: int = 256
    # Streams: after a match, everything up to a match of this (e.g. a PEM
    # END line) is withheld too, so a long block needs no long window.
    until: re.Pattern[str] | None = None
    # Streams: (text, lo, end) -> the earliest index >= lo where a match may
    # start that more text could still change; text before it is released.
    # None: end - width (nothing known about how matches start).
    hold: Callable[[str, int, int], int] | None = None

    def hold_from(self, text: str, lo: int, end: int) -> int:
        if self.hold is not None:
            return self.hold(text, lo, end)
        return max(lo, end - self.width)


def literal_hold(literals: tuple[str, ...], width: int, *, lower: bool = False) -> Callable[[str, int, int], int]:
    """Hold for matchers whose every match starts with one of ``literals``.

    A match can only be in progress where a literal occurs within the last
    ``width`` characters, or where the text ends with the start of one
    ("...s", "...sk-"); everything else can be released. One regex finds the
    earliest such place (``lower``: case-insensitive).
    """
    alternatives: list[str] = []
    for lit in literals:
        alternatives.append(re.escape(lit))
        alternatives += [re.escape(lit[:k]) + r"\Z" for k in range(len(lit) - 1, 0, -1)]
    rx = re.compile("|".join(alternatives), re.IGNORECASE if lower else 0)

    def hold(text: str, lo: int, end: int) -> int:
        start = max(lo, end - width)
        m = rx.search(text, start, end)
        return m.start() if m is not None else end

    return hold


def run_hold(chars: str, width: int) -> Callable[[str, int, int], int]:
    """Hold for matchers whose matches are runs of ``chars`` (a class body): the run touching the end."""
    tail_re = re.compile(f"[{chars}]+\\Z")

    def hold(text: str, lo: int, end: int) -> int:
        start = max(lo, end - width)
        m = tail_re.search(text, start, end)
        return m.start() if m is not None else end

    return hold


def _literal_gate(pattern: str, *, lower: bool = False) -> Callable[[_Text], bool]:
    rx = re.compile(pattern)
    if lower:
        return lambda t: rx.search(t.lower) is not None
    return lambda t: rx.search(t.s) is not None


def _regex_find(
    rx: re.Pattern[str], valid: Callable[[re.Match[str]], bool] | None = None, group: str | None = None
) -> Callable[[str, int, int], Iterator[_Found]]:
    def find(text: str, start: int, end: int) -> Iterator[_Found]:
        for m in rx.finditer(text, start, end):
            a, b = m.span()
            if a == b or (valid is not None and not valid(m)):
                continue
            ra, rb = m.span(group) if group else (a, b)
            yield a, b, ra, rb

    return find


