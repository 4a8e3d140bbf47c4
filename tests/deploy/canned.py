"""A host made of canned answers, for the steps' plan tests (pyinfra's per-operation cases are the model).

A case gives what the host answers to the read-only commands a plan runs
(and the files it reads); the connector fails on any other command, so a
plan that would change something while planning fails too. The host facts
(``ctx.facts``) are swapped for a copy that records which of them a plan
reads: a read the step does not declare in ``Step.reads`` fails the case,
and :func:`assert_declared` holds a step's cases to every fact it declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any

from claudegate.config.model import DeployConfig
from claudegate.connectors.base import Connector, Input, Result
from claudegate.deploy.context import Context, RunOptions
from claudegate.deploy.engine import Call, Change, Op, Put, Run, Step
from claudegate.deploy.facts import FACT_NAMES, HostFacts
from claudegate.deploy.layout import HostLayout

Answer = Callable[[list[str]], Result | None]
MISSING = Result(1, b"", b"")


def ok(text: str = "") -> Result:
    return Result(0, text.encode(), b"")


class Canned(Connector):
    """Answers read-only commands from ``answer`` and files from ``files``; anything else is an error."""

    target = "canned"

    def __init__(self, answer: Answer, files: dict[str, bytes] | None = None, *, root: bool = True) -> None:
        super().__init__()
        self.answer = answer
        self.files = files or {}
        self.root = root
        self.asked: list[list[str]] = []

    @property
    def is_root(self) -> bool:
        return self.root

    def run(
        self,
        argv: Sequence[str],
        *,
        input: Input | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = False,
        **_: Any,
    ) -> Result:
        self.asked.append(list(argv))
        found = self.answer(list(argv))
        if found is None:
            raise AssertionError(f"unexpected command in a plan: {argv}")
        return found

    def get_file(self, path: str, *, sudo: bool = False, timeout: float | None = None) -> bytes | None:
        return self.files.get(path)

    def put_file(self, path: str, data: bytes, mode: int, owner: str | None = None, **_: Any) -> None:
        raise AssertionError(f"a plan wrote {path}")


def nothing(argv: list[str]) -> Result | None:
    """A host that is asked nothing."""
    return None


class RecordingFacts(HostFacts):
    """Host facts that note each one read."""

    def __init__(self, facts: HostFacts) -> None:
        super().__init__(**{f.name: getattr(facts, f.name) for f in fields(HostFacts)})
        object.__setattr__(self, "read", set())

    def __getattribute__(self, name: str) -> Any:
        if name in FACT_NAMES:
            object.__getattribute__(self, "read").add(name)
        return object.__getattribute__(self, name)


def context(
    cfg: DeployConfig,
    answer: Answer = nothing,
    files: dict[str, bytes] | None = None,
    *,
    playbook: str = "deploy",
    dry_run: bool = False,
    facts: HostFacts | None = None,
    root: bool = True,
    **options: Any,
) -> Context:
    return Context(
        cfg=cfg,
        connector=Canned(answer, files, root=root),
        layout=HostLayout(),
        options=RunOptions(playbook, dry_run=dry_run, **options),
        facts=facts or HostFacts(),
    )


def recorded(step: Step, ctx: Context, phase: Callable[[Context], object] | None = None) -> set[str]:
    """Run ``phase`` (the step's plan) with recording facts; the facts it read, which must be declared."""
    facts = ctx.facts
    ctx.facts = RecordingFacts(facts)
    try:
        (phase or step.plan)(ctx)
    finally:
        watched, ctx.facts = ctx.facts, facts
        for f in fields(HostFacts):  # what the step learned stays learned
            setattr(facts, f.name, object.__getattribute__(watched, f.name))
        read: set[str] = object.__getattribute__(watched, "read")
        undeclared = read - type(step).reads
        # Checked on the way out of an error too (a case that expects one still must not read undeclared facts).
        assert not undeclared, f"step {step.name} reads facts it does not declare: {sorted(undeclared)}"
    return read


def plan(step: Step, ctx: Context) -> tuple[list[Change], set[str]]:
    """The step's plan and the facts it read (each declared, or the case fails)."""
    box: list[list[Change]] = []
    read = recorded(step, ctx, lambda c: box.append(step.plan(c)))
    return box[0], read


def assert_declared(step: type[Step], reads: Iterable[set[str]]) -> None:
    """The step's cases, together, read every fact it declares (no declaration outlives its read)."""
    seen = set().union(*reads)
    assert seen == set(step.reads), f"{step.__name__} declares {sorted(step.reads)}, its cases read {sorted(seen)}"


def kind(op: Op) -> str:
    """An operation for a table: ``docker <sub> [<sub>]``, a script's name, ``put PATH`` or ``call: WHAT``."""
    if isinstance(op, Call):
        return f"call: {op.what}"
    if isinstance(op, Put):
        return f"put {op.path}"
    assert isinstance(op, Run)
    argv = op.argv
    if argv[0] == "docker":
        if argv[1] == "exec":  # the gateway's keystore commands by action, others by program
            inner = [a for a in argv[2:] if not a.startswith("--")][1:]
            return "docker exec " + (" ".join(inner[inner.index("keys") : inner.index("keys") + 2])
                                     if "keys" in inner else inner[0])  # fmt: skip
        return " ".join(argv[:3] if argv[1] in ("container", "network", "image") else argv[:2])
    if argv[:2] == ("sh", "-c"):
        return argv[3]
    if argv[0] == "env" and "sh" in argv:
        return argv[argv.index("sh") + 3]
    return " ".join(argv[:2])


def kinds(change: Change) -> tuple[str, ...]:
    return tuple(kind(op) for op in change.ops)
