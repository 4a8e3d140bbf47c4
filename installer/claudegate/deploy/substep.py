"""Progress inside a step: bytes sent, build output lines, both as ``work`` events.

The images step is the long one on a fresh server (minutes): without these
a front end shows nothing between "Images …" and its end. Both helpers call
``report(message, done, expected, unit)`` (a :meth:`Context.work`), throttled so
a fast stream does not flood the display.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

__all__ = ["BuildOutput", "CountingReader", "Report", "build_progress"]

Report = Callable[[str, float | None, float | None, str], None]

# The legacy builder says "Step 3/12 : RUN ...", BuildKit "#7 [3/6] RUN ...".
_STEP_LEGACY = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_STEP_BUILDKIT = re.compile(r"^#\d+ \[(?:[^\]]*? )?(\d+)/(\d+)\] (.*)$")


def build_progress(line: str) -> tuple[int, int, str] | None:
    """``(step, steps, instruction)`` from one line of ``docker build`` output, if it starts a step."""
    for pattern in (_STEP_LEGACY, _STEP_BUILDKIT):
        found = pattern.match(line.strip())
        if found:
            return int(found.group(1)), int(found.group(2)), found.group(3)
    return None


class CountingReader(io.RawIOBase):
    """A readable stream over ``data`` that reports how many bytes were read (sent) so far."""

    def __init__(self, data: bytes, what: str, report: Report, *, every: float = 0.5) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0
        self.what = what
        self._report = report
        self._every = every
        self._last = float("-inf")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        chunk = self._data[self._pos : self._pos + len(view)]
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        now = time.monotonic()
        if now - self._last >= self._every or self._pos == len(self._data):
            self._last = now
            self._report(self.what, float(self._pos), float(len(self._data)), "bytes")
        return len(chunk)

    @property
    def sent(self) -> int:
        return self._pos


class BuildOutput:
    """Splits a command's output chunks into lines; reports build steps (and other lines, throttled)."""

    def __init__(
        self, what: str, report: Report, *, every: float = 2.0, check: Callable[[], None] | None = None
    ) -> None:
        self.what = what
        self._report = report
        #: Called with every chunk; raising (Cancelled) abandons the command (an image build: nothing is tagged).
        self._check = check
        self._every = every
        self._pending = b""
        self._last = float("-inf")  # the first line is always shown
        self.lines = 0

    def __call__(self, chunk: bytes) -> None:
        if self._check is not None:
            self._check()
        self._pending += chunk
        *complete, self._pending = self._pending.split(b"\n")
        for raw in complete:
            self._line(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        self.lines += 1
        step = build_progress(line)
        now = time.monotonic()
        if step is not None:
            self._last = now
            done, steps, instruction = step
            self._report(f"{self.what}: {instruction[:100]}", float(done), float(steps), "steps")
        elif now - self._last >= self._every:
            self._last = now
            self._report(f"{self.what}: {line.strip()[:100]}", float(self.lines), None, "lines")
