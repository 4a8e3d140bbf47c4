"""Request content filters: secret detectors and operator regex rules.

The proxy calls :meth:`FilterPolicy.apply` on every parsed Messages request
body before it goes upstream. Standard library only (the gateway image is
minimal); the one import from this package is :class:`ConfigError`.

Config (a list under ``filters:`` in the gateway YAML)::

    filters:
      - name: secrets              # used in audit verdicts and [REDACTED:<name>]
        detectors: [all]           # or any of: anthropic_key, openai_key,
                                   # aws_access_key, aws_secret_key, github_token,
                                   # private_key, card_number
        action: redact             # block (default) | redact
      - name: no-project-x
        pattern: 'project\\s*x'     # Python regex, case-insensitive, on normalised text
        action: block
        status: 403                # 400 invalid_request_error (default) | 403 permission_error

Each rule has a ``name`` and exactly one of ``detectors`` / ``pattern``.
``status`` is only allowed with ``action: block``. Names are unique,
1-64 characters of ``A-Z a-z 0-9 _ . -``.

Absent vs empty: :meth:`FilterPolicy.from_config` builds exactly the rules it
is given, so ``from_config([])`` is a policy with NO rules (``filters: []``
written explicitly switches filtering off). When the ``filters`` key is absent
from the YAML the gateway uses :meth:`FilterPolicy.default` instead: one rule
``secrets`` with every detector (card numbers included) and action ``block``.

What is inspected (in an Anthropic Messages body):

* ``system`` (string or text blocks) and every ``messages[].content``
  (string or blocks);
* ``text`` blocks; ``tool_use`` / ``server_tool_use`` / ``mcp_tool_use``
  ``input``, walked fully: every string, every dict key, and integers of
  13-20 digits; ``tool_result`` content (string or nested blocks);
* ``document`` blocks: ``text`` sources, ``content`` sources (nested blocks),
  ``base64`` sources whose ``media_type`` is ``text/plain`` (decoded, scanned,
  re-encoded if redacted), plus ``title`` / ``context``; ``url`` sources of
  documents and images (a token in a URL would be fetched upstream);
* block types this module does not know (search results, server tool
  results, future types): every string field except structural / opaque ones
  (``type``, ``id``, ``tool_use_id``, ``signature``, ``data``, ``media_type``,
  ``cache_control``, ``citations``, ``encrypted_*``, ``file_id``);
* ``tools[].description`` and every ``description`` inside ``input_schema``.

Never scanned: base64 image data and non-text base64 documents (opaque
binary), ``thinking`` / ``redacted_thinking`` blocks (model output carrying a
signature that redaction would break).

Normalisation (what makes case, Unicode and formatting tricks fail): each
string is NFKC-normalised (fullwidth letters, ligatures, circled and
mathematical letters, compatibility spaces, etc.), default-ignorable code
points are removed (zero-width space/joiners U+200B-U+200D, word joiner
U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi controls, variation selectors,
tag characters, ...), and common Cyrillic/Greek/Latin look-alikes and
Unicode dashes are folded to their ASCII twins. Detectors and ASCII regex
rules see the folded text; a regex rule with non-ASCII characters (or
``\\u``/``\\x``/``\\N`` escapes) sees the NFKC text without the look-alike
fold, so ``pattern: 'секрет'`` still works. Regex rules are case-insensitive.
JSON escapes need nothing: the body is already decoded by ``json.loads``.
A rule ``pattern`` that NFKC would change is refused at load (it could never
match normalised text).

Detectors (precise rather than greedy):

* ``anthropic_key``: ``sk-ant-<kind><NN>-`` + 32+ base64url characters
  (api03, admin01, ...);
* ``openai_key``: ``sk-``, ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-`` + 20+
  characters that look random (digits, upper and lower case, a 16+ run),
  not preceded by a word character (so ``task-...`` never counts);
* ``aws_access_key``: ``AKIA``/``ASIA`` + 16 upper-case letters/digits, as a
  whole token; ``aws_secret_key``: 40 base64 characters after a label
  (``aws_secret_access_key``, ``AWS_SECRET_ACCESS_KEY``, ``SecretAccessKey``,
  ``aws_secret_key``...) and ``=``, ``:``, ``=>`` or whitespace;
* ``github_token``: ``ghp_ gho_ ghu_ ghs_ ghr_`` + 36+, ``github_pat_`` + 50+;
* ``private_key``: a PEM ``-----BEGIN ... PRIVATE KEY-----`` block (any case,
  RSA/EC/DSA/OPENSSH/ENCRYPTED/PGP ... BLOCK) through its END line, or the
  key-looking lines after a header whose END is missing;
* ``card_number``: 13-19 digits, optionally grouped by single spaces or
  hyphens, passing Luhn, a known brand prefix with a matching length (Visa,
  Mastercard incl. 2-series, Amex, Discover/UnionPay, JCB, Diners, Maestro),
  and not one repeated digit. A card followed by a CVV or inside a short list
  of numbers is found by trying whole groups of 3+ digits. Runs of 32+ groups
  are treated as data and skipped. Any Unicode decimal digits count.

Split content: besides every string on its own, all strings of the request
are scanned as one text in document order (system, messages, then tools),
joined once with nothing between them and once with a space, so a secret or a
phrase split across two blocks, two messages, or two values of a tool input
still matches. Dict keys are left out of the glued join (a key sits between
two values) but kept in the spaced one (so a label key meets its value). The
whole-request joins contain every per-message join, so those are not scanned
separately. A match that crosses a piece boundary is redacted in every piece
it touches (each part replaced by the marker; a neighbouring block can lose a
few characters), a blocking rule simply blocks. Gluing can occasionally join
two innocent pieces into a match (``...project`` + ``x...``): the price of the
guarantee.

Redaction replaces each matched span of the ORIGINAL string with
``[REDACTED:<rule name>]``; offsets found in the normalised text are mapped
back, so zero-width padding inside a secret goes with it. For the labelled
AWS secret only the 40-character value is replaced, the label stays. A key
of a tool-input dict is renamed (``#2``... appended on a clash), an integer
replaced by the marker string. If the offsets of a non-ASCII string cannot be
mapped back exactly (exotic combining sequences, or 200k+ special
characters), the whole string is replaced: fail closed.

Results never carry matched text: a :class:`Verdict` holds the rule name,
its action, a match count and the names of detectors that fired, and
``repr(FilterResult)`` leaves the body out.

Performance: strings are gathered without copying the body; ASCII strings
skip normalisation and the rest are normalised in C (the offset map is built
only when redacting). Each detector first runs a literal "gate" over the two
joined texts (every detector regex starts with a literal), the card detector
scans only digit regions and the AWS-secret one only windows around
"secret"; the real matchers run only when a gate fires. Operator patterns
that begin with a plain word are gated by one substring test on the lower-
cased text. A redacted body copies only the containers on the way to a
changed string. All work is linear in the body: about 50-150 ms per MB of
adversarial text (zero-width padding, CJK, walls of digits or PEM headers),
tens of microseconds for a typical 2 KB request; a caller may want to run
very large bodies in an executor. Operator regexes run on Python's
backtracking ``re``: keep them simple (no nested quantifiers).

Not covered (by design or left for later): look-alikes beyond the folded
Cyrillic/Greek set (NFKC handles compatibility forms, not confusables in
general); a card written with one digit per group inside a longer run, or
hidden in a run of 32+ numbers; secrets spelled out, encoded (base64, hex) or
split with visible characters; ``thinking`` blocks.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .config import ConfigError

__all__ = ["DETECTORS", "FilterPolicy", "FilterResult", "Verdict"]

# --------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Verdict:
    """One rule that fired. Never holds matched text.

    ``detectors`` (names of the detectors that fired, for detector rules) is
    extra audit detail; it is left out of ``==`` so a verdict still compares
    as the (rule, action, matches) triple.
    """

    rule: str
    action: str
    matches: int
    detectors: tuple[str, ...] = field(default=(), compare=False)


_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error"}


@dataclass
class FilterResult:
    """What :meth:`FilterPolicy.apply` decided.

    ``body`` is the input itself when nothing changed (and when blocked); when
    redacted it is a new top-level dict whose changed branches are copies and
    whose other branches are shared with the input: treat both as read-only.
    It is left out of ``repr`` so logging a result cannot leak the request.
    """

    body: dict[str, Any] = field(repr=False)
    changed: bool
    blocked: Verdict | None
    status: int  # 400 / 403 when blocked, 200 otherwise
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def error_type(self) -> str:
        """Anthropic error type for the block status (``invalid_request_error`` / ``permission_error``)."""
        return _ERROR_TYPES.get(self.status, "invalid_request_error")

    @property
    def message(self) -> str:
        """Client-facing text for a block; names the rule, never the content."""
        if self.blocked is None:
            return ""
        return f"request blocked by the gateway content filter (rule '{self.blocked.rule}')"


# --------------------------------------------------------------------------
# Normalisation

# Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt), ranges.
_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
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
            return s
    else:
        s = _IGNORABLE_RE.sub("", s)
    return _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", s))


_MAX_MAP_UNITS = 200_000


def _offset_map(s: str, view: str) -> _Map | None:
    """Map offsets of ``view == _normalise(s)`` back into ``s``.

    Rebuilds the view one unit at a time (a character needing work plus the
    combining marks after it; plain text in between is copied in bulk). Returns
    None when that is not exact (per-unit and whole-string NFKC differ, which
    takes exotic combining sequences) or too costly (a string made mostly of
    special characters): the caller then redacts the whole string.
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
            text = _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", text))
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
    if "".join(parts) != view:
        return None
    return _Map(vstart, ostart, oend)


