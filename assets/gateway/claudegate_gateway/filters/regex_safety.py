"""Load-time checks that keep operator regexes linear on Python's backtracking ``re``.

The gateway runs operator patterns on RE2 when it can (engine.py); these
checks are the guard for when it cannot, and run on both so that which
patterns are accepted never depends on the engine. Every operator pattern
is parsed with the standard library's own regex parser (``re._parser``:
the exact tree ``re.compile`` runs) and refused when its shape lets the
backtracking matcher go super-linear:

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
* bounded repeats in a row that can match the same characters with only
  optional items between them (``\\w{1,100}\\w{1,100}\\w{1,100}x``,
  ``a?a?a?a?a?a?a?a?aaaaaaaa``): each start tries every way of splitting the
  run between them, the product of their ranges (1.3 s on 300 letters for
  the first); refused when that product is over :data:`MAX_SPLITS`;
* back-references (not regular at all).

A bounded repeat alone (``\\w{1,64}``) is allowed: it costs at most its
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
# Ways one start may split a run between bounded repeats in a row: 256 is
# e.g. \d{1,16}\d{1,16}, or eight optional characters that could each match.
MAX_SPLITS = 256
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
    for items in _sequences(list(tree)):
        checker.splits(items)
    first = checker.first(list(tree))
    for item in _walk(list(tree)):
        op, av = item
        # Possessive repeats too: they do not backtrack, but each new start still rescans the run.
        if (op in _REPEATS or op == _c.POSSESSIVE_REPEAT) and av[1] == MAXREPEAT and checker.first(list(av[2])) & first:
            raise UnsafePattern(
                "has an unbounded repeat that can match the pattern's first character, so a long run of"
                " such characters is rescanned from every position (quadratic time)",
                "bound the repeat, e.g. \\w{1,64} instead of \\w+ or .{0,200} instead of .*",
            )


def max_width(pattern: str, flags: int = 0) -> int | None:
    """The most characters one match can span; None when unbounded."""
    width: int = _parser.parse(pattern, flags).getwidth()[1]
    return None if width >= MAXREPEAT else width


def _flat(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """``items`` with plain groups opened up: (?:ab)c is the sequence a b c."""
    out: list[tuple[Any, Any]] = []
    for op, av in items:
        if op == _c.SUBPATTERN:
            out.extend(_flat(list(av[3])))
        else:
            out.append((op, av))
    return out


def _sequences(items: list[tuple[Any, Any]]) -> Iterable[list[tuple[Any, Any]]]:
    """Every sequence in the pattern, groups opened up: the top level, each branch, each repeat's body."""
    flat = _flat(items)
    yield flat
    for op, av in flat:
        for sub in _children(op, av):
            yield from _sequences(sub)


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

    def sequence(
        self, items: list[tuple[Any, Any]], *, nested: bool, incoming: list[frozenset[str]] | None = None
    ) -> None:
        """Check one sequence; ``nested``: it sits inside a repeat that can run more than once.

        ``open_sets``: characters of unbounded repeats seen so far that the
        text since then could still have been matched by (no required item
        with other characters in between). An unbounded repeat reachable
        next -- directly, or first inside a group or branch -- whose
        characters meet one of them can split a run two ways at every
        position: quadratic.
        """
        open_sets: list[frozenset[str]] = list(incoming or ())  # from before the enclosing group
        for op, av in items:
            if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
                raise UnsafePattern(
                    "uses a back-reference, which the gateway cannot run in linear time",
                    "match the text itself instead of referring back to a group",
                )
            if op in _REPEATS:
                body = list(av[2])
                if av[1] > 1:
                    self._repeat_body(body)
                self.sequence(body, nested=nested or av[1] > 1, incoming=open_sets)
            else:
                for sub in _children(op, av):
                    self.sequence(sub, nested=nested, incoming=open_sets)
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            item = [(op, av)]
            lead = self._edge(item, reverse=False)
            if lead and any(lead & s for s in open_sets):
                raise UnsafePattern(
                    "has two unbounded repeats that can match the same characters with nothing"
                    " required between them that tells them apart (quadratic backtracking)",
                    "merge them into one repeat, or bound one, e.g. \\d{1,20}",
                )
            if _width(item)[0] > 0:
                chars = self._all_chars(item)
                open_sets = [s for s in open_sets if s & chars]  # a required item of other characters separates
            trail = self._edge(item, reverse=True)
            if trail:
                open_sets.append(trail)

    def splits(self, items: list[tuple[Any, Any]]) -> None:
        """Refuse bounded repeats in a row whose ways to split one run multiply past :data:`MAX_SPLITS`.

        ``chain``: (characters, number of lengths) of the variable-length
        repeats that the text since could still have been matched by, as in
        :meth:`sequence`; a required item of other characters ends it.
        """
        chain: list[tuple[frozenset[str], int]] = []
        for op, av in items:
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            chars = self._all_chars([(op, av)])
            if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
                lo, hi = _width([(op, av)])
                if hi != lo and hi < MAXREPEAT and op != _c.POSSESSIVE_REPEAT:
                    ways = hi - lo + 1
                    product = ways
                    for other, n in chain:
                        if other & chars:
                            product *= n
                    if product > MAX_SPLITS and product != ways:
                        raise UnsafePattern(
                            f"has bounded repeats in a row that can match the same characters, so each start"
                            f" tries up to {product} ways of splitting a run between them (polynomial"
                            " backtracking)",
                            "merge them into one repeat (\\w{2,200} for \\w{1,100}\\w{1,100}), or put a required"
                            " character of another kind between them",
                        )
                    if lo > 0:
                        chain = [e for e in chain if e[0] & chars]
                    chain.append((chars, ways))
                    continue
            if _width([(op, av)])[0] > 0:
                chain = [e for e in chain if e[0] & chars]

    def _edge(self, items: list[tuple[Any, Any]], *, reverse: bool) -> frozenset[str]:
        """Characters of the unbounded repeats a match of ``items`` can start (or end) with."""
        out: set[str] = set()
        for op, av in reversed(items) if reverse else items:
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
                body = list(av[2])
                out |= self._all_chars(body) if av[1] == MAXREPEAT else self._edge(body, reverse=reverse)
                if av[0] > 0 and _width(body)[0] > 0:
                    return frozenset(out)
                continue
            subs = _children(op, av)
            if not subs:
                return frozenset(out)  # one character: required
            for sub in subs:
                out |= self._edge(sub, reverse=reverse)
            if _width([(op, av)])[0] > 0:
                return frozenset(out)
        return frozenset(out)

    def _all_chars(self, items: list[tuple[Any, Any]]) -> frozenset[str]:
        """Every character a match of ``items`` can contain."""
        out: set[str] = set()
        for op, av in _walk(items):
            if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
                out |= self.chars(op, av)
        return frozenset(out)

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
