"""Progress events: how the engine tells a front end what it is doing.

The engine prints nothing. It calls the ``reporter`` it was given with one
:class:`StepEvent` per moment worth showing; the CLI renders them as lines,
the TUI as a step list. A reporter must not raise (an exception from it is
ignored, so a broken display cannot break a deploy half-way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["EventKind", "Reporter", "StepEvent", "null_reporter"]

EventKind = Literal["start", "plan", "finish", "fail", "note"]


@dataclass(frozen=True)
class StepEvent:
    """One moment of a run.

    - ``start``: a step begins (``index`` of ``total``, 1-based);
    - ``plan``: its facts are in; ``changes`` lists what it will do (empty: nothing);
    - ``note``: something to say mid-step (``message``), e.g. "waiting for the gateway";
    - ``finish``: it is done; ``changed`` tells whether it changed the host;
    - ``fail``: it failed with ``message`` (already redacted).
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


Reporter = Callable[[StepEvent], None]


def null_reporter(event: StepEvent) -> None:
    """The reporter used when none is given: shows nothing."""
