"""Response rules: model output checked before the client sees it.

A :class:`ResponseFilter` holds the response-direction rules that apply to
one request (after the client's overrides). It checks a whole Messages
response (:meth:`ResponseFilter.message`) or, through :class:`Channel`, one
content block's text as it streams in:

* ``text`` mode: the characters of ``text_delta`` / ``thinking_delta`` (and
  of a whole ``text`` or ``thinking`` block);
* ``json`` mode: the JSON source of ``input_json_delta`` (a tool_use input).
  A small incremental tokenizer decodes string contents (escapes included,
  ``\\uXXXX`` and surrogate pairs split anywhere) and numbers into a *view*;
  rules run on the view, and a redaction replaces a run of string characters
  with the marker (JSON-safe: letters, digits, ``[:]_.-``) or a whole number
  with the marker as a string, so the JSON stays valid and the structure is
  never touched.

The window: a match is final once the channel holds ``window`` characters
after its start (``window`` = the longest match any active rule can have,
plus look-around context), or at the end of the block. Everything before
the earliest not-yet-final position is released at once; a match that
crosses that point holds the cut back to its start, so a match is always
released whole and redacted whole. A private key block is matched by its
header only and then withheld up to its END line (a PEM block is kilobytes;
the window stays small).

Counts go to the caller's tally; matched text is never kept anywhere else.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from claudegate_gateway.filters.detectors import STREAM_FORMS
from claudegate_gateway.filters.matchers import _Matcher
from claudegate_gateway.filters.policy import FilterPolicy, _Rule
from claudegate_gateway.filters.results import Verdict

__all__ = ["Channel", "MessageResult", "ResponseFilter", "Tally"]

_CTX = 32  # characters of released text kept so look-behinds see the same text
_HOLD_FACTOR = 8  # a match still growing after this many windows is cut (bounded memory)
_SEP = "\x00"  # between JSON tokens in the view: rules see one token at a time
_TOOL_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Fields of other blocks (server tool results: web search and fetch, code
# execution, bash and text editor results...) that hold no text the model
# shows: ids, types, opaque or encrypted payloads, base64 data.
_OPAQUE = frozenset({
    "type", "id", "tool_use_id", "signature", "encrypted_content", "encrypted_index", "encrypted_stdout",
    "media_type", "file_id", "cache_control", "data",
})
_UNSCANNED_BLOCKS = frozenset({"redacted_thinking"})
_OUT, _STR, _NUM = range(3)
_NUM_CHARS = frozenset("0123456789+-.eE")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class Tally:
    """Verdicts of one response: matches per rule, and the first blocking rule."""

    counts: dict[str, int] = field(default_factory=dict)
    rules: dict[str, _Rule] = field(default_factory=dict)
    blocked: _Rule | None = None

    def add(self, rule: _Rule, *, block: bool = False) -> None:
        """Count a match; ``block``: it cannot be redacted (part of it left already), so it blocks."""
        if block and rule.action == "redact":
            rule = replace(rule, action="block")
        self.counts[rule.name] = self.counts.get(rule.name, 0) + 1
        if rule.name not in self.rules or rule.action == "block":
            self.rules[rule.name] = rule
        if rule.action == "block" and self.blocked is None:
            self.blocked = rule

    def verdicts(self) -> list[Verdict]:
        return [Verdict(name, self.rules[name].action, n, direction="response") for name, n in self.counts.items()]

    @property
    def blocked_message(self) -> str:
        name = self.blocked.name if self.blocked else "?"
        return f"The response was blocked by the gateway's filter rule {name!r}"

    @property
    def blocked_type(self) -> str:
        return "permission_error" if self.blocked is not None and self.blocked.status == 403 else "invalid_request_error"


@dataclass
class MessageResult:
    """A filtered non-streamed message: ``doc`` (a copy when changed) or a block."""

    doc: dict[str, Any] = field(repr=False)
    changed: bool
    tally: Tally


class ResponseFilter:
    """The response rules of one request; immutable, cheap to share."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self.rules = tuple(rules)
        pairs: list[tuple[_Rule, _Matcher]] = []
        for rule in self.rules:
            for m in rule.matchers:
                pairs.append((rule, STREAM_FORMS.get(m.name, m) if rule.detector_rule else m))
        self.pairs = tuple(pairs)
        self.window = max((m.width for _, m in pairs), default=0)

    @classmethod
    def from_policy(cls, policy: FilterPolicy) -> ResponseFilter | None:
        """None when the policy has no response rule: the relay then takes its plain path."""
        rules = policy.response_rules
        return cls(rules) if rules else None

    def channel(self, mode: str, tally: Tally) -> Channel:
        return Channel(self, mode, tally)

    def message(self, doc: dict[str, Any]) -> MessageResult:
        """Check a whole Messages response body (``content`` blocks)."""
        tally = Tally()
        content = doc.get("content")
        if not isinstance(content, list):
            return MessageResult(doc, False, tally)
        out = copy.deepcopy(doc)
        changed = False
        # The end of the text so far (all text blocks, ``window`` characters),
        # for matches across blocks: across the last one only, a secret in
        # three blocks with a short middle one went through.
        tail: str | None = None
        for block in out["content"]:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                if tail is not None:
                    self.crossing(tail, block["text"], tally)
                tail = ((tail or "") + block["text"])[-self.window:]
            if kind in ("text", "thinking"):
                key = "text" if kind == "text" else "thinking"
                changed |= self._text_field(block, key, tally)
                for cite in block.get("citations") or ():
                    if isinstance(cite, dict):
                        changed |= self._text_field(cite, "cited_text", tally)
            elif kind in _TOOL_TYPES and "input" in block:
                source = json.dumps(block["input"], ensure_ascii=False)
                ch = self.channel("json", tally)
                new = ch.feed(source) + ch.flush()
                if new != source:
                    block["input"] = json.loads(new)
                    changed = True
            elif kind not in _UNSCANNED_BLOCKS:
                changed |= self.other_block(block, tally)
        return MessageResult(out if changed else doc, changed, tally)

    def crossing(self, tail: str, head: str, tally: Tally) -> None:
        """Matches that start in ``tail`` (one text block) and end in ``head`` (the next one).

        Each block is filtered on its own; a match across the two is found
        here. It is never redacted: in a stream its first part left with the
        earlier block, so a redact rule blocks (a log rule counts).
        """
        tail, head = tail[-self.window:], head[:self.window]
        if not tail or not head:
            return
        text, cut = tail + head, len(tail)
        for rule, m in self.pairs:
            for fa, fb, _, _ in m.find(text, 0, len(text)):
                if fa < cut < fb:
                    tally.add(rule, block=True)
                    break

    def other_block(self, node: Any, tally: Tally) -> bool:
        """Every string the model shows in a block of another type (server tool results...), in place."""
        changed = False
        if isinstance(node, dict):
            text_source = node.get("type") == "text"  # a document source: its data is the text
            for key in list(node):
                value = node[key]
                if isinstance(value, str):
                    if key not in _OPAQUE or (key == "data" and text_source):
                        changed |= self._text_field(node, key, tally)
                elif isinstance(value, (dict, list)) and key not in _OPAQUE:
                    changed |= self.other_block(value, tally)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str) and value:
                    ch = self.channel("text", tally)
                    new = ch.feed(value) + ch.flush()
                    if new != value:
                        node[i] = new
                        changed = True
                elif isinstance(value, (dict, list)):
                    changed |= self.other_block(value, tally)
        return changed

    def message_bytes(self, data: bytes) -> tuple[bytes, Tally]:
        """:meth:`message` on a response body: the bytes to send (the input when unchanged) and the tally."""
        try:
            doc = json.loads(data)
        except ValueError:
            return data, Tally()  # not a message: nothing the rules read
        if not isinstance(doc, dict):
            return data, Tally()
        result = self.message(doc)
        out = json.dumps(result.doc, ensure_ascii=False).encode() if result.changed else data
        return out, result.tally

    def _text_field(self, node: dict[str, Any], key: str, tally: Tally) -> bool:
        text = node.get(key)
        if not isinstance(text, str) or not text:
            return False
        ch = self.channel("text", tally)
        new = ch.feed(text) + ch.flush()
        if new == text:
            return False
        node[key] = new
        return True


