"""Load-time checks that keep operator regexes linear on Python's backtracking ``re``.

Why not a linear-time engine: the gateway image may depend only on aiohttp
and pyyaml, and there is no RE2/Thompson engine in the standard library. So
every operator pattern is parsed with the standard library's own regex
parser (``re._parser``: the exact tree ``re.compile`` runs) and refused when
its shape lets the backtracking matcher go super-linear:

* a repeat (``*``, ``+``, ``{m,n}`` with n > 1) around something that can
  itself match a variable length (``(a+)+``, ``(\\w+\\s?)*``), around
  something that can match the empty string (``(a?)*``), or around an
  alternation whose branches can start with the same character
  (``(a|ab)+``, ``(\\w|\\d)*``): exponential;
* two unbounded repeats that can match the same characters with only
  optional items between them (``\\d+\\d+``, ``\\w+\\s*\\w+``): quadratic
  per starting position;
* an unbounded repeat that can match the pattern's own first character
  (``a.*b``, ``\\w+@``, ``.*secret``): the search restarts at every
  character of a long run and rescans it, quadratic in the body (40k
  characters took seconds when measured);
* back-references (not regular at all).

Bounded repeats (``\\w{1,64}``) are always allowed: they cost at most their
bound per starting position. Possessive repeats and atomic groups never
backtrack and are exempt from the nesting checks. The character sets are
compared on a sample alphabet (ASCII plus representative non-ASCII letters,
digits and spaces), which errs on the side of refusing.

:func:`max_width` gives the longest text a pattern can match (None when
unbounded); a response rule needs a bound because the stream window holds
back that many characters.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MAXREPEAT: int = _c.MAXREPEAT
_ALPHABET = frozenset([chr(i) for i in range(128)] + list("éüßÄΩщ中٣\u00a0\u3000"))
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}
_CATEGORY: dict[Any, Callable[[str], bool]] = {
    _c.CATEGORY_DIGIT: str.isdecimal,
    _c.CATEGORY_SPACE: str.isspace,
    _c.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
}
_NOT_CATEGORY: dict[Any, Callable[[str], bool]] = {
    _c.CATEGORY_NOT_DIGIT: _c.CATEGORY_DIGIT,
    _c.CATEGORY_NOT_SPACE: _c.CATEGORY_SPACE,
    _c.CATEGORY_NOT_WORD: _c.CATEGORY_WORD,
}


class UnsafePattern(ValueError):
    """A pattern the backtracking engine could run for super-linear time; ``fix`` says what to write."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def check(pattern: str, flags: int = 0) -> None:
    """Raise :class:`UnsafePattern` when ``pattern`` has a super-linear shape (see the module doc)."""
    tree = _parser.parse(pattern, flags)
    icase = bool(tree.state.flags & _c.SRE_FLAG_IGNORECASE)
    checker = _Checker(icase)
    checker.sequence(list(tree), nested=False)
    first = checker.first(list(tree))
    for item in _walk(list(tree)):
        op, av = item
        if op in _REPEATS and av[1] == MAXREPEAT and checker.first(list(av[2])) & first:
            raise UnsafePattern(
                "has an unbounded repeat that can match the pattern's first character, so a long run of"
                " such characters is rescanned from every position (quadratic time)",
                "bound the repeat, e.g. \\w{1,64} instead of \\w+ or .{0,200} instead of .*",
            )


def max_width(pattern: str, flags: int = 0) -> int | None:
    """The most characters one match can span; None when unbounded."""
    width: int = _parser.parse(pattern, flags).getwidth()[1]
    return None if width >= MAXREPEAT else width


def _walk(items: Iterable[tuple[Any, Any]]) -> Iterable[tuple[Any, Any]]:
    for op, av in items:
        yield op, av
        for sub in _children(op, av):
            yield from _walk(sub)


def _children(op: Any, av: Any) -> list[list[tuple[Any, Any]]]:
    if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
        return [list(av[2])]
    if op == _c.SUBPATTERN:
        return [list(av[3])]
    if op == _c.ATOMIC_GROUP:
        return [list(av)]
    if op == _c.BRANCH:
        return [list(b) for b in av[1]]
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return [list(av[1])]
    return []


def _width(items: list[tuple[Any, Any]]) -> tuple[int, int]:
    sub = _parser.SubPattern(_parser.State(), items)
    lo, hi = sub.getwidth()
    return int(lo), int(hi)


