"""``text/event-stream`` read incrementally, and the order an Anthropic message stream must keep."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    arrived: float  # seconds since the request was sent


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed bytes, get complete events."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder_pending = b""
        self._cr_pending = ""

    def feed(self, chunk: bytes, arrived: float) -> list[SSEEvent]:
        data = self._decoder_pending + chunk
        try:
            text = data.decode("utf-8")
            self._decoder_pending = b""
        except UnicodeDecodeError as exc:  # a character split across chunks
            text = data[: exc.start].decode("utf-8")
            self._decoder_pending = data[exc.start :]
        text = self._cr_pending + text
        # A CR at the end may be the first half of a CRLF split across chunks: keep it for later.
        self._cr_pending = "\r" if text.endswith("\r") else ""
        text = text[:-1] if self._cr_pending else text
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events = []
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            event, lines = "message", []
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    lines.append(value)
            if lines or event != "message":
                events.append(SSEEvent(event, "\n".join(lines), arrived))
        return events


def stream_problems(events: list[SSEEvent]) -> list[str]:
    """What is wrong with the order of an Anthropic message stream (empty when it is right)."""
    names = [e.event for e in events if e.event != "ping"]
    for e in events:
        if e.event == "error":
            try:
                err = json.loads(e.data).get("error", {})
                return [f"the stream carried an error event: {err.get('type')}: {err.get('message')}"]
            except (ValueError, AttributeError):
                return ["the stream carried an error event"]
        try:
            payload = json.loads(e.data)
        except ValueError:
            return [f"event {e.event!r} has data that is not JSON"]
        if not isinstance(payload, dict) or payload.get("type") != e.event:
            return [f"event {e.event!r} has data of another type"]
    if not names:
        return ["no events"]
    problems = []
    if names[0] != "message_start":
        problems.append(f"first event is {names[0]}, not message_start")
    if names[-1] != "message_stop":
        problems.append(f"last event is {names[-1]}, not message_stop (the stream was cut short)")
    if names.count("message_start") != 1 or names.count("message_stop") != 1:
        problems.append("message_start and message_stop must come exactly once")
    allowed = {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
    unknown = sorted(set(names) - allowed)
    if unknown:
        problems.append(f"unexpected events: {', '.join(unknown)}")
    if "message_delta" not in names:
        problems.append("no message_delta")
    elif "message_stop" in names and names.index("message_delta") > names.index("message_stop"):
        problems.append("message_delta after message_stop")
    if "content_block_delta" not in names:
        problems.append("no content_block_delta")
    return problems
