"""The response filter on a Messages event stream (SSE bytes in, SSE bytes out).

Bytes are cut into events only at a blank line (``\\n\\n``, ``\\r\\n\\r\\n``
or ``\\r\\r``; a ``\\r`` at the end of a chunk waits for the next one), so
an event, a line or a UTF-8 character split across TCP chunks is only ever
decoded whole. Then, per event:

* ``content_block_start``: a :class:`~.response.Channel` opens for that
  index when the block carries text (``text``, ``thinking``) or a tool input
  (``tool_use``, ``server_tool_use``, ``mcp_tool_use``);
* ``content_block_delta`` with ``text_delta`` / ``thinking_delta`` /
  ``input_json_delta``: its text goes into the channel and what the window
  releases leaves as one delta event of the same type and index (nothing
  when everything is held back);
* ``content_block_stop``: the channel's rest leaves as one last delta of
  that type, then the stop event;
* ``citations_delta``: the citation's ``cited_text`` is checked on its own
  (a citation arrives whole);
* everything else (``message_start``, ``ping``, ``message_delta`` with the
  usage, ``signature_delta``, ``error``...) passes byte for byte, unparsed
  beyond its JSON.

A ``block`` verdict replaces the rest of the stream with one ``event:
error`` (the SDKs raise it); the caller keeps reading upstream for the
usage. Events are never merged or reordered, except that a held-back delta
leaves after a ``ping`` that arrived meanwhile.
"""

from __future__ import annotations

import json
import re
from typing import Any

from claudegate_gateway.errors import error_body
from claudegate_gateway.filters.normalise import _normalise, is_normal, needs_normalising
from claudegate_gateway.filters.response import _UNSCANNED_BLOCKS, Channel, ResponseFilter, Tally
from claudegate_gateway.filters.results import Verdict

__all__ = ["StreamFilter"]

_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE = re.compile(r"\r\n|\r|\n")
_DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
# content block type -> the delta type that carries its text
_BLOCK_MODES = {
    "text": "text_delta",
    "thinking": "thinking_delta",
    "tool_use": "input_json_delta",
    "server_tool_use": "input_json_delta",
    "mcp_tool_use": "input_json_delta",
}
_MODES = {"text_delta": "text", "thinking_delta": "text", "input_json_delta": "json"}
_MAX_EVENT = 16 * 1024 * 1024  # one event bigger than this is not a Messages stream
# The text around a block boundary is kept (the end of one block) and held (the start of the next)
# until the rules can read a window of it, counted in what they read (normalised: invisible
# characters do not count), but never more than this many windows of the model's own characters.
_RAW_WINDOWS = 16


def _keep_tail(tail: str, window: int) -> str:
    """The end of a block kept for matches across blocks: a window, more when invisible characters are in it."""
    short = tail[-window:]
    # Already what the rules read (ASCII, or prose in any script): a window is a window.
    return short if not needs_normalising(short) or is_normal(short) else tail[-_RAW_WINDOWS * window :]


def _read_len(text: str) -> int:
    """How many characters the rules read of ``text`` (normalised)."""
    return len(_normalise(text)) if needs_normalising(text) else len(text)