_FOLD_RE = re.compile("[" + "".join(f"\\U{cp:08x}" for cp in sorted(_FOLD)) + "]")


def _fold(s: str) -> str:
    return s.translate(_FOLD) if _FOLD_RE.search(s) else s


# --------------------------------------------------------------------------
# Matchers

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
# is possessive, so each header costs at most the distance to the next dash
# run (many headers and no END cannot go quadratic). Truncated (no END): the
# lines or chunks that look like key material (16+ base64 characters, a
# short '='-padded tail, or a 'Proc-Type: ...' header), so prose after a
# pasted fragment survives.
_PEM_BODY = r"(?:\s+(?:[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9+/]{0,15}={1,2}|[A-Z][A-Za-z-]*:[ \t][^\n]*))*+"
_PRIVATE_KEY_RE = re.compile(rf"{_PEM_HEAD}(?:(?:[^-]|-(?!--)){{0,40000}}+{_PEM_TAIL}|{_PEM_BODY})")


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
        groups = [(base + g.start(), base + g.end(), [int(c) for c in g.group()])
                  for g in _DIGIT_GROUP.finditer(run.group())]
        total = sum(len(g[2]) for g in groups)
        if total <= 19 and _card_ok([d for g in groups for d in g[2]]):
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
                if _card_ok([d for g in groups[i:j + 1] for d in g[2]]):
                    hit = j
                    break
            if hit is None:
                i += 1
                continue
            a, b = groups[i][0], groups[hit][1]
            yield a, b, a, b
            i = hit + 1


