"""Progress events: how the engine tells a front end what it is doing.

The engine prints nothing. It calls the ``reporter`` it was given with one
:class:`StepEvent` per moment worth showing; the CLI renders them as lines,
the TUI as a step list. The same type carries sub-step work (image build
lines, bytes sent, wheel downloads, health waits: ``work``) and smoke-test
checks (``check``), so a front end has one callback for everything. A
reporter must not raise (an exception from it is
ignored, so a broken display cannot break a deploy half-way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["EventKind", "Reporter", "StepEvent", "null_reporter"]

EventKind = Literal["start", "plan", "finish", "fail", "note", "work", "check"]


@dataclass(frozen=True)
class StepEvent:
    r"""One moment of a run.

    - ``start``: a step begins (``index`` of ``total``, 1-based);
    - ``plan``: its facts are in; ``changes`` lists what it will do (empty: nothing);
    - ``note``: something to say mid-step (``message``), e.g. "waiting for the gateway";
    - ``finish``: it is done; ``changed`` tells whether it changed the host;
    - ``fail``: it failed with ``message`` (already redacted);
    - ``work``: progress inside a step: ``message`` says what (a build line,
      "sending the build context"), ``done`` of ``expected`` ``unit``\s
      (``expected`` None when unknown; units: ``bytes``, ``s``, ``lines``);
    - ``check``: one smoke-test check: ``message`` is its name, ``status``
      ``pass``/``fail``/``skip``, ``detail`` what it saw.
    """

    kind: EventKind
    step: str
    title: str
    index: int
    total: int
    changes: tuple[str, ...] = ()
    changed: bool = False
    elapsed: float = 0.0
    message: str = ""
    done: float | None = None
    expected: float | None = None
    unit: str = ""
    status: str = ""
    detail: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / expected`` in 0..1 for a ``work`` event whose total is known, else None."""
        if self.done is None or not self.expected:
            return None
        return max(0.0, min(1.0, self.done / self.expected))


Reporter = Callable[[StepEvent], None]


def null_reporter(event: StepEvent) -> None:
    """The reporter used when none is given: shows nothing."""
