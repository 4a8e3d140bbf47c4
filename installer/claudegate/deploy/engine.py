"""The playbook engine: steps that gather facts, plan, apply and verify.

A :class:`Step` looks at the host (facts, through the connector) and
returns the :class:`Change` list still needed -- empty when the host already
matches. Each change carries its operations as data: :class:`Run` (an argv
list), :class:`Put` (a file with mode and owner) or, where a wait loop or a
stream is needed, :class:`Call`. The engine then, per step::

    start -> plan -> (dry run: stop here) -> apply -> verify -> perform -> finish

``verify`` re-plans by default and fails if anything is still missing;
``perform`` is work that is not a change to the host's desired state (take
the lock, run the smoke test) and happens in real runs only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from claudegate.connectors.base import Input
from claudegate.deploy.facts import FACT_NAMES
from claudegate.deploy.progress import Reporter, heartbeat
from claudegate.errors import Cancelled, ClaudegateError, CommandFailed, ConnectionFailed, DeployFailed
from claudegate.redact import redact

if TYPE_CHECKING:
    from claudegate.control.interaction import ConsentQuestion
    from claudegate.deploy.context import Context

__all__ = ["Call", "Change", "Op", "Put", "Run", "Step", "StepOutcome", "run_steps"]


@dataclass(frozen=True)
class Run:
    """Run ``argv`` on the target (as root when ``sudo`` and the target uses sudo)."""

    argv: tuple[str, ...]
    input: bytes | Callable[[], Input] | None = None
    sudo: bool = True
    timeout: float | None = 120.0
    #: When set, the command's output is reported as ``work`` events named by it (e.g. an image build),
    #: and a cancel abandons the command at its next output (only for commands safe to abandon).
    progress: str = ""
    #: False: a failure is expected and fine (an image another installation still uses is not removed).
    check: bool = True


@dataclass(frozen=True)
class Put:
    """Write a file on the target atomically, with mode and owner (secrets go this way)."""

    path: str
    data: bytes
    mode: int
    owner: str | None = None

    def __repr__(self) -> str:  # the content may be a secret
        return f"Put({self.path!r}, <{len(self.data)} bytes>, {self.mode:#o}, {self.owner!r})"


@dataclass(frozen=True)
class Call:
    """Python work that is not one command (wait loops, streamed transfers, a command whose output is kept).

    Plans show a Call by its ``what`` only, so work that is one command is a :class:`Run`.
    """

    what: str
    fn: Callable[[Context], None]


Op = Run | Put | Call


@dataclass(frozen=True)
class Change:
    """One thing a step will change, for people (``summary``, ``diff``) and for the engine (``ops``)."""

    summary: str
    ops: tuple[Op, ...] = ()
    diff: str = ""
    #: Asked through the session's interaction before the change is applied (a no stops the run).
    consent: ConsentQuestion | None = None


class Step:
    """Base of every step; subclasses set ``name`` and ``title`` and override what they need."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: The host facts (``ctx.facts``, :class:`~.facts.HostFacts`) the step reads, learned by earlier steps.
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = cls.reads - FACT_NAMES
        if unknown:  # a typo here would make the declaration test vacuous
            raise TypeError(f"{cls.__name__}.reads names no host fact: {', '.join(sorted(unknown))}")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def plan(self, ctx: Context) -> list[Change]:
        """Gather facts and return what is still needed (no side effects on the host)."""
        return []

    def apply(self, ctx: Context, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.consent is not None:
                ctx.consent(change.consent)
            for op in change.ops:
                ctx.check_cancelled()
                ctx.execute(op)

    def verify(self, ctx: Context) -> None:
        left = self.plan(ctx)
        if left:
            raise DeployFailed(
                f"step {self.name}: still not done after applying: " + "; ".join(c.summary for c in left)
            )

    def perform(self, ctx: Context) -> None:
        """Work of a real run that is not a change (the lock, the smoke test)."""


@dataclass(frozen=True)
class StepOutcome:
    name: str
    title: str
    changes: tuple[Change, ...]
    changed: bool
    elapsed: float


def run_steps(ctx: Context, steps: Sequence[Step]) -> list[StepOutcome]:
    """Run ``steps`` in order (plans only, in a dry run); see the module docstring."""
    outcomes: list[StepOutcome] = []
    total = len(steps)
    try:
        for index, step in enumerate(steps, 1):
            with heartbeat(ctx.reporter, step=step.name, title=step.title, index=index, total=total) as beat:
                outcomes.append(_run_step(ctx, step, index, total, beat))
    finally:
        ctx.stop_background()  # e.g. images sent ahead that a failed or cancelled run never loaded
    return outcomes


def _run_step(ctx: Context, step: Step, index: int, total: int, beat: Reporter) -> StepOutcome:
    # The step's events go through the heartbeat, which speaks up when the step is quiet.
    reporter, ctx.reporter = ctx.reporter, beat
    try:
        return _run_one(ctx, step, index, total)
    finally:
        ctx.reporter = reporter


def _run_one(ctx: Context, step: Step, index: int, total: int) -> StepOutcome:
    started = time.monotonic()
    ctx.begin_step(step, index, total)
    ctx.emit("start")
    try:
        ctx.check_cancelled()
        if ctx.state.lock is not None:
            ctx.state.lock.refresh_if_due()
        changes = step.plan(ctx)
        ctx.emit("plan", changes=tuple(c.summary for c in changes))
        if not ctx.options.dry_run:
            if changes:
                step.apply(ctx, changes)
                step.verify(ctx)
            step.perform(ctx)
            if changes:
                ctx.mark_step(step.name, changed=True)
    except BaseException as exc:
        ctx.emit("fail", elapsed=time.monotonic() - started, message=_describe(ctx, exc))
        _abort(ctx, exc)
        if isinstance(exc, CommandFailed):
            raise DeployFailed(
                f"step {step.name} ({step.title}) failed: {exc}",
                hint="nothing was switched; the release that served before keeps serving",
            ) from exc
        raise
    elapsed = time.monotonic() - started
    ctx.emit("finish", changed=bool(changes), elapsed=elapsed)
    return StepOutcome(step.name, step.title, tuple(changes), bool(changes), elapsed)


def _describe(ctx: Context, exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Cancelled):
        return "cancelled"
    return ctx.connector.redact(redact(str(exc) or type(exc).__name__, ctx.secrets()))


def _abort(ctx: Context, exc: BaseException) -> None:
    """Leave the host resumable: release the lock when we still can talk to it."""
    if ctx.options.dry_run:
        return
    if isinstance(exc, Cancelled | KeyboardInterrupt) and ctx.state.journal is not None:
        # Say in the journal where it stopped; it stays unfinished, so the next run resumes.
        step = ctx.current_step or "?"
        ctx.state.journal.stop(f"cancelled in step {step}")
        with contextlib.suppress(ClaudegateError, OSError):
            ctx.save_journal()
    if ctx.state.lock is None:
        return
    if isinstance(exc, ConnectionFailed):
        ctx.state.lock.forget()
        return
    try:
        ctx.state.lock.release()
    except (ClaudegateError, OSError):
        ctx.state.lock.forget()
