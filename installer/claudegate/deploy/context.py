"""One run's context, carried from step to step, in three parts kept apart.

- :class:`RunOptions` (``ctx.options``): what the run was asked; frozen.
- :class:`~.facts.HostFacts` (``ctx.facts``): what was learned from the host;
  each step declares the ones it reads (``Step.reads``).
- :class:`RunState` (``ctx.state``): what the run read, decided and did.

The context also runs commands through the connector, asks for consent,
reports progress and keeps the journal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from claudegate.connectors.base import Connector, Input, Result
from claudegate.control import cancel as _cancel
from claudegate.control.controls import RunControls, current
from claudegate.control.progress import EventKind, Reporter, StepEvent, null_reporter
from claudegate.deploy.engine import Call, Put, Run, Step
from claudegate.deploy.facts import HostFacts
from claudegate.deploy.journal import Journal
from claudegate.deploy.layout import HostLayout
from claudegate.deploy.substep import BuildOutput
from claudegate.errors import Declined
from claudegate.redact import Secret

if TYPE_CHECKING:
    from claudegate.config.model import DeployConfig
    from claudegate.control.interaction import ConsentQuestion
    from claudegate.deploy.images_ahead import ImagesAhead
    from claudegate.deploy.lock import RemoteLock
    from claudegate.deploy.release import Release
    from claudegate.deploy.tls_material import TLSMaterial
    from claudegate.smoke import SmokeReport

__all__ = ["Context", "RunOptions", "RunState"]


@dataclass(frozen=True)
class RunOptions:
    """What the run was asked besides the config: typed, so a step cannot read an option nobody sets."""

    #: The playbook that runs (``deploy``, ``rollback``, ``uninstall``, ``renew``; ``restore`` for its waits).
    playbook: str
    #: Plan only: nothing on the host changes (no lock, no journal, no question asked).
    dry_run: bool = False
    #: deploy: rebuild the images without cache from a freshly fetched base, under a new tag.
    refresh: bool = False
    #: deploy: revoke clients the keystore holds but deploy.yaml no longer lists.
    prune: bool = False
    #: uninstall: keep the keystore, the secrets and the certificates.
    keep_data: bool = False
    #: uninstall: keep the images.
    keep_images: bool = False
    #: deploy with ``state:``: run the schema migrations before the gateway starts (a rolling
    #: deploy asks only its first host: once per fleet).
    migrate: bool = True


@dataclass
class RunState:
    """What the run read, decided and did, carried from step to step (the steps write it)."""

    #: The Anthropic key, read on this machine before the first step (None: unreadable, in a dry run).
    upstream_key: Secret | None = None
    release: Release | None = None  # what this run deploys (or rolls back to)
    fallback: str | None = None  # the last good release: where a failed smoke test switches back to
    journal: Journal | None = None
    lock: RemoteLock | None = None
    tls: TLSMaterial | None = None  # the certificate the tls step installs (the smoke test trusts it)
    reload_nginx: bool = False  # certificate changed: nginx must reload even without a switch
    new_keys: dict[str, Secret] = field(default_factory=dict)
    smoke_key: Secret | None = None
    smoke: SmokeReport | None = None
    #: Images being built here and written to the host's disk while it installs Docker (see images_ahead).
    images_ahead: ImagesAhead | None = None


@dataclass
class Context:
    cfg: DeployConfig
    connector: Connector
    layout: HostLayout
    #: What the run was asked: the playbook, a dry run, deploy's ``refresh``, uninstall's ``keep_data`` ...
    options: RunOptions
    reporter: Reporter = null_reporter
    #: Cancel token and interaction of the session driving this run (defaults: none).
    controls: RunControls = field(default_factory=current)
    #: What was learned from the host; each step declares the ones it reads (``Step.reads``).
    facts: HostFacts = field(default_factory=HostFacts)
    #: What the run read, decided and did.
    state: RunState = field(default_factory=RunState)

    _step: Step | None = None
    _index: int = 0
    _total: int = 0

    # -- running things ------------------------------------------------------
    @property
    def sudo(self) -> bool:
        return bool(self.cfg.target.sudo) and not self.connector.is_root

    def run(
        self,
        argv: Sequence[str],
        *,
        input: Input | None = None,
        timeout: float | None = 120.0,
        check: bool = True,
        sudo: bool = True,
        on_output: Callable[[bytes], None] | None = None,
    ) -> Result:
        if on_output is not None:  # only then: connectors written before streaming need not know it
            return self.connector.run(
                list(argv), input=input, sudo=sudo and self.sudo, timeout=timeout, check=check, on_output=on_output
            )
        return self.connector.run(
            list(argv), input=input, sudo=sudo and self.sudo, timeout=timeout, check=check
        )

    def fact(self, argv: Sequence[str], *, timeout: float | None = 60.0, sudo: bool = True) -> Result:
        """A read-only command whose failure means "absent", not an error."""
        return self.run(argv, timeout=timeout, check=False, sudo=sudo)

    def read_file(self, path: str) -> bytes | None:
        return self.connector.get_file(path, sudo=self.sudo, timeout=60)

    def execute(self, op: Run | Put | Call) -> None:
        if isinstance(op, Run):
            data = op.input() if callable(op.input) else op.input
            # A command with progress (an image build) may be abandoned on cancel: its output checks the token.
            on_output = BuildOutput(op.progress, self._work_report, check=self.check_cancelled) if op.progress else None
            self.run(op.argv, input=data, timeout=op.timeout, sudo=op.sudo, check=op.check, on_output=on_output)
        elif isinstance(op, Put):
            self.connector.put_file(op.path, op.data, op.mode, op.owner, sudo=self.sudo, timeout=120)
        else:
            op.fn(self)

    def stop_background(self) -> None:
        """The run ends (done, failed or cancelled): stop work still going on beside it, remove what it left."""
        ahead, self.state.images_ahead = self.state.images_ahead, None
        if ahead is not None:
            ahead.discard()

    # -- cancelling and asking ------------------------------------------------
    def check_cancelled(self) -> None:
        self.controls.cancel.raise_if_cancelled(step=self._step.name if self._step else None)

    def sleep(self, seconds: float) -> None:
        """The wait loops' sleep: returns early and raises Cancelled when the run is cancelled."""
        _cancel.sleep(seconds, self.controls.cancel, step=self.current_step)

    def consent(self, question: ConsentQuestion) -> None:
        """Ask before a change that needs a yes; raise Declined on a no. Without an interaction: go ahead."""
        interaction = self.controls.interaction
        if interaction is None or self.options.dry_run:
            return
        if not interaction.consent(question):
            raise Declined(
                f"{question.text()} -- answered no; nothing was changed by this step",
                flag=question.flag,
                hint=f"run again and agree (or pass {question.flag})",
            )

    def secrets(self) -> list[str | Secret | None]:
        state = self.state
        return [state.upstream_key, state.smoke_key, *state.new_keys.values()]

    # -- progress ------------------------------------------------------------
    @property
    def current_step(self) -> str | None:
        return self._step.name if self._step else None

    def begin_step(self, step: Step, index: int, total: int) -> None:
        self._step, self._index, self._total = step, index, total

    def emit(
        self,
        kind: EventKind,
        *,
        changes: tuple[str, ...] = (),
        changed: bool = False,
        elapsed: float = 0.0,
        message: str = "",
        done: float | None = None,
        expected: float | None = None,
        unit: str = "",
        status: str = "",
        detail: str = "",
    ) -> None:
        step = self._step
        event = StepEvent(
            kind=kind,
            step=step.name if step else "",
            title=step.title if step else "",
            index=self._index,
            total=self._total,
            changes=changes,
            changed=changed,
            elapsed=elapsed,
            message=message,
            done=done,
            expected=expected,
            unit=unit,
            status=status,
            detail=detail,
        )
        # A broken display must not break a deploy half-way.
        with contextlib.suppress(Exception):
            self.reporter(event)

    def note(self, message: str) -> None:
        self.emit("note", message=message)

    def _work_report(self, message: str, done: float | None, expected: float | None, unit: str) -> None:
        self.work(message, done=done, expected=expected, unit=unit)

    def work(self, message: str, *, done: float | None = None, expected: float | None = None, unit: str = "") -> None:
        """Progress inside the current step (a build line, bytes sent, seconds waited)."""
        self.emit("work", message=message, done=done, expected=expected, unit=unit)

    # -- the journal -----------------------------------------------------------
    def mark_step(self, name: str, *, changed: bool) -> None:
        journal = self.state.journal
        if journal is None or self.options.dry_run:
            return
        journal.mark(name, changed)
        self.save_journal()

    def save_journal(self) -> None:
        journal = self.state.journal
        if journal is None or self.options.dry_run:
            return
        self.connector.put_file(
            self.layout.journal, journal.to_bytes(), 0o600, sudo=self.sudo, timeout=60
        )