_DETECTOR_LIST: tuple[_Matcher, ...] = (
    _Matcher("anthropic_key", _literal_gate("sk-ant-"),
             _regex_find(_ANTHROPIC_RE, lambda m: _distinct(m.group("b"), 8))),
    _Matcher("openai_key", _literal_gate("sk-"), _regex_find(_OPENAI_RE, _openai_ok)),
    _Matcher("aws_access_key", _literal_gate("AKIA|ASIA"),
             _regex_find(_AWS_ID_RE, lambda m: _distinct(m.group("b"), 6))),
    _Matcher("aws_secret_key", _literal_gate("secret", lower=True),
             _regex_find(_AWS_SECRET_RE, _aws_secret_ok, group="s"), regions=_secret_windows),
    _Matcher("github_token", _literal_gate("gh[pousr]_|github_pat_"),
             _regex_find(_GITHUB_RE, lambda m: _distinct(m.group("b") or m.group("p"), 8))),
    _Matcher("private_key", _literal_gate("private key", lower=True), _regex_find(_PRIVATE_KEY_RE)),
    _Matcher("card_number", _card_gate, _find_cards, regions=_card_regions),
)
_DETECTORS: dict[str, _Matcher] = {d.name: d for d in _DETECTOR_LIST}
DETECTORS: tuple[str, ...] = tuple(_DETECTORS)
"""Names accepted in a rule's ``detectors`` list (plus ``all``)."""

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


