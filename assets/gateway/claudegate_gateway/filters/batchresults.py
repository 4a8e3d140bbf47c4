"""The response filter on message batch results (JSON Lines in, JSON Lines out).

A batch's results are model output like any message's: without this, any
key allowed to create batches read what the response rules withhold from
``POST /v1/messages`` by asking for the same answer through a batch. Each
line is one request's result; a ``succeeded`` result's message is checked
as a whole message is (:meth:`ResponseFilter.message`). A ``redact`` rewrites
the line; a ``block`` replaces that line's result with an ``errored`` one
(the SDKs' own shape), so the other results and the JSON Lines stay valid.
Results are relayed line by line: a 400 MB results file is never held
whole, only its longest line.
"""

from __future__ import annotations

import json
from typing import Any

from claudegate_gateway.filters.response import ResponseFilter, Tally
from claudegate_gateway.filters.results import Verdict

__all__ = ["MAX_LINE", "ResultsFilter"]

#: One result line longer than this is not a batch result (a message is a few MB at most).
MAX_LINE = 64 * 1024 * 1024


class ResultsFilter:
    """Filter one results body; ``feed`` each chunk, then ``close``. ``broken``: a line over MAX_LINE."""

    def __init__(self, rf: ResponseFilter) -> None:
        self.rf = rf
        self.tally = Tally()
        self.broken = False
        # The unfinished line, as received: joined once its end arrives, so a
        # long line in many small chunks is copied once, not once per chunk.
        self._parts: list[bytes] = []
        self._size = 0

    def verdicts(self) -> list[Verdict]:
        return self.tally.verdicts()

    def feed(self, chunk: bytes) -> bytes:
        if self.broken:
            return b""
        end = chunk.rfind(b"\n")
        if end < 0:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_LINE:
                self.broken, self._parts, self._size = True, [], 0
            return b""
        buf = b"".join([*self._parts, chunk[:end]])
        rest = chunk[end + 1 :]
        self._parts, self._size = ([rest], len(rest)) if rest else ([], 0)
        return b"".join(self._line(line) + b"\n" for line in buf.split(b"\n"))

    def close(self) -> bytes:
        if self.broken:
            return b""
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return self._line(rest) if rest else b""

    def _line(self, raw: bytes) -> bytes:
        try:
            doc = json.loads(raw)
        except ValueError:
            return raw  # not a result line: nothing the rules read
        result = doc.get("result") if isinstance(doc, dict) else None
        if not isinstance(result, dict) or result.get("type") != "succeeded":
            return raw
        message = result.get("message")
        if not isinstance(message, dict):
            return raw
        checked = self.rf.message(message)
        blocked = checked.tally.blocked
        for name, count in checked.tally.counts.items():
            for _ in range(count):
                self.tally.add(checked.tally.rules[name])
        if blocked is not None:
            return _errored(doc, checked.tally)
        if not checked.changed:
            return raw
        return json.dumps({**doc, "result": {**result, "message": checked.doc}}, ensure_ascii=False).encode()


def _errored(doc: dict[str, Any], tally: Tally) -> bytes:
    error = {"type": "error", "error": {"type": tally.blocked_type, "message": tally.blocked_message}}
    return json.dumps({**doc, "result": {"type": "errored", "error": error}}, ensure_ascii=False).encode()
