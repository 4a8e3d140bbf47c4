"""Scanning pieces alone and joined, and redacting the spans found."""

from __future__ import annotations

import base64
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NamedTuple

from claudegate_gateway.filters.matchers import _Matcher, _Text
from claudegate_gateway.filters.normalise import _fold, _Map, _normalise, _offset_map, needs_normalising
from claudegate_gateway.filters.walker import _B64, _FIXED, _KEY, _KEY_KINDS, Path, _Piece

# (piece index, start, end) in that piece's normalised text
_Part = tuple[int, int, int]


class _Hit(NamedTuple):
    sig: tuple[_Part, ...]  # the full match, for counting distinct matches
    parts: tuple[_Part, ...]  # what to redact


# Between the pieces of a pair join: a control character, so no normalised
# piece can contain it (normalisation removes them), it is not a word
# character, a digit or whitespace, and no detector's character class holds
# it. To every look-around it is a boundary, like the end of a string.
_STOP = "\x00"


class _JoinText:
    """Pieces as one text (``seps[k]`` before piece k), with where each piece starts in it."""

    __slots__ = ("lens", "offs", "t")

    stops = False

    def __init__(self, texts: list[str], sep: str) -> None:
        self.t = _Text(sep.join(texts))
        self.lens = [len(t) for t in texts]
        self.offs = list(accumulate((n + len(sep) for n in self.lens[:-1]), initial=0)) if texts else []

    def inside_one(self, a: int, b: int) -> bool:
        k = bisect_right(self.offs, a) - 1
        return k >= 0 and b <= self.offs[k] + self.lens[k]

    def parts(self, a: int, b: int) -> list[_Part]:
        """The pieces [a, b) touches, as (piece, start, end) in piece offsets."""
        out: list[_Part] = []
        offs, lens = self.offs, self.lens
        k = max(bisect_right(offs, a) - 1, 0)
        while k < len(offs) and offs[k] < b:
            s, e = max(a, offs[k]), min(b, offs[k] + lens[k])
            if e > s:
                out.append((k, s - offs[k], e - offs[k]))
            k += 1
        return out


class _View:
    """The pieces of one view (folded or not): alone, glued, paired and space-joined.

    * ``j0`` glues every value: a secret split over any number of pieces;
    * ``pairs`` glue runs of 2, 3 and 4 neighbours and put a hard stop
      (:data:`_STOP`) around each run, once for every alignment (so every
      window of 2 to :data:`_MAX_RUN` consecutive values is one run in one
      join). In ``j0`` the text around a split secret touches it
      (``AKIA..`` + ``..MPLE`` + ``xyz`` reads ``..MPLExyz``, no longer a
      whole token; a digit after a split card makes it a longer number); in
      a run join it ends where the pieces end, whatever the next piece
      starts with. Built only when a matcher's gate holds on ``j0`` (rare);
    * ``j1`` joins with a space and keeps keys, so a label key meets its value.

    Dict keys (and fixed values, see _Scan) are left out of the glued joins:
    a key sits between the values of a tool input, and gluing values is what
    catches a secret split across them.
    """

    __slots__ = ("_pairs", "_values", "j0", "j1", "single", "texts")

    def __init__(self, texts: list[str], is_key: list[bool]) -> None:
        self.texts = texts
        self.single = len(texts) == 1
        self.j1 = _JoinText(texts, " ")
        self.j0 = self.j1
        self._values: list[str] = []
        self._pairs: tuple[_RunJoin, ...] | None = () if self.single else None
        if not self.single:
            self._values = ["" if key else t for t, key in zip(texts, is_key, strict=True)]
            self.j0 = _JoinText(self._values, "")

    @property
    def pairs(self) -> tuple[_RunJoin, ...]:
        if self._pairs is None:
            j0, values = self.j0, self._values
            # Pieces with text, in order; keys and empty pieces are skipped so
            # a run is of neighbouring values.
            live = [k for k, t in enumerate(values) if t]
            starts = [j0.offs[k] for k in live]  # where each live piece starts in j0
            self._pairs = tuple(
                # A stop before every live piece of rank offset, offset + size, ... (never the first).
                _RunJoin(j0, starts[offset or size :: size])
                for size in range(2, min(_MAX_RUN, len(live)) + 1)
                for offset in range(size)
            )
        return self._pairs


