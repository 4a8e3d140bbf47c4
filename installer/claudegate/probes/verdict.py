"""A probe's verdict as an exception, and one line for what went wrong on the wire.

A check function returns the detail of a pass; it raises :class:`Failed` or
:class:`Skipped` with the detail otherwise. The smoke test's runner turns
them into report rows, the audit's probes into evidence and problems.
"""

from __future__ import annotations

import ssl

import httpx


class Failed(Exception):
    """A check's verdict: fail with this detail."""


class Skipped(Exception):
    """A check's verdict: skip with this detail."""


def describe_error(exc: BaseException) -> str:
    """``Type: what happened`` for a network or TLS error, with the certificate's own reason if any."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = exc.verify_message
    elif isinstance(exc, httpx.TimeoutException):
        text = f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (an httpx error wraps the socket's)."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt
