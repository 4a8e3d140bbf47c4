"""Keeping secrets out of output.

:class:`Secret` wraps a secret value (the Anthropic key, a gateway pepper, a
client key) so that printing, logging, formatting or ``repr`` of it -- or of
any dataclass / pydantic model holding it -- shows ``********``. The value is
read only on purpose, with :meth:`Secret.reveal`, at the single place it is
sent somewhere (stdin of a command, a 0600 file).

:func:`redact` is the second line of defence: every text that leaves the
core (command lines in errors, stderr tails, logs) is passed through it with
the secrets in play, so a value that slipped into output is masked anyway.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any, overload

__all__ = ["MASK", "Secret", "redact"]

MASK = "********"


class Secret:
    """A secret value that never shows itself by accident.

    ``str()``, ``repr()``, ``format()`` and f-strings all give ``********``.
    It is deliberately *not* a ``str`` subclass: a ``str`` subclass leaks its
    value through concatenation, ``%``-formatting, ``json.dumps`` and every
    C function that reads the underlying buffer.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call only where it is sent to its destination."""
        return self._value

    def reveal_bytes(self) -> bytes:
        """The secret encoded as UTF-8 (for a command's stdin or a file)."""
        return self._value.encode("utf-8")

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def _values(secrets: Iterable[str | Secret | None]) -> list[str]:
    values = set()
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            values.add(value)
    # Longest first, so a secret that contains another is masked whole.
    return sorted(values, key=len, reverse=True)


@overload
def redact(text: str, secrets: Iterable[str | Secret | None]) -> str: ...
@overload
def redact(text: bytes, secrets: Iterable[str | Secret | None]) -> bytes: ...


def redact(text: str | bytes, secrets: Iterable[str | Secret | None]) -> str | bytes:
    """Return ``text`` with every occurrence of every secret replaced by ``********``.

    Works on ``str`` and on ``bytes`` (secrets are matched as UTF-8 there).
    Empty and None secrets are ignored.
    """
    values = _values(secrets)
    if isinstance(text, bytes):
        for value in values:
            text = text.replace(value.encode("utf-8"), MASK.encode())
        return text
    for value in values:
        text = text.replace(value, MASK)
    return text
