"""Usage metering from Anthropic responses, without holding anything back.

For streams the bytes are forwarded first and only then shown to the meter,
which looks at just the events that carry usage (``message_start``,
``message_delta``) and mid-stream ``error`` events. The one look before
forwarding (:meth:`UsageMeter.peek_outputs`) reads only the rare events that
name files a code execution wrote, so they are the caller's before it sees them.

What a request is finally charged (``charge``, the settle step) cannot be
dodged by leaving: upstream generates, and bills, whether or not anyone
stays to read, so a request that upstream may have started and whose final
usage never arrived (the client left at any point, upstream broke off or
timed out) pays its whole reservation (input estimate, referenced content,
max_tokens). A request upstream answered with an error, or never received,
pays what upstream reported (nothing).
"""

from __future__ import annotations

import json
from typing import Any

from claudegate_gateway.ownership import MAX_OUTPUT_FILES, output_file_ids


def usage_tokens(usage: dict[str, Any]) -> int:
    """All the tokens one ``usage`` object bills: input (cache writes and reads included) and output."""
    out = usage.get("output_tokens")
    return _usage_input(usage) + (out if isinstance(out, int) and not isinstance(out, bool) else 0)


def _usage_input(usage: dict[str, Any]) -> int:
    total = 0
    for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(key)
        if isinstance(value, int):
            total += value
    return total


# In every code execution result block's type (code, bash and text editor execution).
_OUTPUT_MARK = b"code_execution_tool_result"


class UsageMeter:
    # One per request, held as long as it (a stream's for minutes).
    __slots__ = (
        "_buf", "_taken", "container_id", "final", "input_tokens", "model", "output_files", "output_tokens",
        "saw_stop", "stream_error",
    )

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.model: str | None = None
        self.stream_error: str | None = None
        self.saw_stop = False
        self.final = False  # upstream's final usage has arrived
        self.container_id: str | None = None  # the code execution container upstream used (ownership)
        # Files the request's code execution wrote (ownership.output_file_ids), in order; the first
        # ``_taken`` of them have been handed out by take_output_files.
        self.output_files: list[str] = []
        self._taken = 0
        self._buf = b""

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def read_message(self, body: bytes) -> None:
        """Usage from a whole (non-streamed) Messages response."""
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if isinstance(doc, dict):
            usage = doc.get("usage")
            if isinstance(usage, dict):
                self.input_tokens = _usage_input(usage)
                out = usage.get("output_tokens")
                self.output_tokens = out if isinstance(out, int) else 0
                self.final = True
            if isinstance(doc.get("model"), str):
                self.model = doc["model"]
            self._container(doc.get("container"))
            content = doc.get("content")
            for block in content if isinstance(content, list) else ():
                self._outputs(block)

    def _outputs(self, block: Any) -> None:
        for file_id in output_file_ids(block):
            if len(self.output_files) < MAX_OUTPUT_FILES and file_id not in self.output_files:
                self.output_files.append(file_id)

    def peek_outputs(self, chunk: bytes) -> bool:
        """Before ``chunk`` is forwarded (and fed): note the output files of the events it completes.

        Usage is still metered only after the bytes left (``feed``); this only
        reads the rare events naming code execution outputs, so their files are
        recorded before the client sees the ids. True when new ones were noted.
        """
        buf = self._buf  # the event in progress (at most 1 MiB: feed lets go of more)
        if _OUTPUT_MARK not in chunk and _OUTPUT_MARK not in buf and _OUTPUT_MARK not in buf[-64:] + chunk[:64]:
            return False
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = self._buf + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            return False
        before = len(self.output_files)
        for raw in data[:end].split(b"\n\n"):
            if _OUTPUT_MARK in raw and b"content_block_start" in raw:
                self._event(raw, outputs_only=True)
        return len(self.output_files) > before

    def take_output_files(self) -> list[str]:
        """The output files seen since the last call (to record as the client's before it is shown them)."""
        new = self.output_files[self._taken :]
        self._taken = len(self.output_files)
        return new

    @property
    def taken(self) -> int:
        """How many output files take_output_files has handed out."""
        return self._taken

    def _container(self, value: Any) -> None:
        found = value.get("id") if isinstance(value, dict) else None
        if isinstance(found, str):
            self.container_id = found

    def feed(self, chunk: bytes) -> None:
        """Look at a piece of an event stream that has already been forwarded."""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buf[start:end])
            start = end + 2
        self._buf = buf[start:]
        if len(self._buf) > 1 << 20:
            # An event this large carries no usage we care about; do not hoard it.
            self._buf = b""

    def _event(self, raw: bytes, *, outputs_only: bool = False) -> None:
        if (
            b"message_start" not in raw and b"message_delta" not in raw and b"error" not in raw
            and _OUTPUT_MARK not in raw
        ):
            return
        data = b"".join(line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:"))
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if outputs_only:
            if kind == "content_block_start":
                self._outputs(doc.get("content_block"))
            return
        if kind == "message_start":
            message = doc.get("message") or {}
            usage = message.get("usage") or {}
            self.input_tokens = _usage_input(usage)
            out = usage.get("output_tokens")
            self.output_tokens = out if isinstance(out, int) else 0
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._container(message.get("container"))
        elif kind == "message_delta":
            delta = doc.get("delta")
            if isinstance(delta, dict):
                self._container(delta.get("container"))
            usage = doc.get("usage") or {}
            out = usage.get("output_tokens")
            if isinstance(out, int):
                self.output_tokens = out  # cumulative, per the API
            if usage.get("input_tokens") is not None:
                self.input_tokens = max(self.input_tokens, _usage_input(usage))
            self.saw_stop = True
            self.final = True
        elif kind == "content_block_start":
            # A server tool's result arrives whole here; only a whole, parsed event counts.
            self._outputs(doc.get("content_block"))
        elif kind == "error":
            err = doc.get("error") or {}
            self.stream_error = str(err.get("type", "error"))


def charge(reserved: int, meter: UsageMeter, *, started: bool) -> int:
    """Tokens a generating request is charged, given what it reserved.

    Upstream's final usage wins whenever it arrived. Without it, a request
    upstream may have started (``started``: sent, and not answered with an
    error status) pays its reservation; otherwise what upstream reported.
    """
    if meter.final:
        return meter.total
    if started:
        return max(reserved, meter.total)
    return meter.total
