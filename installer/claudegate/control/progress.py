"""Progress events: how the engine tells a front end what it is doing.

The engine prints nothing. It calls the ``reporter`` it was given with one
:class:`StepEvent` per moment worth showing; the CLI renders them as lines,
the TUI as a step list. The same type carries sub-step work (image build
lines, bytes sent, wheel downloads, health waits: ``work``) and smoke-test
checks (``check``), so a front end has one callback for everything. A
reporter must not raise (an exception from it is
ignored, so a broken display cannot break a deploy half-way).

While a step runs, :class:`Heartbeat` makes sure something is said at least
every few seconds even when the work itself is silent (an ``apt-get`` inside
an image build, a ``docker load``, a health wait): a ``work`` event with
``heartbeat`` set, naming what was last reported and the step's elapsed time.
Front ends need no timer of their own for that, on a terminal or off it (a
CI log sees the same lines).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal

__all__ = ["HEARTBEAT_QUIET", "EventKind", "Heartbeat", "Reporter", "StepEvent", "heartbeat", "null_reporter"]

#: Seconds without any event in a step before a heartbeat is sent: under 5 s,
#: so a front end that prints every event has a line at least every 5 s.
HEARTBEAT_QUIET = 4.0

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
    #: A ``work`` event sent only because the step had been quiet (see :class:`Heartbeat`);
    #: ``done`` is then the step's elapsed seconds (``unit`` ``s``).
    heartbeat: bool = False


Reporter = Callable[[StepEvent], None]


def null_reporter(event: StepEvent) -> None:
    """The reporter used when none is given: shows nothing."""


class Heartbeat:
    """Wraps a reporter; while running, sends a heartbeat when ``quiet`` seconds pass with no event.

    Events are passed on under a lock, so the front end never sees two at
    once (the heartbeat comes from its own thread). The heartbeat repeats the
    last thing reported ("still building gateway: RUN apt-get ...") with the
    step's elapsed time, so a long silent command still reads as alive.
    """

    def __init__(
        self,
        reporter: Reporter,
        *,
        step: str,
        title: str,
        index: int,
        total: int,
        quiet: float = HEARTBEAT_QUIET,
    ) -> None:
        self._reporter = reporter
        self._step, self._title, self._index, self._total = step, title, index, total
        self._quiet = quiet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = self._last = time.monotonic()
        self._doing = ""
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{step}", daemon=True)

    def __call__(self, event: StepEvent) -> None:
        with self._lock:
            self._last = time.monotonic()
            if event.kind in ("work", "note") and event.message and not event.heartbeat:
                self._doing = event.message
            with suppress(Exception):
                self._reporter(event)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        tick = min(0.5, self._quiet / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            if now - self._last < self._quiet:
                continue
            doing = self._doing or f"working on {self._title}"
            elapsed = now - self._started
            self(
                StepEvent(
                    kind="work",
                    step=self._step,
                    title=self._title,
                    index=self._index,
                    total=self._total,
                    message=f"still {doing}",
                    done=float(round(elapsed)),
                    unit="s",
                    heartbeat=True,
                )
            )


@contextmanager
def heartbeat(
    reporter: Reporter, *, step: str, title: str, index: int, total: int, quiet: float | None = None
) -> Iterator[Reporter]:
    """A :class:`Heartbeat` around ``reporter`` for the ``with`` block (the step's run).

    ``quiet`` defaults to :data:`HEARTBEAT_QUIET`, read when called (tests shorten it).
    """
    beat = Heartbeat(
        reporter, step=step, title=title, index=index, total=total,
        quiet=HEARTBEAT_QUIET if quiet is None else quiet,
    )  # fmt: skip
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()