class _View:
    """What rules see of the pending text, and where each character came from."""

    __slots__ = ("committed", "end_state", "off", "states", "text", "tok", "ve", "vs")

    def __init__(self) -> None:
        self.text = ""
        self.off = 0  # view index where pending text starts (after the context)
        self.vs: list[int] = []  # source start of each pending view character
        self.ve: list[int] = []  # source end
        self.tok: list[int] = []  # view index of the token's separator (json)
        self.states: list[int] = []  # tokenizer state at each view character (json)
        self.committed = 0  # source offset fully tokenized (no half escape)
        self.end_state = _OUT


class Channel:
    """One content block's text (``mode`` ``text``) or tool input JSON (``json``), filtered as it arrives."""

    def __init__(self, rf: ResponseFilter, mode: str, tally: Tally) -> None:
        self.rf = rf
        self.json = mode == "json"
        self.tally = tally
        self.pending = ""
        self.ctx = ""
        self.state = _OUT
        self.until: re.Pattern[str] | None = None  # withholding a private key block up to its END line

    # -- public ------------------------------------------------------------

    def feed(self, text: str) -> str:
        """Take more of the block; return what may be released now (possibly empty)."""
        self.pending += text
        return self._drain(final=False)

    def flush(self) -> str:
        """The block ended: release the rest."""
        out = self._drain(final=True)
        rest = "" if self.tally.blocked is not None else self.pending  # a half escape at the very end
        self.pending = ""
        return out + rest

    # -- the window --------------------------------------------------------

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        while self.pending and self.tally.blocked is None:
            before = (len(self.pending), self.until)
            view = self._view()
            again = self._withhold(view, final, out) if self.until is not None else self._scan(view, final, out)
            if not again or (len(self.pending), self.until) == before:
                break
        if self.tally.blocked is not None:
            self.pending = ""
            return ""
        return "".join(out)

    def _scan(self, view: _View, final: bool, out: list[str]) -> bool:
        """Release what is final; True when a withheld block starts (call again for the rest)."""
        text, off = view.text, view.off
        end = len(text)
        hold = self.rf.window
        # Final text: everything before the earliest place where some rule's
        # match may still be in progress (by default the last `width` chars;
        # less for rules whose matches start with a literal or are runs).
        limit = end if final else min((m.hold_from(text, off, end) for _, m in self.rf.pairs), default=end)
        forced = not final and end - off > _HOLD_FACTOR * max(hold, 1)
        hits: list[tuple[int, int, int, int, _Rule, _Matcher]] = []
        for rule, m in self.rf.pairs:
            for fa, fb, ra, rb in m.find(text, 0, end):
                if fa >= off and (fa < limit or final):
                    hits.append((fa, fb, ra, rb, rule, m))
        cut = self._safe_cut(view, limit)
        if not forced:
            moved = True
            while moved:
                moved = False
                for fa, fb, *_ in hits:
                    if fa < cut < fb:
                        cut = self._safe_cut(view, fa)
                        moved = True
        hits.sort(key=lambda h: h[0])
        spans: list[tuple[int, int, str]] = []
        start_until: re.Pattern[str] | None = None
        for fa, fb, ra, rb, rule, m in hits:
            if fa >= cut or (fb > cut and not forced):
                continue
            self.tally.add(rule)
            if rule.action == "redact":
                spans.append((ra, min(rb, cut), f"[REDACTED:{rule.name}]"))
                if m.until is not None and start_until is None:
                    start_until = m.until
                    cut = self._safe_cut(view, max(rb, off)) if rb < cut else cut
        if self.tally.blocked is not None:
            return False
        self._release(view, cut, spans, out)
        if start_until is not None:
            self.until = start_until
            return True
        return False

    def _withhold(self, view: _View, final: bool, out: list[str]) -> bool:
        """Inside a withheld block: drop text up to its END; True when it ended (scan the rest)."""
        assert self.until is not None
        text, off = view.text, view.off
        m = self.until.search(text, off)
        if m is not None and (m.end() < len(text) or final):  # at the very end it may still grow
            cut = self._safe_cut(view, m.end())
            self._release(view, cut, [(off, cut, "")], out)
            self.until = None
            return True
        cut = len(text) if final else self._safe_cut(view, max(off, len(text) - self.rf.window))
        if cut > off:
            self._release(view, cut, [(off, cut, "")], out)
        return False

    def _safe_cut(self, view: _View, cut: int) -> int:
        """``cut`` moved back so it never splits a JSON number."""
        cut = max(cut, view.off)
        if self.json and cut < len(view.text):
            i = cut - view.off
            if view.states[i] == _NUM and view.text[cut] != _SEP:
                cut = view.tok[i]
        return cut

    def _release(self, view: _View, cut: int, spans: list[tuple[int, int, str]], out: list[str]) -> None:
        off = view.off
        src_cut = self._src_cut(view, cut)
        if src_cut <= 0:
            return
        if not self.json:
            chunk = view.text[off:cut]
            out.append(_splice(chunk, [(a - off, b - off, lab) for a, b, lab in spans]) if spans else chunk)
            self.state = _OUT
        else:
            out.append(self._json_edits(view, src_cut, spans))
            self.state = view.states[cut - off] if cut < len(view.text) else view.end_state
            if cut < len(view.text) and view.text[cut] == _SEP:
                self.state = _OUT
        self.ctx = (self.ctx + view.text[off:cut])[-_CTX:]
        self.pending = self.pending[src_cut:]

    def _src_cut(self, view: _View, cut: int) -> int:
        if not self.json:
            return cut - view.off
        return view.vs[cut - view.off] if cut < len(view.text) else view.committed

    def _json_edits(self, view: _View, src_cut: int, spans: list[tuple[int, int, str]]) -> str:
        src = self.pending
        edits: list[tuple[int, int, str]] = []
        off = view.off
        for a, b, label in _merge(spans):
            i = a
            while i < b:
                if view.text[i] == _SEP:
                    i += 1
                    continue
                j = i
                tok = view.tok[i - off]
                while j + 1 < b and view.text[j + 1] != _SEP and view.tok[j + 1 - off] == tok:
                    j += 1
                if view.states[i - off] == _NUM:
                    k = j
                    while k + 1 < len(view.text) and view.text[k + 1] != _SEP and view.tok[k + 1 - off] == tok:
                        k += 1
                    first = tok + 1  # the number's first character follows its separator
                    edits.append((view.vs[first - off], view.ve[k - off], f'"{label}"'))
                    i = k + 1
                else:
                    edits.append((view.vs[i - off], view.ve[j - off], label))
                    i = j + 1
        return _splice(src[:src_cut], edits) if edits else src[:src_cut]

    # -- the view ----------------------------------------------------------

    def _view(self) -> _View:
        view = _View()
        view.off = len(self.ctx)
        if not self.json:
            view.text = self.ctx + self.pending
            view.committed = len(self.pending)
            return view
        _tokenize(self.pending, self.state, view, self.ctx)
        return view