def _pattern_matcher(name: str, rx: re.Pattern[str]) -> _Matcher:
    def find(text: str, start: int, end: int) -> Iterator[_Found]:
        for m in rx.finditer(text, start, end):
            a, b = m.span()
            if a != b:
                yield a, b, a, b

    folded = rx.pattern.isascii() and _NON_ASCII_ESCAPE.search(rx.pattern) is None
    literal = _required_literal(rx.pattern) if folded else None
    if literal is not None:
        # On the folded view, a case-insensitive match of ASCII text lowers to
        # the literal; containment is monotone even when the regex is not.
        return _Matcher(name=name, gate=lambda t: literal in t.lower, find=find, monotone=True, folded=True)
    return _Matcher(
        name=name,
        gate=lambda t: any(True for _ in find(t.s, 0, len(t.s))),
        find=find,
        monotone=_CONTEXT_SENSITIVE.search(rx.pattern) is None,
        folded=folded,
    )


# --------------------------------------------------------------------------
# Collecting the strings of a request

_VALUE, _KEY, _B64, _NUM = range(4)
_M_STR, _M_KEY, _M_B64, _M_CONTENT, _M_BLOCK, _M_SOURCE, _M_JSON, _M_TOOL, _M_SCHEMA = range(9)

_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "mcp_tool_result"})
_SKIP_TYPES = frozenset({"thinking", "redacted_thinking"})
_SOURCE_TYPES = frozenset({"base64", "text", "content", "url", "file"})
_OPAQUE_KEYS = frozenset({
    "type", "id", "tool_use_id", "signature", "data", "media_type", "cache_control",
    "citations", "encrypted_content", "encrypted_index", "file_id",
})

Path = tuple[Any, ...]


# (kind, path, text): _VALUE: the string at path; _KEY: `text` is a key of the
# dict at path; _B64: the string at path is base64 of `text`; _NUM: the int at
# path, as digits. Plain tuples: this runs for every string of every request.
_Piece = tuple[int, Path, str]


def _big_int(v: Any) -> bool:
    """An integer that could be a card number (13-19 digits)."""
    return isinstance(v, int) and not isinstance(v, bool) and 10**12 <= abs(v) < 10**20


