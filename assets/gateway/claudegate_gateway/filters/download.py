"""The response filter on file downloads (``GET /v1/files/{file_id}/content``).

The files the API lets a client download are the ones the model made (code
execution's outputs): model output like a message's text, so the response
rules see them. A file is read as one text block, as UTF-8 with every byte
that is not UTF-8 kept as a character of its own (``surrogateescape``):
text reads as the characters it holds (a rule with ``é`` in it matches),
any other byte is still there to see, and the parts the rules leave alone
are written back byte for byte, whatever the file is. A ``redact`` writes
the marker in place of the matched bytes (the file's length changes: the
gateway never sends upstream's Content-Length); a ``block`` ends the
download.

The download streams through the channel's bounded window, so a large file
is never held whole. The first :data:`HOLD_BYTES` are held before anything
is sent: a small file (most are) that must be blocked is answered with the
gateway's error instead of a 200; past that, a block cuts the connection,
which is how a client learns a body is incomplete.

A file written in UTF-16 or UTF-32 (a spreadsheet export, a Windows tool's
output) has NULs between its ASCII letters, which split every match for
the rules. Once a NUL is seen, what the rules released is read a second
time with the NULs taken out (a *shadow* channel); a match there cannot be
redacted in the file's own bytes, so it blocks. For the same reason a
download is read as it is, not normalised as model text is (its NULs and
odd bytes are the file's own; redacting through them would corrupt it).
"""

from __future__ import annotations

import codecs
from dataclasses import replace

from claudegate_gateway.filters.policy import _Rule
from claudegate_gateway.filters.response import Channel, ResponseFilter, Tally
from claudegate_gateway.filters.results import Verdict

__all__ = ["HOLD_BYTES", "DownloadFilter"]

HOLD_BYTES = 1 << 20
# Fed to the channel this many characters at a time: its work per call stays small.
_SLICE = 64 * 1024


class DownloadFilter:
    """Filter one download; ``feed`` each chunk, then ``close``. ``blocked`` once a block rule matched."""

    def __init__(self, rf: ResponseFilter) -> None:
        self.tally = Tally()
        self._rf = rf
        self._channel = rf.channel("text", self.tally, normalise=False)
        # Incremental: a character cut by a chunk boundary waits for its other bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        # The released text without NULs (a UTF-16/32 file's letters side by side), from the first NUL on.
        self._shadow_tally = Tally()
        self._shadow: Channel | None = None

    @property
    def blocked(self) -> bool:
        return self.tally.blocked is not None or self._shadow_rule() is not None

    def _shadow_rule(self) -> _Rule | None:
        # A rule that would change or stop the text matched only in the shadow: it blocks
        # (a log rule there is only counted, as anywhere else).
        return next((r for r in self._shadow_tally.rules.values() if r.action != "log"), None)

    @property
    def blocked_rule(self) -> str:
        rule = self.tally.blocked or self._shadow_rule()
        return rule.name if rule is not None else "?"

    @property
    def blocked_type(self) -> str:
        if self.tally.blocked is not None:
            return self.tally.blocked_type
        rule = self._shadow_rule()
        return "permission_error" if rule is not None and rule.status == 403 else "invalid_request_error"

    @property
    def blocked_message(self) -> str:
        return f"The response was blocked by the gateway's filter rule {self.blocked_rule!r}"

    def verdicts(self) -> list[Verdict]:
        # A match only the shadow saw blocked the download, whatever its rule's action.
        shadow = [v if v.action == "log" else replace(v, action="block") for v in self._shadow_tally.verdicts()]
        return self.tally.verdicts() + shadow

    def feed(self, chunk: bytes) -> bytes:
        text = self._decoder.decode(chunk)
        out = "".join(self._channel.feed(text[i : i + _SLICE]) for i in range(0, len(text), _SLICE))
        if self._shadow is None and "\0" in text:
            self._shadow = self._rf.channel("text", self._shadow_tally, normalise=False)
        self._read_again(out)
        return b"" if self.blocked else _encode(out)

    def close(self) -> bytes:
        rest = self._decoder.decode(b"", final=True)  # a cut character at the very end: its bytes, kept
        out = (self._channel.feed(rest) if rest else "") + self._channel.flush()
        self._read_again(out)
        if self._shadow is not None:
            self._shadow.flush()
        return b"" if self.blocked else _encode(out)

    def _read_again(self, released: str) -> None:
        # What the rules released (their redactions made), NULs out: a match left is one the NULs hid.
        if self._shadow is not None and released:
            text = released.replace("\0", "")
            for i in range(0, len(text), _SLICE):
                self._shadow.feed(text[i : i + _SLICE])


def _encode(text: str) -> bytes:
    # The file's own bytes come back exactly; a marker's rule name that is not
    # UTF-8 (a lone surrogate from a config) cannot occur: names are config strings.
    return text.encode("utf-8", "surrogateescape")
