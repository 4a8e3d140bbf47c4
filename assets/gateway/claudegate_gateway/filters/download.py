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
"""

from __future__ import annotations

import codecs

from claudegate_gateway.filters.response import ResponseFilter, Tally
from claudegate_gateway.filters.results import Verdict

__all__ = ["HOLD_BYTES", "DownloadFilter"]

HOLD_BYTES = 1 << 20
# Fed to the channel this many characters at a time: its work per call stays small.
_SLICE = 64 * 1024


class DownloadFilter:
    """Filter one download; ``feed`` each chunk, then ``close``. ``blocked`` once a block rule matched."""

    def __init__(self, rf: ResponseFilter) -> None:
        self.tally = Tally()
        self._channel = rf.channel("text", self.tally)
        # Incremental: a character cut by a chunk boundary waits for its other bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    @property
    def blocked(self) -> bool:
        return self.tally.blocked is not None

    def verdicts(self) -> list[Verdict]:
        return self.tally.verdicts()

    def feed(self, chunk: bytes) -> bytes:
        text = self._decoder.decode(chunk)
        out = [self._channel.feed(text[i : i + _SLICE]) for i in range(0, len(text), _SLICE)]
        return b"" if self.blocked else _encode("".join(out))

    def close(self) -> bytes:
        rest = self._decoder.decode(b"", final=True)  # a cut character at the very end: its bytes, kept
        out = (self._channel.feed(rest) if rest else "") + self._channel.flush()
        return b"" if self.blocked else _encode(out)


def _encode(text: str) -> bytes:
    # The file's own bytes come back exactly; a marker's rule name that is not
    # UTF-8 (a lone surrogate from a config) cannot occur: names are config strings.
    return text.encode("utf-8", "surrogateescape")
