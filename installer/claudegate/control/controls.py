"""The run-wide controls a session hands to the core: cancel token, interaction, progress.

The deploy facade (:mod:`claudegate.deploy.api`) is a set of functions that
build a step :class:`~claudegate.deploy.context.Context` per run; rather than
thread three more arguments through every one of them, a
:class:`~claudegate.session.Session` sets these controls for the duration of a
call (:func:`using`) and the context, the wait loops and the smoke test read
them (:func:`current`). They are a :mod:`contextvars` variable, so a run in
one thread never sees another thread's controls.

Outside a session (the deploy's functions called directly, as tests do)
the defaults apply: nothing cancels, nobody is asked (consent
is taken as given), progress goes nowhere extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from claudegate.control.cancel import NEVER, CancelToken

if TYPE_CHECKING:
    from claudegate.control.interaction import Interaction
    from claudegate.control.progress import StepEvent

__all__ = ["RunControls", "current", "using"]


@dataclass(frozen=True)
class RunControls:
    cancel: CancelToken = NEVER
    interaction: Interaction | None = None
    #: Receives sub-step work events emitted outside a step context (e.g. the smoke test run alone).
    progress: Callable[[StepEvent], None] | None = None


_DEFAULT = RunControls()
_current: ContextVar[RunControls] = ContextVar("claudegate_run_controls", default=_DEFAULT)


def current() -> RunControls:
    return _current.get()


@contextlib.contextmanager
def using(controls: RunControls) -> Iterator[RunControls]:
    token = _current.set(controls)
    try:
        yield controls
    finally:
        _current.reset(token)
