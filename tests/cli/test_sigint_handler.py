"""Ctrl-C during a deploy: the first one cancels at the next safe point, whatever the main thread was doing.

A pristine CI run sent SIGINT while the deploy was writing a progress line; the
handler's own write to sys.stderr raised "reentrant call", the cancel that came
after it never happened, and the deploy ran to its end (exit 7, not 130).
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from claudegate.cli.options import _cancel_on_sigint


class Running:
    def __init__(self) -> None:
        self.cancelled: str | None = None

    def cancel(self, why: str) -> None:
        self.cancelled = why


class BusyStderr:
    """A stream in the middle of a write, as the main thread's progress line leaves it."""

    def write(self, text: str) -> int:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

    def flush(self) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")


def test_the_first_ctrl_c_cancels_even_while_stderr_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    running = Running()
    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(sys, "stderr", BusyStderr())
    with _cancel_on_sigint(running):
        os.kill(os.getpid(), signal.SIGINT)
        assert running.cancelled == "interrupted (Ctrl-C)"
        with pytest.raises(KeyboardInterrupt):  # the second one stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