class StreamFilter:
    """Filter one response stream; ``feed`` each chunk, then ``close``."""

    def __init__(self, rf: ResponseFilter, request_id: str) -> None:
        self.rf = rf
        self.tally = Tally()
        self.request_id = request_id
        self._buf = b""
        # (index, delta type) -> channel; a delta with no matching start opens
        # its own channel (fail closed: nothing that carries text goes unscanned).
        self._channels: dict[tuple[int, str], Channel] = {}
        self._done = False  # blocked: the client got its error event, the rest is dropped
        # Matches across two text blocks: the end of the last text block seen
        # (as the model wrote it), and, for a text block that follows one,
        # its first characters, held until there are `window` of them (or
        # the block ends) and checked against that end before any leaves.
        self._tail: str | None = None
        self._tails: dict[int, str] = {}
        self._heads: dict[int, str] = {}

    @property
    def blocked(self) -> bool:
        return self._done

    def verdicts(self) -> list[Verdict]:
        return self.tally.verdicts()

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return b""
        self._buf += chunk
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        # A trailing CR may be half of a CRLF: wait for the next byte.
        limit = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        while True:
            m = _EVENT_END.search(buf, pos, limit)
            if m is None:
                break
            out.append(self._event(buf[pos:m.end()]))
            pos = m.end()
            if self._done:
                self._buf = b""
                return b"".join(out)
        self._buf = buf[pos:]
        if len(self._buf) > _MAX_EVENT:
            out.append(self._block_with("invalid_request_error", "The upstream sent an oversized stream event"))
        return b"".join(out)

    def close(self) -> bytes:
        """End of the upstream body: release anything still held (an unterminated last event as is)."""
        if self._done:
            return b""
        out: list[bytes] = []
        for index in sorted({i for i, _ in self._channels}):
            out.append(self._flush(index))
            if self._done:
                return b"".join(out)
        self._channels.clear()
        out.append(self._buf)
        self._buf = b""
        return b"".join(out)

    # -- events -------------------------------------------------------------

    def _event(self, raw: bytes) -> bytes:
        data = _data(raw)
        if data is None:
            return raw
        kind = data.get("type")
        if kind == "content_block_start":
            index, block = data.get("index"), data.get("content_block")
            if isinstance(index, int) and isinstance(block, dict) and block.get("type") in _BLOCK_MODES:
                delta_type = _BLOCK_MODES[block["type"]]
                self._channels[(index, delta_type)] = self.rf.channel(_MODES[delta_type], self.tally)
                if block["type"] == "text":
                    # Running on from the text before: a match may span more than two blocks.
                    self._tails[index] = self._tail or ""
                    if self._tail:
                        self._heads[index] = ""
            elif isinstance(index, int) and isinstance(block, dict) and block.get("type") not in _UNSCANNED_BLOCKS:
                return self._whole_block(raw, data, block)
            return raw
        if kind == "content_block_delta":
            index, delta = data.get("index"), data.get("delta")
            if not isinstance(index, int) or not isinstance(delta, dict):
                return raw
            delta_type = str(delta.get("type"))
            if delta_type == "citations_delta":
                return self._citation(raw, data, delta)
            field = _DELTA_FIELDS.get(delta_type)
            if field is None:
                return raw  # signature_delta, ...: nothing the rules read
            text = delta.get(field)
            if not isinstance(text, str):
                return raw
            channel = self._channels.get((index, delta_type))
            if channel is None:
                channel = self._channels[(index, delta_type)] = self.rf.channel(_MODES[delta_type], self.tally)
            if index in self._tails and delta_type == "text_delta":
                self._tails[index] = _keep_tail(self._tails[index] + text, self.rf.window)
                if index in self._heads:
                    text = self._head(index, text, final=False)
                    if self._done:
                        return self._block()
            released = channel.feed(text) if text else ""
            if self.tally.blocked is not None:
                return self._block()
            return _delta_event(index, delta_type, released) if released else b""
        if kind == "content_block_stop" and isinstance(data.get("index"), int):
            return self._flush(data["index"]) + (b"" if self._done else raw)
        return raw

    def _citation(self, raw: bytes, data: dict[str, Any], delta: dict[str, Any]) -> bytes:
        """A citation arrives whole: its ``cited_text`` is checked on its own (no window needed)."""
        citation = delta.get("citation")
        text = citation.get("cited_text") if isinstance(citation, dict) else None
        if not isinstance(citation, dict) or not isinstance(text, str) or not text:
            return raw
        channel = self.rf.channel("text", self.tally)
        new = channel.feed(text) + channel.flush()
        if self.tally.blocked is not None:
            return self._block()
        if new == text:
            return raw
        out = {**data, "delta": {**delta, "citation": {**citation, "cited_text": new}}}
        return b"event: content_block_delta\ndata: " + json.dumps(out, ensure_ascii=False).encode() + b"\n\n"

    def _head(self, index: int, text: str, final: bool) -> str:
        """Hold a text block's start until it can be checked against the previous block's end."""
        head = self._heads[index] + text
        window = self.rf.window
        if not final and len(head) < _RAW_WINDOWS * window and (len(head) < window or _read_len(head) < window):
            self._heads[index] = head
            return ""
        del self._heads[index]
        assert self._tail is not None
        self.rf.crossing(self._tail, head, self.tally)
        if self.tally.blocked is not None:
            self._done = True
        return head

    def _whole_block(self, raw: bytes, data: dict[str, Any], block: dict[str, Any]) -> bytes:
        """A block that arrives whole in its start event (server tool results): every string it shows."""
        new = json.loads(json.dumps(block))
        changed = self.rf.other_block(new, self.tally)
        if self.tally.blocked is not None:
            return self._block()
        if not changed:
            return raw
        out = {**data, "content_block": new}
        return b"event: content_block_start\ndata: " + json.dumps(out, ensure_ascii=False).encode() + b"\n\n"

    def _flush(self, index: int) -> bytes:
        out: list[bytes] = []
        if index in self._heads:
            rest = self._head(index, "", final=True)
            if self._done:
                return self._block()
            channel = self._channels.get((index, "text_delta"))
            if channel is not None and rest:
                released = channel.feed(rest)
                if self.tally.blocked is not None:
                    return self._block()
                if released:
                    out.append(_delta_event(index, "text_delta", released))
        if index in self._tails:
            self._tail = self._tails.pop(index)
        for key in [k for k in self._channels if k[0] == index]:
            rest = self._channels.pop(key).flush()
            if self.tally.blocked is not None:
                return self._block()
            if rest:
                out.append(_delta_event(index, key[1], rest))
        return b"".join(out)

    def _block(self) -> bytes:
        return self._block_with(self.tally.blocked_type, self.tally.blocked_message)

    def _block_with(self, kind: str, message: str) -> bytes:
        self._done = True
        self._channels.clear()
        self._buf = b""
        return b"event: error\ndata: " + error_body(kind, message, self.request_id) + b"\n\n"


def _data(raw: bytes) -> dict[str, Any] | None:
    """The event's JSON data, or None when it is not one we look into."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [line[5:].removeprefix(" ") for line in _LINE.split(text) if line.startswith("data:")]
    if not lines:
        return None
    try:
        data = json.loads("\n".join(lines))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _delta_event(index: int, delta_type: str, text: str) -> bytes:
    payload = {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, _DELTA_FIELDS[delta_type]: text}}
    return b"event: content_block_delta\ndata: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
