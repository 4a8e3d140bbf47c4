"""Response rules: model output checked before the client sees it.

A :class:`ResponseFilter` holds the response-direction rules that apply to
one request (after the client's overrides). It checks a whole Messages
response (:meth:`ResponseFilter.message`) or, through :class:`Channel`, one
content block's text as it streams in:

* ``text`` mode: the characters of ``text_delta`` / ``thinking_delta`` (and
  of a whole ``text`` or ``thinking`` block);
* ``json`` mode: the JSON source of ``input_json_delta`` (a tool_use input).
  An incremental decoder (jsonview.py) decodes string contents (escapes
  included, ``\\uXXXX`` and surrogate pairs split anywhere) and numbers into
  a *view*, each source character once; rules run on the view, and a
  redaction replaces a run of string characters with the marker (JSON-safe:
  letters, digits, ``[:]_.-``) or a whole number with the marker as a
  string, so the JSON stays valid and the structure is never touched. A
  number is held whole up to the window's bound; one longer than that is
  released as it comes, and a match in its rest has its digits replaced
  by zeros (still a valid number) instead.

The window: a match is final once the channel holds ``window`` characters
after its start (``window`` = the longest match any active rule can have,
plus look-around context), or at the end of the block. Everything before
the earliest not-yet-final position is released at once; a match that
crosses that point holds the cut back to its start, so a match is always
released whole and redacted whole. A private key block is matched by its
header only and then withheld up to its END line (a PEM block is kilobytes;
the window stays small).

Rules read the pending text normalised as request text is (normalise.py:
NFKC, invisible and control characters out, look-alikes folded), so a
secret in full-width characters or with zero-width characters between its
characters is found; every offset is mapped back to the original, so what
is released is the model's own text and a redaction covers the whole
disguise. Text reaches the window in bounded slices, so each look (and its
normalisation) stays bounded. File downloads are read as they are
(``normalise=False``, download.py).

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
from claudegate_gateway.filters.jsonview import NUMBER_STATES, OUT, SEP, JsonDecoder, mask_digit
from claudegate_gateway.filters.matchers import _Matcher
from claudegate_gateway.filters.normalise import (
    _fold,
    _Map,
    _normalise,
    is_normal,
    needs_normalising,
    normalise_mapped,
)
from claudegate_gateway.filters.policy import FilterPolicy, _Rule
from claudegate_gateway.filters.results import Verdict

__all__ = ["Channel", "MessageResult", "ResponseFilter", "Tally"]

_CTX = 32  # characters of released text kept so look-behinds see the same text
_HOLD_FACTOR = 8  # a match still growing after this many windows is cut (bounded memory)
_TOOL_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Fields of other blocks (server tool results: web search and fetch, code
# execution, bash and text editor results...) that hold no text the model
# shows: ids, types, opaque or encrypted payloads, base64 data.
_OPAQUE = frozenset({
    "type", "id", "tool_use_id", "signature", "encrypted_content", "encrypted_index", "encrypted_stdout",
    "media_type", "file_id", "cache_control", "data",
})
_UNSCANNED_BLOCKS = frozenset({"redacted_thinking"})
# Text reaches the window at most this many characters at a time: each look at
# the pending text (its normalisation included) stays bounded however large a
# delta or a whole block is.
_FEED_SLICE = 32_768
# The JSON view's token separator stands in as this private-use character while
# the view is normalised (normalisation removes control characters such as NUL).
_SEP_STANDIN = "\ue000"
# The control characters normalisation removes (as normalise.py), and the same but NUL (the JSON
# view's separator, counted apart).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BUT_NUL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
        self.any_folded = any(m.folded for _, m in pairs)

    @classmethod
    def from_policy(cls, policy: FilterPolicy) -> ResponseFilter | None:
        """None when the policy has no response rule: the relay then takes its plain path."""
        rules = policy.response_rules
        return cls(rules) if rules else None

    def channel(self, mode: str, tally: Tally, *, normalise: bool = True) -> Channel:
        """``normalise``: rules read the normalised view (model output); False: the text as it is
        (file downloads: bytes read as text, whose NULs and odd bytes are the file's own)."""
        return Channel(self, mode, tally, normalise=normalise)

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
        # Seen normalised, as within a block (full-width digits, zero-width characters).
        tail = _normalise(tail) if needs_normalising(tail) else tail
        head = _normalise(head) if needs_normalising(head) else head
        tail, head = tail[-self.window:], head[:self.window]
        if not tail or not head:
            return
        text, cut = tail + head, len(tail)
        folded = _fold(text) if self.any_folded else text
        for rule, m in self.pairs:
            for fa, fb, _, _ in m.find(folded if m.folded else text, 0, len(text)):
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
    """What rules see of the pending text: the context, then the pending view characters.

    In json mode, pending view character ``i`` (text index ``off + i``) is
    list index ``i`` of the decoder's arrays, which hold absolute offsets.

    Rules run on the *normalised* view (``ntext``, as the request side
    normalises: NFKC, invisible and control characters removed, stray marks
    dropped; ``nfolded`` with look-alikes folded), so a secret written in
    full-width digits or with zero-width characters between its characters
    is found. Everything the window decides is then said in ``text``'s
    offsets (:meth:`raw_start`, :meth:`raw_end`: a normalised character maps
    to the whole original unit it came from), so what is released and
    redacted is always the original text.
    """

    __slots__ = ("committed", "nfolded", "noff", "npend", "ntext", "off", "omap", "text")

    def __init__(self) -> None:
        self.text = ""
        self.off = 0  # view index where pending text starts (after the context)
        self.committed = 0  # source offset (in pending) fully decoded (no half escape)
        self.ntext = ""  # the normalised context, then the normalised pending view
        self.nfolded = ""
        self.noff = 0  # ntext index where the normalised pending view starts
        self.npend = 0  # its length
        self.omap: _Map | None = None  # normalised pending index -> pending view index; None: the same

    def normalise(self, fold: bool, states: list[int] | None) -> None:
        """Build ``ntext`` from ``text`` (the pending part mapped back exactly).

        In json mode (``states``: the decoder's, one per pending character)
        the view's token separators (NUL, state OUT) are kept: a stand-in goes
        through normalisation for them, while a NUL inside a string is the
        model's and removed like any control character.
        """
        text, off = self.text, self.off
        if text.isascii() and (
            _CONTROL.search(text) is None if states is None
            else _CONTROL_BUT_NUL.search(text) is None and text.count(SEP, off) == states.count(OUT)
        ):  # fmt: skip
            # ASCII without control characters (separators aside): already what the rules read.
            self.ntext = self.nfolded = text
            self.noff, self.npend = off, len(text) - off
            return
        ctx, pend = text[:off], text[off:]
        sep = states is not None
        if states is not None:
            ctx = ctx.replace(SEP, _SEP_STANDIN)
            if pend.count(SEP) == states.count(OUT):  # every NUL a separator (one per OUT character)
                pend = pend.replace(SEP, _SEP_STANDIN)
            else:
                pend = "".join(_SEP_STANDIN if st == OUT else ch for ch, st in zip(pend, states, strict=True))
        nctx = _normalise(ctx) if needs_normalising(ctx) else ctx
        npend = pend
        if needs_normalising(pend) and not is_normal(pend):
            mapped = normalise_mapped(pend)
            if mapped is not None:  # None: too many special characters for one look (bounded by _FEED_SLICE)
                npend = mapped[0]
                self.omap = mapped[1] if npend != pend else None
        if sep:
            nctx, npend = nctx.replace(_SEP_STANDIN, SEP), npend.replace(_SEP_STANDIN, SEP)
        self.ntext = nctx + npend
        self.noff, self.npend = len(nctx), len(npend)
        self.nfolded = _fold(self.ntext) if fold else self.ntext

    def raw_start(self, x: int) -> int:
        """The view offset where the original of normalised character ``x`` starts (``x`` may be the end)."""
        i = x - self.noff
        if i <= 0:
            return self.off
        if i >= self.npend:
            return len(self.text)
        return self.off + (i if self.omap is None else self.omap.span(i, i + 1)[0])

    def raw_end(self, x: int) -> int:
        """The view offset just past the original of normalised character ``x - 1``."""
        i = x - self.noff
        if i <= 0:
            return self.off
        if i >= self.npend and self.omap is not None:
            return len(self.text)
        return self.off + (i if self.omap is None else self.omap.span(i - 1, i)[1])


class Channel:
    """One content block's text (``mode`` ``text``) or tool input JSON (``json``), filtered as it arrives."""

    def __init__(self, rf: ResponseFilter, mode: str, tally: Tally, *, normalise: bool = True) -> None:
        self.rf = rf
        self.normalise = normalise
        self.json = mode == "json"
        self.tally = tally
        self.pending = ""
        self.ctx = ""
        self.dec = JsonDecoder()
        self.until: re.Pattern[str] | None = None  # withholding a private key block up to its END line

    # -- public ------------------------------------------------------------

    def feed(self, text: str) -> str:
        """Take more of the block; return what may be released now (possibly empty)."""
        if len(text) <= _FEED_SLICE:
            self.pending += text
            return self._drain(final=False)
        out: list[str] = []
        for at in range(0, len(text), _FEED_SLICE):
            self.pending += text[at : at + _FEED_SLICE]
            out.append(self._drain(final=False))
        return "".join(out)

    def flush(self) -> str:
        """The block ended: release the rest."""
        if self.json:
            self.dec.decode(self.pending)
            self.dec.finish()
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
        # Rules read the normalised view; every offset below is the original view's.
        ntext, nfolded, noff = view.ntext, view.nfolded, view.noff
        nend = len(ntext)
        # Final text: everything before the earliest place where some rule's
        # match may still be in progress (by default the last `width` chars;
        # less for rules whose matches start with a literal or are runs).
        limit = end if final else view.raw_start(
            min((m.hold_from(nfolded if m.folded else ntext, noff, nend) for _, m in self.rf.pairs), default=nend)
        )
        # Over its bound in original characters too (invisible ones count: they are held).
        forced = not final and end - off > _HOLD_FACTOR * max(hold, 1)
        if forced:
            limit = max(limit, end - _HOLD_FACTOR * max(hold, 1))
        hits: list[tuple[int, int, int, int, _Rule, _Matcher]] = []
        for rule, m in self.rf.pairs:
            for nfa, nfb, nra, nrb in m.find(nfolded if m.folded else ntext, 0, nend):
                if nfa < noff:
                    continue
                fa = view.raw_start(nfa)
                if fa < limit or final:
                    hits.append((fa, view.raw_end(nfb), max(view.raw_start(nra), off), view.raw_end(nrb), rule, m))
        cut = self._safe_cut(view, limit, forced)
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
        cut = len(text) if final else self._safe_cut(view, max(off, len(text) - self.rf.window), True)
        if cut > off:
            self._release(view, cut, [(off, cut, "")], out)
        return False

    def _safe_cut(self, view: _View, cut: int, forced: bool = False) -> int:
        """``cut`` moved back so it does not split a JSON number whose start is still held.

        ``forced`` (the pending text is over its bound): a long number may be
        cut; the rest of it is redacted digit by digit (see _json_edits).
        """
        cut = max(cut, view.off)
        if self.json and not forced and cut < len(view.text):
            i = cut - view.off
            dec = self.dec
            start = dec.tok[i] - dec.vbase + view.off
            # No match is longer than the window: a number longer than that is
            # not held whole (its rest is masked digit by digit if need be).
            if dec.states[i] in NUMBER_STATES and start >= view.off and cut - start <= self.rf.window:
                cut = start
        return cut

    def _release(self, view: _View, cut: int, spans: list[tuple[int, int, str]], out: list[str]) -> None:
        off = view.off
        src_cut = self._src_cut(view, cut)
        if src_cut <= 0:
            return
        if not self.json:
            chunk = view.text[off:cut]
            out.append(_splice(chunk, [(a - off, b - off, lab) for a, b, lab in spans]) if spans else chunk)
        else:
            out.append(self._json_edits(view, cut, src_cut, spans))
            self.dec.drop(cut - off, src_cut)
        self.ctx = (self.ctx + view.text[off:cut])[-_CTX:]
        self.pending = self.pending[src_cut:]

    def _src_cut(self, view: _View, cut: int) -> int:
        if not self.json:
            return cut - view.off
        return self.dec.vs[cut - view.off] - self.dec.base if cut < len(view.text) else view.committed

    def _json_edits(self, view: _View, cut: int, src_cut: int, spans: list[tuple[int, int, str]]) -> str:
        src = self.pending
        dec = self.dec
        base, vbase = dec.base, dec.vbase
        vs, ve, toks, states = dec.vs, dec.ve, dec.tok, dec.states
        edits: list[tuple[int, int, str]] = []
        off = view.off
        for a, b, label in _merge(spans):
            i = a
            while i < b:
                # A separator between tokens stays (a NUL inside a string is the model's: redacted with it).
                if states[i - off] == OUT:
                    i += 1
                    continue
                j = i
                tok = toks[i - off]
                while j + 1 < b and states[j + 1 - off] != OUT and toks[j + 1 - off] == tok:
                    j += 1
                if states[i - off] in NUMBER_STATES:
                    k, ended = dec.number_end(i - off)
                    first = tok + 1 - vbase  # the number's first character follows its separator
                    if first >= 0 and ended and k + off < cut:
                        # Held whole: the whole number becomes the marker, as a string.
                        edits.append((vs[first] - base, ve[k] - base, f'"{label}"'))
                        i = k + off + 1
                        continue
                    # Its head already went out (a number over the window): zeros in place.
                    for p in range(i - off, j - off + 1):
                        ch = view.text[p + off]
                        masked = mask_digit(ch, states[p])
                        if masked != ch:
                            edits.append((vs[p] - base, ve[p] - base, masked))
                    i = j + 1
                else:
                    edits.append((vs[i - off] - base, ve[j - off] - base, label))
                    i = j + 1
        return _splice(src[:src_cut], edits) if edits else src[:src_cut]

    # -- the view ----------------------------------------------------------

    def _view(self) -> _View:
        view = _View()
        view.off = len(self.ctx)
        if not self.json:
            view.text = self.ctx + self.pending
            view.committed = len(self.pending)
        else:
            self.dec.decode(self.pending)  # only what arrived since the last call
            view.text = self.ctx + "".join(self.dec.chars)
            view.committed = self.dec.pos
        if self.normalise:
            view.normalise(self.rf.any_folded, self.dec.states if self.json else None)
        else:
            view.ntext = view.nfolded = view.text
            view.noff, view.npend = view.off, len(view.text) - view.off
        return view


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
