"""The incremental JSON decoder behind a tool input's response channel.

A tool input streams as JSON source in small pieces (``input_json_delta``,
often three characters each). Rules must read what the JSON *says* (string
contents with escapes decoded, numbers), so :class:`JsonDecoder` turns the
source into a *view*: one view character per decoded string character or
number character, and one separator (``SEP``) per character outside a
token (quotes, ``{}[],:``, whitespace) and before each number, so rules
see one token at a time. For each view character it keeps where it came
from in the source (``vs``/``ve``), the separator that starts its token
(``tok``) and what it is (``states``).

The decoder is incremental: each piece of source is decoded once, as it
arrives (a ``\\uXXXX`` escape or a surrogate pair split across pieces
waits for its rest), and the channel drops what it released from the front
(:meth:`JsonDecoder.drop`). All offsets are absolute (from the start of
the block), so nothing is rewritten when the front goes. The work per
source character is O(1) amortised, whatever the token: a string, a key,
a number thousands of digits long or a run of whitespace; what the channel
holds back is bounded by its window (response.py), not by the token.
"""

from __future__ import annotations

SEP = "\x00"
OUT, STR, NUM, NUM_LEAD = range(4)  # NUM_LEAD: a number's first digit
NUMBER_STATES = frozenset({NUM, NUM_LEAD})
_DIGITS = frozenset("0123456789")  # ASCII only: a Unicode digit outside a string is not a number
_NUM_CHARS = frozenset("0123456789+-.eE")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JsonDecoder:
    """Decodes the source a channel holds (``src``, passed in each call) into the view."""

    __slots__ = ("base", "chars", "lead", "pos", "state", "states", "tok", "tok_at", "vbase", "ve", "vs")

    def __init__(self) -> None:
        self.state = OUT
        self.base = 0  # absolute source offset of the channel's pending text
        self.pos = 0  # pending text decoded up to here (never inside an escape)
        self.vbase = 0  # absolute view index of chars[0]
        self.chars: list[str] = []
        self.vs: list[int] = []  # absolute source start of each view character
        self.ve: list[int] = []  # absolute source end
        self.tok: list[int] = []  # absolute view index of the character's token separator
        self.states: list[int] = []
        self.tok_at = -1
        self.lead = False  # the next digit is the number's first

    def _put(self, ch: str, a: int, b: int, st: int) -> None:
        self.chars.append(ch)
        self.vs.append(self.base + a)
        self.ve.append(self.base + b)
        self.tok.append(self.tok_at)
        self.states.append(st)

    def _sep(self, a: int, b: int) -> None:
        self.tok_at = self.vbase + len(self.chars)
        self._put(SEP, a, b, OUT)

    def decode(self, src: str) -> None:
        """Decode ``src[pos:]`` (``src``: the channel's pending text); stops before a half escape."""
        i, n = self.pos, len(src)
        state = self.state
        while i < n:
            c = src[i]
            if state == OUT:
                if c == '"':
                    self._sep(i, i + 1)
                    state = STR
                    i += 1
                elif c == "-" or c in _DIGITS:
                    self._sep(i, i)  # the number's own separator: it spans no source
                    state = NUM
                    self.lead = True
                else:
                    self._sep(i, i + 1)
                    i += 1
                self.pos = i
                continue
            if state in NUMBER_STATES:
                if c in _NUM_CHARS:
                    lead = self.lead and c in _DIGITS
                    if lead:
                        self.lead = False
                    self._put(c, i, i + 1, NUM_LEAD if lead else NUM)
                    i += 1
                    self.pos = i
                else:
                    state = OUT
                continue
            # in a string
            if c == '"':
                self._sep(i, i + 1)
                state = OUT
                i += 1
                self.pos = i
                continue
            if c != "\\":
                self._put(c, i, i + 1, STR)
                i += 1
                self.pos = i
                continue
            step = self._escape(src, i)
            if not step:
                break  # the rest of the escape is still to come
            i += step
            self.pos = i
        self.state = state

    def _escape(self, src: str, i: int) -> int:
        """Decode the escape at ``src[i]``; its length, or 0 when it is not complete yet."""
        n = len(src)
        if i + 1 >= n:
            return 0
        e = src[i + 1]
        if e != "u":
            self._put(_ESCAPES.get(e, e), i, i + 2, STR)
            return 2
        if i + 6 > n:
            return 0
        try:
            code = int(src[i + 2 : i + 6], 16)
        except ValueError:
            code = 0xFFFD
        if 0xD800 <= code < 0xDC00:
            rest = src[i + 6 : i + 12]
            if len(rest) < 6 and _maybe_escape(rest):
                return 0  # the low half may still come
            if rest.startswith("\\u"):
                try:
                    low = int(src[i + 8 : i + 12], 16)
                except ValueError:
                    low = 0
                if 0xDC00 <= low < 0xE000:
                    self._put(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), i, i + 12, STR)
                    return 12
        self._put(chr(code), i, i + 6, STR)
        return 6

    def finish(self) -> None:
        """The block ended: a number at the very end is complete."""
        if self.state in NUMBER_STATES:
            self.state = OUT

    def drop(self, views: int, source: int) -> None:
        """The channel released its first ``views`` view characters and ``source`` source characters."""
        if views:
            del self.chars[:views], self.vs[:views], self.ve[:views], self.tok[:views], self.states[:views]
            self.vbase += views
        self.base += source
        self.pos -= source

    def number_end(self, i: int) -> tuple[int, bool]:
        """For view character ``i`` (list index) of a number: its token's last index, and whether it ended."""
        tok, n = self.tok[i], len(self.chars)
        k = i
        while k + 1 < n and self.tok[k + 1] == tok and self.chars[k + 1] != SEP:
            k += 1
        return k, k + 1 < n or self.state not in NUMBER_STATES


def _maybe_escape(text: str) -> bool:
    """``text`` could be the start of a ``\\uXXXX`` escape."""
    return "\\u0000"[: len(text)] == text[:2] and all(c in "0123456789abcdefABCDEF" for c in text[2:])


def mask_digit(ch: str, state: int) -> str:
    """A digit of a number redacted in place (its head already went out): still a valid JSON number."""
    if ch not in _DIGITS:
        return ch
    return "1" if state == NUM_LEAD else "0"  # a leading 0 before more digits is not JSON
