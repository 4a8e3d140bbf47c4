"""Cancelling a run from another thread: one token, one cancellable sleep.

A front end creates a :class:`CancelToken`, hands it to the session, and
calls :meth:`CancelToken.cancel` from any thread (the wizard's Cancel button,
the CLI's Ctrl-C handler). The core checks it between steps
(:meth:`CancelToken.raise_if_cancelled`) and every wait loop sleeps through
:func:`sleep`, which returns early and raises
:class:`~claudegate.errors.Cancelled` when the token fires. A command that is
running on the host is not killed half-way: the run stops at the next check,
which is at most one poll interval of a wait or the end of that command.

This module imports nothing but the standard library and the error tree, so
every layer (connectors, steps, smoke test) can use it.
"""

from __future__ import annotations

import threading
import time

from claudegate.errors import Cancelled

__all__ = ["NEVER", "CancelToken", "sleep"]


class CancelToken:
    """Set once, from any thread; read by the run at every step and every wait."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "cancelled"
        self._lock = threading.Lock()

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the run to stop at its next check. Safe to call twice, from any thread."""
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def raise_if_cancelled(self, *, step: str | None = None) -> None:
        if self._event.is_set():
            raise Cancelled(self._reason, step=step)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the token fired (then return at once)."""
        return self._event.wait(max(0.0, seconds))


class _Never(CancelToken):
    """The token of a run nobody can cancel (cancel() is refused)."""

    def cancel(self, reason: str = "cancelled") -> None:
        raise RuntimeError("NEVER cannot be cancelled; create a CancelToken for a cancellable run")


#: The default token: never fires.
NEVER: CancelToken = _Never()


def sleep(seconds: float, token: CancelToken | None = None, *, step: str | None = None) -> None:
    """``time.sleep`` that raises :class:`~claudegate.errors.Cancelled` as soon as ``token`` fires.

    Every wait loop in the deploy steps, the connectors and the smoke test
    sleeps through this function.
    """
    if token is None or token is NEVER:
        time.sleep(max(0.0, seconds))
        return
    if token.wait(seconds):
        token.raise_if_cancelled(step=step)