class _Checker:
    def __init__(self, icase: bool) -> None:
        self.icase = icase

    def chars(self, op: Any, av: Any) -> frozenset[str]:
        """Sample characters one single-character item can match."""
        if op == _c.LITERAL:
            return self._case({chr(av)})
        if op == _c.NOT_LITERAL:
            return _ALPHABET - self._case({chr(av)})
        if op == _c.ANY:
            return _ALPHABET
        if op == _c.IN:
            negate = False
            got: set[str] = set()
            for iop, iav in av:
                if iop == _c.NEGATE:
                    negate = True
                elif iop == _c.LITERAL:
                    got |= self._case({chr(iav)})
                elif iop == _c.RANGE:
                    lo, hi = iav
                    got |= self._case({ch for ch in _ALPHABET if lo <= ord(ch) <= hi})
                elif iop == _c.CATEGORY:
                    got |= _category(iav)
                else:  # RANGE_UNI_IGNORE, CHARSET, ...: assume anything
                    got |= _ALPHABET
            return frozenset(_ALPHABET - got if negate else got)
        return _ALPHABET

    def _case(self, chars: set[str]) -> frozenset[str]:
        if not self.icase:
            return frozenset(chars)
        return frozenset(chars | {c.lower() for c in chars} | {c.upper() for c in chars})

    def first(self, items: list[tuple[Any, Any]]) -> frozenset[str]:
        """Characters a match of ``items`` can start with (conservative)."""
        out: set[str] = set()
        for op, av in items:
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
                out |= self.first(list(av[2]))
                if av[0] > 0:
                    return frozenset(out)
                continue
            if op == _c.SUBPATTERN or op == _c.ATOMIC_GROUP:
                sub = list(av[3]) if op == _c.SUBPATTERN else list(av)
                out |= self.first(sub)
                if _width(sub)[0] > 0:
                    return frozenset(out)
                continue
            if op == _c.BRANCH:
                for branch in av[1]:
                    out |= self.first(list(branch))
                if min(_width(list(b))[0] for b in av[1]) > 0:
                    return frozenset(out)
                continue
            return frozenset(out | self.chars(op, av))
        return frozenset(out)

    def sequence(self, items: list[tuple[Any, Any]], *, nested: bool) -> None:
        """Check one sequence; ``nested``: it sits inside a repeat that can run more than once."""
        open_sets: list[frozenset[str]] = []  # unbounded repeats not yet closed by a required item
        for op, av in items:
            if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
                raise UnsafePattern(
                    "uses a back-reference, which the gateway cannot run in linear time",
                    "match the text itself instead of referring back to a group",
                )
            if op in _REPEATS:
                lo, hi, body = av[0], av[1], list(av[2])
                if hi > 1:
                    self._repeat_body(body)
                self.sequence(body, nested=nested or hi > 1)
                if hi == MAXREPEAT:
                    here = self.first(body)
                    if any(here & s for s in open_sets):
                        raise UnsafePattern(
                            "has two unbounded repeats that can match the same characters with nothing"
                            " required between them (quadratic backtracking)",
                            "merge them into one repeat, or bound one, e.g. \\d{1,20}",
                        )
                    open_sets.append(here)
                if lo > 0 and hi != MAXREPEAT:
                    open_sets.clear()
                continue
            if op == _c.POSSESSIVE_REPEAT or op == _c.ATOMIC_GROUP:
                open_sets.clear()
                continue  # never backtracks into itself
            for sub in _children(op, av):
                self.sequence(sub, nested=nested)
            if op not in (_c.AT, _c.ASSERT, _c.ASSERT_NOT) and _width([(op, av)])[0] > 0:
                open_sets.clear()

    def _repeat_body(self, body: list[tuple[Any, Any]]) -> None:
        if _width(body)[0] == 0:
            raise UnsafePattern(
                "repeats something that can match the empty string (e.g. (a?)*), exponential backtracking",
                "make the repeated part require at least one character",
            )
        for op, av in _walk(body):
            if op in _REPEATS and av[0] != av[1]:
                raise UnsafePattern(
                    "has a repeat inside a repeat (e.g. (a+)+ or (\\w+\\s?)*), which backtracks exponentially"
                    " on text that almost matches",
                    "repeat a fixed-length unit, or use one flat repeat such as [\\w\\s]{1,64}",
                )
            if op == _c.BRANCH:
                seen: set[str] = set()
                for branch in av[1]:
                    chars = self.first(list(branch))
                    if chars & seen:
                        raise UnsafePattern(
                            "repeats an alternation whose branches can start with the same character"
                            " (e.g. (a|ab)+), which backtracks exponentially",
                            "make the alternatives start differently, or use a character class",
                        )
                    seen |= chars


def _category(name: Any) -> set[str]:
    if name in _CATEGORY:
        test = _CATEGORY[name]
        return {ch for ch in _ALPHABET if test(ch)}
    if name in _NOT_CATEGORY:
        return set(_ALPHABET) - _category(_NOT_CATEGORY[name])
    return set(_ALPHABET)
