"""Text normalisation: NFKC, default-ignorables removed, look-alikes folded; offsets mapped back."""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence

# Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt), ranges,
# plus the control characters (C0 but TAB, LF and CR; DEL; C1, NEL included):
# invisible on screen, so a NUL or an ESC inside a key splits it for a regex
# but not for whoever reads it back. TAB/LF/CR stay: they are the layout a
# PEM block or a "label: value" line is recognised by.
_CONTROL_RANGES: tuple[tuple[int, int], ...] = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F))
_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    *_CONTROL_RANGES,
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
    # Not Default_Ignorable, but format characters no font draws (interlinear
    # annotation anchor/separator/terminator): found splitting keys by the red team.
    (0xFFF9, 0xFFFB),
)


def _char_class(ranges: Sequence[tuple[int, int]]) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _to_ranges(codepoints: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in sorted(set(codepoints)):
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


_IGNORABLE_RE = re.compile(f"[{_char_class(_IGNORABLE_RANGES)}]+")
# Latin letters with diacritics and their ASCII letter ("Á" -> "A"): folded
# one char to one char (below), and a base stray marks may follow.
_LATIN_MARKED: dict[int, int] = {}
for _cp in range(0xC0, 0x2000):
    _parts = unicodedata.normalize("NFD", chr(_cp))
    if len(_parts) > 1 and _parts[0].isascii() and _parts[0].isalnum() and all(
        unicodedata.combining(c) for c in _parts[1:]
    ):
        _LATIN_MARKED[_cp] = ord(_parts[0])
# Combining marks still standing after NFKC on printable ASCII or a marked
# Latin letter (no precomposed form exists: "Q" + U+0301, "_" + U+0301, or a
# second mark on "Á"): a reader sees the character, a regex a foreign one
# inside the key. Removed (red team round 3); marks on other scripts' letters
# are the text's own and stay.
# The combining-mark blocks, whole: code points this Python's Unicode tables do not
# know yet (U+1ACF in 14.0) are marks on a newer client and are removed too.
_MARK_BLOCKS = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
_STRAY_MARKS_RE = re.compile(
    "(?<=[\\x20-\\x7e" + _char_class(_to_ranges(list(_LATIN_MARKED))) + "])"
    "[" + _char_class(_MARK_BLOCKS) + "]+"
)
# The ASCII fast path (ASCII text is already NFKC) must still drop these.
_CONTROL_RE = re.compile(f"[{_char_class(_CONTROL_RANGES)}]")


def needs_normalising(s: str) -> bool:
    """False for text rules may see as it is: ASCII without control characters."""
    return not s.isascii() or _CONTROL_RE.search(s) is not None


def is_normal(s: str) -> bool:
    """Whether normalising ``s`` leaves it as it is (C speed: prose in any script, mostly)."""
    return (
        _IGNORABLE_RE.search(s) is None
        and unicodedata.is_normalized("NFKC", s)
        and _STRAY_MARKS_RE.search(s) is None
    )

# Look-alikes NFKC leaves alone -> ASCII. One char to one char, so offsets hold.
_FOLD_PAIRS = (
    # Cyrillic
    "AА BВ EЕ KК MМ HН OО PР CС TТ XХ YУ SЅ IІ JЈ QԚ WԜ YҮ IӀ "
    "aа eе oо pр cс yу xх sѕ iі jј dԁ qԛ wԝ hһ yү lӏ "
    # Greek
    "AΑ BΒ EΕ ZΖ HΗ IΙ KΚ MΜ NΝ OΟ PΡ TΤ YΥ XΧ oο vν iι pρ aα kκ uυ xχ "
    # Latin / other
    "iı Iİ gɡ lǀ oօ "
    # dashes and minus signs
    "-‐ -‑ -‒ -– -— -― -− -⁃ -˗ -﹘"
)
_FOLD: dict[int, int] = {ord(p[1]): ord(p[0]) for p in _FOLD_PAIRS.split()}
# Latin letters with diacritics -> the ASCII letter: "A" + U+0301 composes
# to "Á" under NFKC, which a reader takes for the A of a key.
for _cp, _base in _LATIN_MARKED.items():
    _FOLD.setdefault(_cp, _base)


@functools.cache
def _special_tables() -> tuple[re.Pattern[str], frozenset[str]]:
    """Characters that need per-unit NFKC work, computed once (~25 ms, when a policy redacts).

    Returns a regex matching one "unit" (a special character plus the
    combining and ignorable characters that follow it) and the set of
    combining ("attaching") characters that compose with what precedes them.
    """
    attach: set[int] = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V, T jamo
    unstable: list[int] = []
    scan = (range(0x80, 0xD800), range(0xE000, 0x20000), range(0x2F800, 0x2FA20), range(0xE0000, 0xE1000))
    for block in scan:
        for cp in block:
            ch = chr(cp)
            if unicodedata.combining(ch):
                attach.add(cp)
            dec = unicodedata.decomposition(ch)
            if dec and not dec.startswith("<"):
                parts = dec.split()
                if len(parts) == 2:
                    attach.add(int(parts[1], 16))
            if not unicodedata.is_normalized("NFKC", ch):
                unstable.append(cp)
    for cp in unstable:
        norm = unicodedata.normalize("NFKC", chr(cp))
        if norm and (ord(norm[0]) in attach or unicodedata.combining(norm[0])):
            attach.add(cp)
    # Everything _STRAY_MARKS_RE may remove attaches, so a unit holds it and the offset
    # map rebuilds the view exactly (an unassigned mark used to force whole-string redaction).
    attach.update(cp for a, b in _MARK_BLOCKS for cp in range(a, b + 1))
    ignorable = [cp for a, b in _IGNORABLE_RANGES for cp in range(a, b + 1)]
    special = _to_ranges([*unstable, *ignorable, *attach])
    # A unit runs on through marks and ignorables, so marks separated by
    # zero-width characters still compose / reorder together as in the
    # whole-string normalisation.
    trailing = _to_ranges([*attach, *ignorable])
    unit = re.compile(f"[{_char_class(special)}][{_char_class(trailing)}]*")
    return unit, frozenset(chr(cp) for cp in attach)


class _Map:
    """Normalised offset -> original offset.

    Entry k covers normalised [vstart[k], vstart[k+1]). A bulk entry
    (oend == -1) is copied text: offsets shift by a constant. A unit entry
    maps every character it produced to the whole original unit.
    """

    __slots__ = ("oend", "ostart", "vstart")

    def __init__(self, vstart: list[int], ostart: list[int], oend: list[int]) -> None:
        self.vstart = vstart
        self.ostart = ostart
        self.oend = oend

    def span(self, a: int, b: int) -> tuple[int, int]:
        k = bisect_right(self.vstart, a) - 1
        oa = self.ostart[k] + (a - self.vstart[k]) if self.oend[k] < 0 else self.ostart[k]
        k = bisect_right(self.vstart, b - 1) - 1
        ob = self.ostart[k] + (b - self.vstart[k]) if self.oend[k] < 0 else self.oend[k]
        return oa, ob


def _normalise(s: str) -> str:
    """The text rules see: NFKC with default-ignorables removed. C speed throughout.

    Callers skip ASCII strings (already normal). The offset map back to ``s``
    is only needed to redact, so it is built later by :func:`_offset_map`.
    """
    if _IGNORABLE_RE.search(s) is None:
        if unicodedata.is_normalized("NFKC", s):
            return _STRAY_MARKS_RE.sub("", s)
    else:
        s = _IGNORABLE_RE.sub("", s)
    return _STRAY_MARKS_RE.sub("", _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", s)))


_MAX_MAP_UNITS = 200_000


def _offset_map(s: str, view: str) -> _Map | None:
    """Map offsets of ``view == _normalise(s)`` back into ``s``.

    Rebuilds the view one unit at a time (a character needing work plus the
    combining marks after it; plain text in between is copied in bulk). Returns
    None when that is not exact (per-unit and whole-string NFKC differ, which
    takes exotic combining sequences) or too costly (a string made mostly of
    special characters): the caller then redacts the whole string.
    """
    rebuilt = normalise_mapped(s)
    if rebuilt is None or rebuilt[0] != view:
        return None
    return rebuilt[1]


def normalise_mapped(s: str) -> tuple[str, _Map] | None:
    """``s`` normalised one unit at a time, and the exact map of its offsets back into ``s``.

    The same text as :func:`_normalise` but for exotic combining sequences
    (where per-unit and whole-string NFKC differ; both are read alike by a
    person). Used where the map must always hold (response redaction). None
    when ``s`` holds more than ``_MAX_MAP_UNITS`` characters needing work.
    """
    unit_re, attach = _special_tables()
    if unit_re.subn("", s)[1] > _MAX_MAP_UNITS:
        return None
    parts: list[str] = []
    vstart: list[int] = []
    ostart: list[int] = []
    oend: list[int] = []
    v = last = 0
    for m in unit_re.finditer(s):
        a, b = m.span()
        text = _IGNORABLE_RE.sub("", s[a:b])
        if a > last and text and text[0] in attach:
            a -= 1  # pull the base character into the unit so it composes
            text = s[a] + text
        if a > last:
            parts.append(s[last:a])
            vstart.append(v)
            ostart.append(last)
            oend.append(-1)
            v += a - last
        if text:
            text = _STRAY_MARKS_RE.sub("", _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", text)))
        if text:
            parts.append(text)
            vstart.append(v)
            ostart.append(a)
            oend.append(b)
            v += len(text)
        last = b
    if last < len(s):
        parts.append(s[last:])
        vstart.append(v)
        ostart.append(last)
        oend.append(-1)
    return "".join(parts), _Map(vstart, ostart, oend)


_FOLD_RE = re.compile("[" + "".join(f"\\U{cp:08x}" for cp in sorted(_FOLD)) + "]")


def _fold(s: str) -> str:
    return s.translate(_FOLD) if _FOLD_RE.search(s) else s