def _collect(body: Mapping[str, Any]) -> list[_Piece]:
    """Every scannable string, in document order, with where it lives."""
    pieces: list[_Piece] = []
    add = pieces.append
    stack: list[tuple[int, Any, Path]] = []
    push = stack.append
    pop = stack.pop
    tools = body.get("tools")
    if isinstance(tools, list):
        for i in range(len(tools) - 1, -1, -1):
            push((_M_TOOL, tools[i], ("tools", i)))
    messages = body.get("messages")
    if isinstance(messages, list):
        for i in range(len(messages) - 1, -1, -1):
            msg = messages[i]
            if isinstance(msg, dict) and "content" in msg:
                push((_M_CONTENT, msg["content"], ("messages", i, "content")))
    if "system" in body:
        push((_M_CONTENT, body["system"], ("system",)))

    while stack:
        mode, node, path = pop()
        if mode == _M_BLOCK:
            if isinstance(node, dict):
                kind = node.get("type")
                if kind == "text":
                    text = node.get("text")
                    if isinstance(text, str) and text:
                        add((_VALUE, (*path, "text"), text))
                else:
                    _push_block(node, kind, path, push)
                continue
            mode = _M_CONTENT  # a bare string or list where a block was expected
        # Containers: leading simple children are taken in place (the usual
        # case, and cheaper); from the first nested one on, children are
        # pushed in reverse so the order of pieces stays document order.
        if mode == _M_CONTENT:
            if isinstance(node, str):
                if node:
                    add((_VALUE, path, node))
            elif isinstance(node, list):
                n, i = len(node), 0
                while i < n:
                    block = node[i]
                    if isinstance(block, dict) and block.get("type") == "text":
                        text = block.get("text")
                        if isinstance(text, str) and text:
                            add((_VALUE, (*path, i, "text"), text))
                    elif isinstance(block, str):
                        if block:
                            add((_VALUE, (*path, i), block))
                    else:
                        break
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    push((_M_BLOCK, node[j], (*path, j)))
        elif mode == _M_JSON:
            if isinstance(node, str):
                if node:
                    add((_VALUE, path, node))
            elif isinstance(node, dict):
                items = list(node.items())
                n, i = len(items), 0
                while i < n:
                    k, v = items[i]
                    if isinstance(v, (dict, list)):
                        break
                    if isinstance(k, str) and k:
                        add((_KEY, path, k))
                    if isinstance(v, str):
                        if v:
                            add((_VALUE, (*path, k), v))
                    elif _big_int(v):
                        add((_NUM, (*path, k), str(v)))
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    k, v = items[j]
                    push((_M_JSON, v, (*path, k)))
                    if isinstance(k, str) and k:
                        push((_M_KEY, k, path))
            elif isinstance(node, list):
                n, i = len(node), 0
                while i < n:
                    v = node[i]
                    if isinstance(v, (dict, list)):
                        break
                    if isinstance(v, str):
                        if v:
                            add((_VALUE, (*path, i), v))
                    elif _big_int(v):
                        add((_NUM, (*path, i), str(v)))
                    i += 1
                for j in range(n - 1, i - 1, -1):
                    push((_M_JSON, node[j], (*path, j)))
            elif _big_int(node):
                add((_NUM, path, str(node)))
        elif mode == _M_STR:
            if isinstance(node, str) and node:
                add((_VALUE, path, node))
        elif mode == _M_KEY:
            add((_KEY, path, node))
        elif mode == _M_SOURCE:
            _push_source(node, path, push)
        elif mode == _M_B64:
            try:
                raw = base64.b64decode(node)
            except (binascii.Error, ValueError):
                continue  # not base64: upstream rejects it anyway
            text = raw.decode("utf-8", "surrogateescape")
            if text:
                add((_B64, path, text))
        elif mode == _M_TOOL:
            if isinstance(node, dict):
                if "input_schema" in node:
                    push((_M_SCHEMA, node["input_schema"], (*path, "input_schema")))
                push((_M_STR, node.get("description"), (*path, "description")))
        elif mode == _M_SCHEMA:
            if isinstance(node, dict):
                for k, v in reversed(node.items()):
                    if k == "description" and isinstance(v, str):
                        push((_M_STR, v, (*path, k)))
                    elif isinstance(v, (dict, list)):
                        push((_M_SCHEMA, v, (*path, k)))
            elif isinstance(node, list):
                for i in range(len(node) - 1, -1, -1):
                    push((_M_SCHEMA, node[i], (*path, i)))
    return pieces


