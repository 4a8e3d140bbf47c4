"""What a filter decided: verdicts and results that never carry matched text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One rule that fired. Never holds matched text.

    ``detectors`` (names of the detectors that fired, for detector rules) is
    extra audit detail; it is left out of ``==`` so a verdict still compares
    as the (rule, action, matches) triple.
    """

    rule: str
    action: str
    matches: int
    detectors: tuple[str, ...] = field(default=(), compare=False)
    direction: str = field(default="request", compare=False)


_ERROR_TYPES = {400: "invalid_request_error", 403: "permission_error"}


@dataclass
class FilterResult:
    """What :meth:`FilterPolicy.apply` decided.

    ``body`` is the input itself when nothing changed (and when blocked); when
    redacted it is a new top-level dict whose changed branches are copies and
    whose other branches are shared with the input: treat both as read-only.
    It is left out of ``repr`` so logging a result cannot leak the request.
    """

    body: dict[str, Any] = field(repr=False)
    changed: bool
    blocked: Verdict | None
    status: int  # 400 / 403 when blocked, 200 otherwise
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def error_type(self) -> str:
        """Anthropic error type for the block status (``invalid_request_error`` / ``permission_error``)."""
        return _ERROR_TYPES.get(self.status, "invalid_request_error")

    @property
    def message(self) -> str:
        """Client-facing text for a block; names the rule, never the content."""
        if self.blocked is None:
            return ""
        return f"request blocked by the gateway content filter (rule '{self.blocked.rule}')"