class _RunJoin:
    """``j0`` with a stop inserted at each of ``cuts`` (positions in j0): runs of pieces.

    Built with one C-level join per run join, not a loop over pieces: with
    runs of up to :data:`_MAX_RUN` there are _MAX_RUN²/2 of them. Positions
    map back to j0 (and so to pieces) only for matches, which are rare.
    """

    __slots__ = ("base", "stops_at", "t")
    stops = True  # a match holding a stop is not one (see _in_own_segment)

    def __init__(self, base: _JoinText, cuts: list[int]) -> None:
        self.base = base
        text = base.t.s
        bounds = [0, *cuts, len(text)]
        self.t = _Text(_STOP.join([text[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]))
        self.stops_at = [c + i for i, c in enumerate(cuts)]  # where each stop sits in this text

    def _base(self, a: int, b: int) -> tuple[int, int]:
        # For a span holding no stop (any other is dropped by the caller) every
        # position is shifted by the number of stops before it.
        n = bisect_right(self.stops_at, a)
        return a - n, b - n

    def inside_one(self, a: int, b: int) -> bool:
        return self.base.inside_one(*self._base(a, b))

    def parts(self, a: int, b: int) -> list[_Part]:
        return self.base.parts(*self._base(a, b))


# Runs of up to this many pieces are joined with stops around them. Before
# runs of three and four, a secret cut in three with a word character on both
# sides (``x`` + ``AKIAIOSF`` + ``ODNN7`` + ``EXAMPLE`` + ``x``) matched in no
# join at all; runs of up to 8 catch one cut in 5 to 8 pieces the same way.
# The run joins are _MAX_RUN²/2 texts the size of the body, scanned only when
# a matcher's gate holds on the glued text: linear in the body for this bound
# (bench/split_join.py). A secret in more pieces, with word characters
# touching both ends, is still only seen by ``j0``/``j1`` (see the README).
_MAX_RUN = 8


def _in_own_segment(m: _Matcher, text: str, fa: int, fb: int) -> bool:
    """A pair join's match is one only if its pair, alone, has it.

    The stop must neither create a match (taken for a character by ``.``,
    ``\\S`` or ``[^x]``, or seen by a positive look-around) nor be needed:
    so the match is found again in the pair's own text, where the stops are
    the ends of the string. Matches are rare; this runs only for them.
    """
    if _STOP in text[fa:fb]:
        return False
    start = text.rfind(_STOP, 0, fa) + 1
    end = text.find(_STOP, fb)
    end = len(text) if end < 0 else end
    segment = text[start:end]
    return any((a + start, b + start) == (fa, fb) for a, b, _, _ in m.find(segment, 0, len(segment)))


class _Scan:
    def __init__(self, pieces: list[_Piece], need_plain: bool) -> None:
        self.pieces = pieces
        base: list[str] = []
        folded: list[str] = []
        for _, _, text in pieces:
            if not needs_normalising(text):
                base.append(text)
                folded.append(text)
            else:
                text = _normalise(text)
                base.append(text)
                folded.append(_fold(text))
        self.base = base
        self.maps: dict[int, _Map | None] = {}
        # Glued: values. Keys never (they sit between values); fixed values
        # (names, ids, settings) only when there is nothing else, as in a
        # batch's fields outside params: glued to the text around them, a
        # greedy match running on into a role or a model name would turn a
        # redaction of the text into a block.
        only_fixed = all(p[0] == _FIXED or p[0] in _KEY_KINDS for p in pieces)
        is_key = [p[0] in _KEY_KINDS or (p[0] == _FIXED and not only_fixed) for p in pieces]
        self.views: dict[bool, _View] = {True: _View(folded, is_key)}
        if need_plain:
            self.views[False] = _View(base, is_key)

    def run(self, m: _Matcher) -> list[_Hit]:
        view = self.views[m.folded]
        if m.regions is not None:
            return self.run_regions(m, view, m.regions)
        g1 = m.gate(view.j1.t)
        g0 = g1 if view.single else m.gate(view.j0.t)
        if m.monotone and not (g0 or g1):
            return []
        hits: list[_Hit] = []
        for k, text in enumerate(view.texts):
            if text:
                for fa, fb, ra, rb in m.find(text, 0, len(text)):
                    hits.append(_Hit(((k, fa, fb),), ((k, ra, rb),)))
        if not view.single:
            if g0:
                self._joined(m, view.j0, hits, 0, len(view.j0.t.s))
            for jp in view.pairs:
                # A pair join holds j0's characters with stops added: a gate
                # true on it was true on j0, so it is tried only then.
                if g0 and m.gate(jp.t):
                    self._joined(m, jp, hits, 0, len(jp.t.s))
            if g1:
                self._joined(m, view.j1, hits, 0, len(view.j1.t.s))
        return hits

    def run_regions(
        self, m: _Matcher, view: _View, regions: Callable[[_Text], list[tuple[int, int]]]
    ) -> list[_Hit]:
        """Scan only inside the matcher's regions.

        Regions of the space-joined text cover every piece (keys included), so
        a piece is scanned only where a region overlaps it; the same regions
        bound the search for matches across pieces there. The glued join
        lacks keys, so it gets its own regions.
        """
        hits: list[_Hit] = []
        j1 = view.j1
        texts, offs, lens = view.texts, j1.offs, j1.lens
        for a, b in regions(j1.t):
            k = max(bisect_right(offs, a) - 1, 0)
            first = last = -1
            while k < len(texts) and offs[k] < b:
                la, lb = max(a - offs[k], 0), min(b - offs[k], lens[k])
                if lb > la:
                    if first < 0:
                        first = k
                    last = k
                    for fa, fb, ra, rb in m.find(texts[k], la, lb):
                        hits.append(_Hit(((k, fa, fb),), ((k, ra, rb),)))
                k += 1
            if last != first:  # the region spans pieces: look for matches across them
                self._joined(m, j1, hits, a, b)
        if not view.single:
            glued = regions(view.j0.t)
            for a, b in glued:
                if not view.j0.inside_one(a, b):
                    self._joined(m, view.j0, hits, a, b)
            # The run joins are j0 with stops added: no region there, none in them.
            for jt in view.pairs if glued else ():
                for a, b in regions(jt.t):
                    if not jt.inside_one(a, b):
                        self._joined(m, jt, hits, a, b)
        return hits

    @staticmethod
    def _joined(m: _Matcher, jt: _JoinText | _RunJoin, hits: list[_Hit], start: int, end: int) -> None:
        for fa, fb, ra, rb in m.find(jt.t.s, start, end):
            if jt.inside_one(fa, fb):
                continue  # inside one piece: the piece scan has it
            if jt.stops and not _in_own_segment(m, jt.t.s, fa, fb):
                continue
            sig = jt.parts(fa, fb)
            if sig:
                hits.append(_Hit(tuple(sig), tuple(jt.parts(ra, rb))))

    def original_span(self, k: int, a: int, b: int) -> tuple[int, int]:
        """A span of piece k's normalised text, in the original string."""
        text, view = self.pieces[k][2], self.base[k]
        if text is view or text == view:
            return a, b
        if k not in self.maps:
            self.maps[k] = _offset_map(text, view)
        omap = self.maps[k]
        return (0, len(text)) if omap is None else omap.span(a, b)


# Redaction


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    for a, b, label in spans:
        if merged and a < merged[-1][1]:
            pa, pb, pl = merged[-1]
            merged[-1] = (pa, max(pb, b), pl)
        else:
            merged.append((a, b, label))
    out: list[str] = []
    pos = 0
    for a, b, label in merged:
        out.append(text[pos:a])
        out.append(label)
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _container(copies: dict[Path, Any], path: Path) -> Any:
    """The copied container at `path`, copying (shallowly) each level once."""
    node = copies[()]
    for depth in range(1, len(path) + 1):
        sub = path[:depth]
        copied = copies.get(sub)
        if copied is None:
            original = node[path[depth - 1]]
            copied = dict(original) if isinstance(original, dict) else list(original)
            node[path[depth - 1]] = copied
            copies[sub] = copied
        node = copied
    return node


def _rebuild(body: dict[str, Any], edits: list[tuple[_Piece, str]]) -> dict[str, Any]:
    root = dict(body)
    copies: dict[Path, Any] = {(): root}
    renames: list[tuple[_Piece, str]] = []
    for piece, new in edits:
        kind, path, _ = piece
        if kind == _KEY:
            renames.append((piece, new))
            continue
        parent = _container(copies, path[:-1])
        if kind == _B64:
            new = base64.b64encode(new.encode("utf-8", "surrogateescape")).decode("ascii")
        parent[path[-1]] = new
    # Deepest first, after all value edits: paths above still use old names.
    renames.sort(key=lambda e: len(e[0][1]), reverse=True)
    for (_, path, old), new in renames:
        target = _container(copies, path)
        items = list(target.items())
        taken = {k for k, _ in items if k != old}
        name, n = new, 1
        while name in taken:
            n += 1
            name = f"{new}#{n}"
        target.clear()
        for k, v in items:
            target[name if k == old else k] = v
    return root