def _push_block(
    node: dict[Any, Any], kind: Any, path: Path, push: Callable[[tuple[int, Any, Path]], None]
) -> None:
    if not isinstance(kind, str):
        kind = None  # missing or malformed: walk its fields like an unknown type
    if kind in _TOOL_USE_TYPES:
        if "input" in node:
            push((_M_JSON, node["input"], (*path, "input")))
    elif kind in _TOOL_RESULT_TYPES:
        if "content" in node:
            push((_M_CONTENT, node["content"], (*path, "content")))
    elif kind == "document" or kind == "image":
        if kind == "document":
            push((_M_STR, node.get("context"), (*path, "context")))
            push((_M_STR, node.get("title"), (*path, "title")))
        if "source" in node:
            push((_M_SOURCE, node["source"], (*path, "source")))
    elif kind in _SKIP_TYPES:
        return
    elif kind in _SOURCE_TYPES and ("data" in node or "url" in node):
        _push_source(node, path, push)
    else:
        for k, v in reversed(list(node.items())):
            if not isinstance(k, str) or k in _OPAQUE_KEYS:
                continue
            if isinstance(v, str):
                push((_M_STR, v, (*path, k)))
            elif isinstance(v, (dict, list)):
                push((_M_BLOCK, v, (*path, k)))


def _push_source(node: Any, path: Path, push: Callable[[tuple[int, Any, Path]], None]) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "text":
        push((_M_STR, node.get("data"), (*path, "data")))
    elif kind == "base64":
        data = node.get("data")
        if node.get("media_type") == "text/plain" and isinstance(data, str):
            push((_M_B64, data, (*path, "data")))
    elif kind == "content":
        if "content" in node:
            push((_M_CONTENT, node["content"], (*path, "content")))
    elif kind == "url":
        push((_M_STR, node.get("url"), (*path, "url")))


# --------------------------------------------------------------------------
# Scanning

# (piece index, start, end) in that piece's normalised text
_Part = tuple[int, int, int]


class _Hit(NamedTuple):
    sig: tuple[_Part, ...]  # the full match, for counting distinct matches
    parts: tuple[_Part, ...]  # what to redact


class _JoinText:
    """All pieces of a view as one text, with where each piece starts in it."""

    __slots__ = ("lens", "offs", "t")

    def __init__(self, texts: list[str], sep: str) -> None:
        self.t = _Text(sep.join(texts))
        self.lens = [len(t) for t in texts]
        self.offs: list[int] = []
        pos = 0
        for n in self.lens:
            self.offs.append(pos)
            pos += n + len(sep)

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
    """The pieces of one view (folded or not): alone, glued, and space-joined.

    Dict keys are left out of the glued join: a key sits between the values
    of a tool input, and gluing values is what catches a secret split across
    them. The space-joined text keeps keys so a label key meets its value.
    """

    __slots__ = ("j0", "j1", "single", "texts")

    def __init__(self, texts: list[str], is_key: list[bool]) -> None:
        self.texts = texts
        self.single = len(texts) == 1
        self.j1 = _JoinText(texts, " ")
        self.j0 = self.j1 if self.single else _JoinText(
            ["" if key else t for t, key in zip(texts, is_key, strict=True)], "")


class _Scan:
    def __init__(self, pieces: list[_Piece], need_plain: bool) -> None:
        self.pieces = pieces
        base: list[str] = []
        folded: list[str] = []
        for _, _, text in pieces:
            if text.isascii():
                base.append(text)
                folded.append(text)
            else:
                text = _normalise(text)
                base.append(text)
                folded.append(_fold(text))
        self.base = base
        self.maps: dict[int, _Map | None] = {}
        is_key = [p[0] == _KEY for p in pieces]
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
            j0 = view.j0
            for a, b in regions(j0.t):
                if not j0.inside_one(a, b):
                    self._joined(m, j0, hits, a, b)
        return hits

    @staticmethod
    def _joined(m: _Matcher, jt: _JoinText, hits: list[_Hit], start: int, end: int) -> None:
        for fa, fb, ra, rb in m.find(jt.t.s, start, end):
            if jt.inside_one(fa, fb):
                continue  # inside one piece: the piece scan has it
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


# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class _Rule:
    name: str
    action: str
    status: int
    matchers: tuple[_Matcher, ...]
    detector_rule: bool