def _tokenize(src: str, state: int, view: _View, ctx: str) -> None:
    """Decode JSON source (starting in ``state``) into ``view``; stops before a half escape."""
    chars: list[str] = []
    vs, ve, tok, states = view.vs, view.ve, view.tok, view.states
    off = len(ctx)
    tok_at = off - 1  # separator of the current token (may lie in the context)

    def put(ch: str, a: int, b: int, st: int) -> None:
        chars.append(ch)
        vs.append(a)
        ve.append(b)
        tok.append(tok_at)
        states.append(st)

    i, n = 0, len(src)
    committed = 0
    while i < n:
        c = src[i]
        if state == _OUT:
            if c == '"':
                tok_at = off + len(chars)
                put(_SEP, i, i, _OUT)
                state = _STR
                i += 1
            elif c == "-" or c.isdigit():
                tok_at = off + len(chars)
                put(_SEP, i, i, _OUT)
                state = _NUM
            else:
                i += 1
            committed = i
            continue
        if state == _NUM:
            if c in _NUM_CHARS:
                put(c, i, i + 1, _NUM)
                i += 1
                committed = i
            else:
                state = _OUT
            continue
        # in a string
        if c == '"':
            state = _OUT
            i += 1
            committed = i
            continue
        if c != "\\":
            put(c, i, i + 1, _STR)
            i += 1
            committed = i
            continue
        if i + 1 >= n:
            break
        e = src[i + 1]
        if e != "u":
            put(_ESCAPES.get(e, e), i, i + 2, _STR)
            i += 2
            committed = i
            continue
        if i + 6 > n:
            break
        try:
            code = int(src[i + 2:i + 6], 16)
        except ValueError:
            code = 0xFFFD
        if 0xD800 <= code < 0xDC00:
            rest = src[i + 6:i + 12]
            if len(rest) < 6 and _maybe_escape(rest):
                break  # the low half may still come
            if rest.startswith("\\u"):
                try:
                    low = int(src[i + 8:i + 12], 16)
                except ValueError:
                    low = 0
                if 0xDC00 <= low < 0xE000:
                    put(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), i, i + 12, _STR)
                    i += 12
                    committed = i
                    continue
        put(chr(code), i, i + 6, _STR)
        i += 6
        committed = i
    view.text = ctx + "".join(chars)
    view.committed = committed
    view.end_state = state


def _maybe_escape(text: str) -> bool:
    """``text`` could be the start of a ``\\uXXXX`` escape."""
    return "\\u0000"[: len(text)] == text[:2] and all(c in "0123456789abcdefABCDEF" for c in text[2:])


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for a, b, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if b <= a:
            continue
        if merged and a < merged[-1][1]:
            pa, pb, pl = merged[-1]
            merged[-1] = (pa, max(pb, b), pl)
        else:
            merged.append((a, b, label))
    return merged


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    pos = 0
    for a, b, label in _merge(spans):
        out.append(text[pos:a])
        out.append(label)
        pos = b
    out.append(text[pos:])
    return "".join(out)