_RULE_KEYS = ("name", "detectors", "pattern", "action", "status")
_ACTIONS = ("block", "redact")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _fail(source: str, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {problem}; {fix}")


def _suggest(value: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"known {what}: {', '.join(known)}"


class FilterPolicy:
    """An ordered set of rules; build with :meth:`from_config` or :meth:`default`."""

    __slots__ = ("_matchers", "_need_plain", "_rules")

    def __init__(self, rules: Sequence[_Rule] = ()) -> None:
        self._rules = tuple(rules)
        seen: dict[int, _Matcher] = {}
        for rule in self._rules:
            for m in rule.matchers:
                seen.setdefault(id(m), m)
        self._matchers = tuple(seen.values())
        self._need_plain = any(not m.folded for m in self._matchers)
        if any(r.action == "redact" for r in self._rules):
            _special_tables()  # build the redaction tables now, not on a request

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"FilterPolicy({', '.join(f'{r.name}:{r.action}' for r in self._rules)})"

    @classmethod
    def default(cls) -> FilterPolicy:
        """Every detector, action block, status 400 (used when ``filters`` is absent)."""
        return cls([_Rule("secrets", "block", 400, _DETECTOR_LIST, True)])

    @classmethod
    def from_config(cls, rules: Sequence[Mapping[str, Any]], source: str = "<config>") -> FilterPolicy:
        """Validate the ``filters`` list; ``[]`` gives a policy with no rules."""
        if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
            raise _fail(source, "filters", f"must be a list of rules, got {type(rules).__name__}",
                        "write each rule as a '- name: ...' item under filters:")
        built: list[_Rule] = []
        names: set[str] = set()
        for i, raw in enumerate(rules):
            rule = _parse_rule(raw, f"filters[{i}]", source)
            if rule.name in names:
                raise _fail(source, f"filters[{i}].name", f"duplicate rule name {rule.name!r}",
                            "give every rule its own name")
            names.add(rule.name)
            built.append(rule)
        return cls(built)

    def apply(self, body: dict[str, Any]) -> FilterResult:
        """Scan a parsed request body; never mutates it."""
        clean = FilterResult(body=body, changed=False, blocked=None, status=200, verdicts=[])
        if not self._rules or not isinstance(body, dict):
            return clean
        pieces = _collect(body)
        if not pieces:
            return clean
        scan = _Scan(pieces, self._need_plain)
        found: dict[int, list[_Hit]] = {}
        for m in self._matchers:
            hits = scan.run(m)
            if hits:
                found[id(m)] = hits
        if not found:
            return clean

        verdicts: list[Verdict] = []
        blocked: Verdict | None = None
        status = 200
        redactions: list[tuple[str, list[_Hit]]] = []
        for rule in self._rules:
            hits = [h for m in rule.matchers for h in found.get(id(m), ())]
            if not hits:
                continue
            fired = tuple(m.name for m in rule.matchers if id(m) in found) if rule.detector_rule else ()
            verdict = Verdict(rule.name, rule.action, len({h.sig for h in hits}), fired)
            verdicts.append(verdict)
            if rule.action == "block":
                if blocked is None:
                    blocked, status = verdict, rule.status
            else:
                redactions.append((rule.name, hits))
        if blocked is not None or not redactions:
            return FilterResult(body=body, changed=False, blocked=blocked, status=status, verdicts=verdicts)

        spans: dict[int, list[tuple[int, int, str]]] = {}
        for name, hits in redactions:
            label = f"[REDACTED:{name}]"
            for hit in hits:
                for k, a, b in hit.parts:
                    if b > a:
                        oa, ob = scan.original_span(k, a, b)
                        spans.setdefault(k, []).append((oa, ob, label))
        edits = [(pieces[k], _splice(pieces[k][2], sp)) for k, sp in spans.items()]
        edits = [(p, new) for p, new in edits if new != p[2]]
        if not edits:
            return FilterResult(body=body, changed=False, blocked=None, status=200, verdicts=verdicts)
        return FilterResult(body=_rebuild(body, edits), changed=True, blocked=None, status=200, verdicts=verdicts)


def _parse_rule(raw: Any, where: str, source: str) -> _Rule:
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be a mapping, got {type(raw).__name__}",
                    "give it a name and either detectors or pattern")
    for key in raw:
        if key not in _RULE_KEYS:
            hint = _suggest(str(key), _RULE_KEYS, "keys")
            if hint.startswith("did you mean"):
                hint = f"did you mean {where}.{hint.removeprefix('did you mean ')}"
            raise _fail(source, f"{where}.{key}", "unknown key", hint)

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        problem = "missing" if name is None else f"{name!r} is not a valid rule name"
        raise _fail(source, f"{where}.name", problem,
                    "use 1-64 letters, digits, '_', '.' or '-', e.g. name: no-project-x")

    action = raw.get("action", "block")
    if action not in _ACTIONS:
        raise _fail(source, f"{where}.action", f"{action!r} is not an action",
                    _suggest(str(action), _ACTIONS, "actions") + " (block or redact)")

    if "status" in raw:
        status = raw["status"]
        if action != "block":
            raise _fail(source, f"{where}.status", "status only applies to action: block",
                        "remove status, or set action: block")
        if not isinstance(status, int) or isinstance(status, bool) or status not in _ERROR_TYPES:
            raise _fail(source, f"{where}.status", f"{status!r} is not an allowed status",
                        "use 400 (invalid_request_error) or 403 (permission_error)")
    else:
        status = 400

    has_det, has_pat = "detectors" in raw, "pattern" in raw
    if has_det == has_pat:
        problem = "has both detectors and pattern" if has_det else "has neither detectors nor pattern"
        raise _fail(source, where, problem,
                    "give exactly one: detectors: [all] for secrets, or pattern: '<regex>' (one rule each)")
    if has_det:
        return _Rule(name, action, status, _parse_detectors(raw["detectors"], f"{where}.detectors", source), True)
    return _Rule(name, action, status, (_parse_pattern(name, raw["pattern"], f"{where}.pattern", source),), False)


def _parse_detectors(value: Any, where: str, source: str) -> tuple[_Matcher, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(source, where, f"must be a non-empty list, got {value!r}",
                    f"e.g. detectors: [all] or [{', '.join(DETECTORS[:2])}]")
    chosen: list[_Matcher] = []
    for j, name in enumerate(value):
        if name == "all":
            return _DETECTOR_LIST
        if not isinstance(name, str) or name not in _DETECTORS:
            raise _fail(source, f"{where}[{j}]", f"unknown detector {name!r}",
                        _suggest(str(name), (*DETECTORS, "all"), "detectors"))
        if _DETECTORS[name] not in chosen:
            chosen.append(_DETECTORS[name])
    return tuple(chosen)


def _parse_pattern(name: str, value: Any, where: str, source: str) -> _Matcher:
    if not isinstance(value, str) or not value:
        raise _fail(source, where, f"must be a non-empty string, got {value!r}",
                    "quote the regex in single quotes, e.g. pattern: 'project\\s*x'")
    try:
        rx = re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise _fail(source, where, f"not a valid regular expression ({exc})",
                    "fix the regex; escape literal ( ) [ ] . * + ? with a backslash") from None
    normal = _IGNORABLE_RE.sub("", unicodedata.normalize("NFKC", value))
    if normal != value:
        raise _fail(source, where, "contains characters that text normalisation removes or rewrites "
                    "(fullwidth/compatibility forms, zero-width characters), so it could never match",
                    f"write the plain form instead: {normal!r}")
    if any(m.start() == m.end() for probe in ("", "x", " x ") for m in rx.finditer(probe)):
        raise _fail(source, where, "can match the empty string, so it would fire on every request",
                    "make it require at least one character (e.g. use + instead of *)")
    return _pattern_matcher(name, rx)
